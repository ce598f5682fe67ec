"""Loop versions of the convolution and max-pooling, written for reading.

They follow the definitions one output element at a time. The fast layers in
``minicnn.layers`` are tested against them, and the tutorials step through
them. They are slow: use them on small inputs only.
"""
import numpy as np


def conv2d_forward_naive(x, w, b, stride=1, padding=0):
    """x: (N, C, H, W), w: (F, C, KH, KW), b: (F,) or None -> out: (N, F, H', W'),
    ``H' = 1 + (H + 2*padding - KH) // stride``."""
    N, C, H, W = x.shape
    F, _, KH, KW = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    Ho = 1 + (H + 2 * padding - KH) // stride
    Wo = 1 + (W + 2 * padding - KW) // stride
    out = np.zeros((N, F, Ho, Wo), dtype=x.dtype)
    for n in range(N):
        for f in range(F):
            for i in range(Ho):
                for j in range(Wo):
                    window = xp[n, :, i * stride:i * stride + KH, j * stride:j * stride + KW]
                    out[n, f, i, j] = np.sum(window * w[f]) + (b[f] if b is not None else 0)
    return out


def conv2d_backward_naive(dout, x, w, stride=1, padding=0):
    """dout: (N, F, H', W') -> (dx: (N, C, H, W), dw: (F, C, KH, KW), db: (F,)).

    Each output element saw one window, so it sends ``dout * w[f]`` back to
    that window and ``dout * window`` to the weights.
    """
    # BEGIN SOLUTION conv_backward.conv_backward(dout, x, w, stride, padding)
    N, C, H, W = x.shape
    F, _, KH, KW = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    dxp = np.zeros_like(xp)
    dw = np.zeros_like(w)
    _, _, Ho, Wo = dout.shape
    for n in range(N):
        for f in range(F):
            for i in range(Ho):
                for j in range(Wo):
                    rows = slice(i * stride, i * stride + KH)
                    cols = slice(j * stride, j * stride + KW)
                    dxp[n, :, rows, cols] += dout[n, f, i, j] * w[f]
                    dw[f] += dout[n, f, i, j] * xp[n, :, rows, cols]
    db = dout.sum(axis=(0, 2, 3))
    return dxp[:, :, padding:padding + H, padding:padding + W], dw, db
    # END SOLUTION


def maxpool2d_forward_naive(x, kernel_size, stride):
    """x: (N, C, H, W) -> (out: (N, C, H', W'), switches: (N, C, H', W', 2)),
    the (row, col) in x of each window's first maximum in row-major order."""
    N, C, H, W = x.shape
    Ho = 1 + (H - kernel_size) // stride
    Wo = 1 + (W - kernel_size) // stride
    out = np.zeros((N, C, Ho, Wo), dtype=x.dtype)
    switches = np.zeros((N, C, Ho, Wo, 2), dtype=int)
    for n in range(N):
        for c in range(C):
            for i in range(Ho):
                for j in range(Wo):
                    window = x[n, c, i * stride:i * stride + kernel_size, j * stride:j * stride + kernel_size]
                    r, s = np.unravel_index(np.argmax(window), window.shape)   # argmax: first maximum
                    out[n, c, i, j] = window[r, s]
                    switches[n, c, i, j] = (i * stride + r, j * stride + s)
    return out, switches


def maxpool2d_backward_naive(dout, x_shape, switches):
    """dout: (N, C, H', W') -> dx: (N, C, H, W): each window's gradient goes to its switch."""
    dx = np.zeros(x_shape, dtype=dout.dtype)
    N, C, Ho, Wo = dout.shape
    for n in range(N):
        for c in range(C):
            for i in range(Ho):
                for j in range(Wo):
                    r, s = switches[n, c, i, j]
                    dx[n, c, r, s] += dout[n, c, i, j]     # += : overlapping windows can share a switch
    return dx
