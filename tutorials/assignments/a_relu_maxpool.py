"""Assignment A: the ReLU backward under the three attribution rules, and max-pool backward.

Fill in the four functions below (replace `raise NotImplementedError`), then grade your work:

    python -m attribution.grade relu_maxpool tutorials/assignments/a_relu_maxpool.py

Rules you need (the textbook, chapter "Pixel Attribution"): with x the ReLU's
forward input and dout the gradient arriving from above,

    Vanilla Gradient   dx = dout * (x > 0)
    DeconvNet          dx = dout * (dout > 0)
    Guided Backprop    dx = dout * (x > 0) * (dout > 0)

Use the strict x > 0 (the derivative at exactly 0 is taken as 0). Never modify
`dout` or `x` in place: the caller still needs them.
"""
import numpy as np


# %%
def relu_backward_gradient(dout, x):
    """Vanilla Gradient rule.

    dout: (N, C, H, W) gradient of the score w.r.t. the ReLU's output.
    x:    (N, C, H, W) the ReLU's forward input.
    Returns dx: (N, C, H, W).
    """
    raise NotImplementedError


# %%
def relu_backward_deconvnet(dout, x):
    """DeconvNet rule: only the backward signal decides what passes.

    dout, x: (N, C, H, W). Returns dx: (N, C, H, W).
    """
    raise NotImplementedError


# %%
def relu_backward_guided(dout, x):
    """Guided Backprop rule: both the forward input and the backward signal must be positive.

    dout, x: (N, C, H, W). Returns dx: (N, C, H, W).
    """
    raise NotImplementedError


# %%
def maxpool_backward(dout, x, kernel_size, stride):
    """Backward pass of max pooling (no padding).

    dout: (N, C, H', W') with H' = 1 + (H - kernel_size) // stride (same for W).
    x:    (N, C, H, W) the forward input.
    Each window sends its gradient to ONE element: its first maximum in
    row-major order (np.argmax's choice; PyTorch's too). Windows may overlap
    (kernel_size > stride): then gradients add up.
    Returns dx: (N, C, H, W).
    """
    raise NotImplementedError


# %% [markdown]
# ## Questions
#
# 1. On the textbook's 2x2 example (x = [[1, 0], [-1, -10]], dout = [[0.4, 1.1], [-0.5, -0.1]]),
#    what does each rule pass on, and which indicator decides?
# BEGIN ANSWER
#    Vanilla Gradient passes only 0.4 (x > 0 at the first entry; x = 0 at the second is not > 0).
#    DeconvNet passes 0.4 and 1.1 (dout > 0, whatever x). Guided Backprop passes only 0.4 (both
#    conditions). Tutorial 2 prints these.
# END ANSWER
# 2. Why must max-pool's backward add (+=) instead of assign (=) when the windows overlap?
# BEGIN ANSWER
#    With kernel 3 and stride 2 one input element can be the maximum of two windows. It was used
#    twice in the forward pass, so by the chain rule its gradient is the sum of what both windows
#    send back; = keeps only the last window's.
# END ANSWER
