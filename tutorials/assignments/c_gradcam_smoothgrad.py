"""Assignment C: Grad-CAM and SmoothGrad from the engine's primitives.

Fill in the two functions (replace `raise NotImplementedError`), then grade your work:

    python -m attribution.grade gradcam_smoothgrad tutorials/assignments/c_gradcam_smoothgrad.py

Primitives you may use (see minicnn.Sequential):
    logits = model.forward(x)                         # (N, K); model.outputs[name] holds each layer's output
    g = model.backward(dout, until=name)              # gradient arriving at layer `name`'s output
    g = model.backward(dout)                          # gradient w.r.t. the input
    dout = np.zeros_like(logits); dout[np.arange(N), targets] = 1   # d(target logits) / d(logits)
Do not use the attribution package: this is where you build it.
"""
import numpy as np


# %%
def grad_cam(model, x, targets, layer):
    """Grad-CAM map at `layer` for each image.

    model: a minicnn Sequential classifier; x: (N, C, H, W); targets: (N,) class indices;
    layer: the name of a layer with output A: (N, K, h, w).
    Steps: forward; gradient of each image's target logit w.r.t. A; alpha_k = the mean of
    that gradient over (h, w); map = ReLU(sum over k of alpha_k * A_k).
    Returns the coarse maps: (N, h, w), no upsampling.
    """
    raise NotImplementedError


# %%
def smoothgrad(model, x, targets, noise_level, noise):
    """SmoothGrad of the vanilla gradient.

    x: (N, C, H, W); targets: (N,); noise_level: e.g. 0.15; noise: (N, n_samples, C, H, W)
    standard normal draws (the axis order of attribution.smoothgrad's ``noise=``), not yet scaled.
    Each image n gets its own sigma_n = noise_level * (max of x[n] - min of x[n]) (Smilkov et al.).
    Returns the mean over samples s of d(target logit)/dx at x + sigma_n * noise[:, s]: (N, C, H, W).
    """
    raise NotImplementedError


# %% [markdown]
# ## Questions
#
# 1. Grad-CAM averages the gradient over (h, w). What would summing it instead change in the map,
#    and why does the grader still reject it?
# BEGIN ANSWER
#    Every weight would be h*w times larger: the same map, scaled by h*w (the ReLU keeps the same
#    positions). It is rejected because Grad-CAM is defined with the mean, and a scale that depends
#    on the layer's size makes maps of different layers incomparable.
# END ANSWER
# 2. Why does SmoothGrad take sigma from each image's range instead of one sigma for the batch?
# BEGIN ANSWER
#    Smilkov et al. define the noise level relative to the image's own range (max - min): the same
#    noise level perturbs a low-contrast image as much, relatively, as a high-contrast one. One
#    batch-wide sigma would drown the low-contrast image and barely touch the other.
# END ANSWER
