"""Assignment B: the backward pass of a 2-D convolution.

Fill in `conv_backward` (replace `raise NotImplementedError`), then grade your work:

    python -m attribution.grade conv_backward tutorials/assignments/b_conv_backward.py

The forward pass (given, as in minicnn.naive) computes, for each image n,
filter f and output position (i, j):

    out[n, f, i, j] = sum over (c, a, b) of xp[n, c, i*s + a, j*s + b] * w[f, c, a, b] + b[f]

where xp is x zero-padded by `pad` on each side and s is the stride.
Loops are fine: correctness first.
"""
import numpy as np


# %%
def conv_forward(x, w, b, stride=1, pad=0):
    """x: (N, C, H, W), w: (F, C, KH, KW), b: (F,) -> out: (N, F, H', W'),
    H' = 1 + (H + 2*pad - KH) // stride (same for W). Given: do not change."""
    N, C, H, W = x.shape
    F, _, KH, KW = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    Ho, Wo = 1 + (H + 2 * pad - KH) // stride, 1 + (W + 2 * pad - KW) // stride
    out = np.zeros((N, F, Ho, Wo), dtype=x.dtype)
    for i in range(Ho):
        for j in range(Wo):
            window = xp[:, :, i * stride:i * stride + KH, j * stride:j * stride + KW]   # (N, C, KH, KW)
            out[:, :, i, j] = np.tensordot(window, w, axes=([1, 2, 3], [1, 2, 3])) + b
    return out


# %%
def conv_backward(dout, x, w, stride=1, pad=0):
    """Gradients of the convolution above.

    dout: (N, F, H', W') gradient w.r.t. the output.
    x: (N, C, H, W), w: (F, C, KH, KW): the forward inputs.
    Returns (dx: (N, C, H, W), dw: (F, C, KH, KW), db: (F,)).
    Remember: every output element saw one window of xp, and the weights are
    shared by all images of the batch and all positions.
    """
    raise NotImplementedError


# %% [markdown]
# ## Questions
#
# 1. Why are dw and db summed over the images of the batch, while dx keeps one slice per image?
# BEGIN ANSWER
#    Every image is convolved with the same weights and bias, so the loss (a sum over images)
#    depends on them through every image, and their gradients add up. Each image has its own input,
#    so dx has one slice per image.
# END ANSWER
# 2. A numeric gradient check compares with (f(x + h) - f(x - h)) / 2h. Why does it need float64?
# BEGIN ANSWER
#    The check's rounding error is about (machine epsilon) / h: around 1e-7 / 1e-5 = 1e-2 relative
#    in float32, larger than the mistakes it should find; in float64 it is about 1e-11, so a
#    relative error of 1e-7 is a real discrepancy.
# END ANSWER
