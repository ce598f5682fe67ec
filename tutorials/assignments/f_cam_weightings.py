"""Assignment F: two members of the CAM family, as weightings of (activations, gradients).

Every class activation map starts the same way: a forward pass, the activations A at a layer and the
gradient G of the target logit there (tutorial 11 shows how the library gets them). What differs is a few
lines that turn (A, G) into a map. Fill in the two functions (replace `raise NotImplementedError`), then
grade your work:

    python -m attribution.grade cam_weightings tutorials/assignments/f_cam_weightings.py

Both take plain arrays: A and G of shape (N, K, h, w) (N images, K channels, an h x w grid; h and w may
differ), and return the map after its ReLU, (N, h, w), in A's dtype. For comparison, Grad-CAM is

    alpha = G.mean(axis=(2, 3))                                  # (N, K): one weight per channel
    np.maximum(np.einsum("nk,nkhw->nhw", alpha, A), 0)           # weighted sum over channels, then ReLU

(an image batch elsewhere in this course is (N, C, H, W); here the channels are a layer's, K of them).
Do not use the attribution package: this is where you build it.
"""
import numpy as np


# %%
def layer_cam(A, G):
    """LayerCAM (Jiang et al. 2021): no averaging, each position keeps its own weight.

    A, G: (N, K, h, w). map[n, i, j] = ReLU( sum over k of relu(G[n, k, i, j]) * A[n, k, i, j] ).
    Returns (N, h, w).
    """
    raise NotImplementedError


# %%
def grad_cam_plus_plus(A, G):
    """Grad-CAM++ (Chattopadhay et al. 2018), as pytorch-grad-cam computes it.

    A, G: (N, K, h, w). For each image n and channel k, with S = the sum of A[n, k] over (h, w):
        a_ij  = G_ij^2 / (2 G_ij^2 + S G_ij^3 + 1e-6)       (0 where G_ij == 0)
        w_k   = sum over (i, j) of relu(G_ij) * a_ij         (one weight per channel)
    map[n] = ReLU( sum over k of w_k * A[n, k] ). Returns (N, h, w).
    """
    raise NotImplementedError


# %% [markdown]
# ## Questions
#
# 1. When do LayerCAM and HiResCAM give the same map?
# BEGIN ANSWER
#    Where the gradient is not negative wherever the activations are not zero: then relu(G) * A = G
#    * A at every position, and the sums over the channels agree (before and after the final ReLU).
# END ANSWER
# 2. The worked example has G = -1 in a channel whose activations sum to S = 2. What happens to
#    Grad-CAM++'s a there without the 1e-6, and why does the map not need that position?
# BEGIN ANSWER
#    2 G^2 + S G^3 = 2 - 2 = 0, so a divides by zero (inf or NaN). With the 1e-6, a is finite, and
#    relu(G) = 0 there, so the position adds nothing to the channel's weight.
# END ANSWER
