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


def relu_backward_gradient(dout, x):
    """Vanilla Gradient rule.

    dout: (N, C, H, W) gradient of the score w.r.t. the ReLU's output.
    x:    (N, C, H, W) the ReLU's forward input.
    Returns dx: (N, C, H, W).
    """
    raise NotImplementedError


def relu_backward_deconvnet(dout, x):
    """DeconvNet rule: only the backward signal decides what passes.

    dout, x: (N, C, H, W). Returns dx: (N, C, H, W).
    """
    raise NotImplementedError


def relu_backward_guided(dout, x):
    """Guided Backprop rule: both the forward input and the backward signal must be positive.

    dout, x: (N, C, H, W). Returns dx: (N, C, H, W).
    """
    raise NotImplementedError


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
