"""Assignment G: pixel flipping, a faithfulness metric (Bach et al. 2015), as Quantus computes it.

If a map is faithful, removing the pixels it calls most relevant should destroy the prediction fastest.
Fill in the function (replace `raise NotImplementedError`), then grade your work:

    python -m attribution.grade pixel_flipping tutorials/assignments/g_pixel_flipping.py

Tutorial 12 ("Can we trust the map?") uses attribution.metrics.pixel_flipping, which you may read only after
you are done: do not use the attribution package here.
"""
import numpy as np


# %%
def pixel_flipping(model, x, y, a, features_in_step):
    """The target's probability as the most relevant features are removed, a few at a time.

    model: a minicnn classifier (model.forward(images) -> logits (N, K)); x: images (N, C, H, W); y: (N,)
    target classes; a: maps (N, 1, H, W) or (N, C, H, W); features_in_step: k, features removed per step.
    The features are the N images' C*H*W values, flattened channel-major (x.reshape(N, -1)); a one-channel
    map counts for each of its pixel's C values (np.broadcast_to(a, x.shape)).
    1. rank each image's features by its map, most relevant first: np.argsort(-A, axis=1) on the flattened,
       broadcast map A (ties: keep that exact call);
    2. for t = 0, k, 2k, ...: set features order[:, t:t+k] of the *current* image (the removals accumulate)
       to "black", the image's own minimum over all its values;
    3. after each step, record the target's softmax probability.
    Returns the curve (N, ceil(C*H*W / k)); no point for the untouched image; x's dtype for the model.
    """
    raise NotImplementedError


# %% [markdown]
# ## Questions
#
# 1. Quantus takes 'black' as the image's minimum, not 0. When do the two differ, and which choice
#    is more faithful to 'removing' a pixel?
# BEGIN ANSWER
#    They differ when the image has no black pixel (its minimum is above 0), or when the image is
#    normalized so that 0 is mid-grey. Neither removes information the way the model would see
#    'absent': both put values the model may never have seen. That is why a baseline is a choice to
#    report, as DeepLIFT's.
# END ANSWER
# 2. A random map does about as well as real maps in pixel flipping on the shapes model (tutorial
#    12). What does that say about the metric on this model, and what would you try?
# BEGIN ANSWER
#    The curve falls after a few black pixels whatever their order, so it measures how the model
#    reacts to black pixels rather than the ranking. Try a baseline closer to the data (a blurred
#    copy, as the insertion curve does), or report the curve against the random map's.
# END ANSWER
