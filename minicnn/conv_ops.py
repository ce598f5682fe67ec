"""The speed machinery behind ``Conv2d``: im2col, shifted rows, col2im, a reused
scratch buffer, and a memory budget. ``minicnn.layers.Conv2d`` states the
algorithm in a few lines and calls the three functions at the end of this file:

    conv2d(x, w, stride, padding, bias)                out = w * x + b
    conv2d_input_grad(dout, w, x_shape, stride, padding)   dx
    conv2d_weight_grad(dout, x, w_shape, stride, padding)  dw

The loop versions they are tested against are in ``minicnn.naive``
(``tests/test_conv_routes.py`` forces every route).

Why columns: a convolution is one matrix product once every (KH, KW) window
of the input is unfolded into a column (im2col). The product runs near the
machine's peak; the unfolding is a copy, and the tricks below keep that copy
cheap (reused buffers), small (for stride 1, ``conv2d_shifted`` copies KW
shifted images instead of KH*KW) and bounded (a few images at a time).
"""
import numpy as np
from numpy.lib.stride_tricks import as_strided

from . import winograd


def conv_output_size(size, kernel, stride, padding):
    """``H' = 1 + (H + 2*pad - KH) // stride`` (the same for widths)."""
    return 1 + (size + 2 * padding - kernel) // stride


_SCRATCH = {}


def scratch(shape, dtype, name="columns"):
    """A reusable array for short-lived intermediates (one buffer per name and dtype, grown as needed).

    Why: the columns of a large layer take 100 MB or more, and the page faults
    of a freshly allocated array cost as long as filling it. The columns live
    only until the next matrix product, so one buffer can serve every layer.
    The contents are overwritten by the next call with the same name; not
    thread-safe.
    """
    dtype = np.dtype(dtype)
    n = int(np.prod(shape))
    buf = _SCRATCH.get((name, dtype))
    if buf is None or buf.size < n:
        buf = _SCRATCH[name, dtype] = np.empty(n, dtype)
    return buf[:n].reshape(shape)


def im2col(x, kh, kw, stride, padding, reuse=False):
    """Unfold every (KH, KW) window of ``x`` into a column.

    x: (N, C, H, W) -> cols: (N, C*KH*KW, H'*W'), rows ordered (c, i, j) like
    the flattened weight ``w.reshape(F, -1)``. The windows are a strided view
    (no copy); copying them into a matrix is the one copy. With ``reuse`` the
    matrix lives in the shared scratch buffer (see ``scratch``).
    """
    N, C, H, W = x.shape
    ph, pw = padding
    if ph or pw:
        x = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    Ho = conv_output_size(H, kh, stride[0], ph)
    Wo = conv_output_size(W, kw, stride[1], pw)
    sN, sC, sH, sW = x.strides
    windows = as_strided(x, (N, C, kh, kw, Ho, Wo),
                         (sN, sC, sH, sW, sH * stride[0], sW * stride[1]), writeable=False)
    if not reuse:
        return windows.reshape(N, C * kh * kw, Ho * Wo)
    cols = scratch(windows.shape, x.dtype)
    np.copyto(cols, windows)
    return cols.reshape(N, C * kh * kw, Ho * Wo)


def col2im(dcols, x_shape, kh, kw, stride, padding):
    """The adjoint of im2col: add every column back onto the window it came from.

    dcols: (N, C*KH*KW, H'*W') -> dx: (N, C, H, W). Overlapping windows add up.
    """
    N, C, H, W = x_shape
    ph, pw = padding
    Ho = conv_output_size(H, kh, stride[0], ph)
    Wo = conv_output_size(W, kw, stride[1], pw)
    dx = np.empty((N, C, H + 2 * ph, W + 2 * pw), dcols.dtype)
    dx.fill(0)
    d = dcols.reshape(N, C, kh, kw, Ho, Wo)
    for i in range(kh):
        for j in range(kw):
            dx[:, :, i:i + stride[0] * Ho:stride[0], j:j + stride[1] * Wo:stride[1]] += d[:, :, i, j]
    return dx[:, :, ph:ph + H, pw:pw + W]


COLUMN_BUDGET = 64 * 2 ** 20


def image_chunks(n_images, bytes_per_image, budget=None):
    """Slices of the batch whose columns fit in ``budget`` bytes (COLUMN_BUDGET by default; at least one
    image each).

    A batch of large images is unfolded a few images at a time, so the
    columns stay ~100 MB whatever the batch size (VGG-16's second layer needs
    115 MB of columns per image)."""
    step = max(1, (COLUMN_BUDGET if budget is None else budget) // max(1, bytes_per_image))
    return [slice(i, min(n_images, i + step)) for i in range(0, n_images, step)]


CACHE_BLOCK = 2 ** 19


def plane_blocks(n_planes, bytes_per_plane):
    """Slices of ``n_planes`` image planes (N*C of them) of about CACHE_BLOCK bytes.

    Why: pooling visits each window tap by tap, so it reads the same memory
    KH*KW times. Done a block at a time, the later visits find it in the
    cache: twice as fast on VGG-16's first pooling at batch 8."""
    return image_chunks(n_planes, bytes_per_plane, CACHE_BLOCK)


# --------------------------------------------------------------------------
# Stride 1: shifted rows instead of columns
# --------------------------------------------------------------------------

def conv2d_shifted(x, w, padding=(0, 0), bias=None):
    """The stride-1 convolution without im2col. Same result as ``conv2d``.

    Lay the padded image out flat, row after row (width Wp), and compute the
    output on a "wide" grid of Wp columns per row (the last KW-1 are junk and
    are dropped). Then the element at tap (i, j) of every window is the flat
    image shifted by ``i*Wp + j``: a slice, not a copy. So

    - the KW horizontal shifts are stacked once: ``rows`` (KW*C, P), the
      padded image and KW-1 shifted copies, where im2col makes KH*KW copies;
    - one matrix product gives every tap row's partial output at once:
      ``T = W_all @ rows`` with ``W_all[i*F + f, j*C + c] = w[f, c, i, j]``;
    - the KH vertical shifts are added on the output: ``out[f, y] = sum_i
      T[i*F + f, y + i]`` (row y + i of the wide grid).

    A chunk of images is stacked vertically (their padding keeps them apart),
    so small images still make one large product.
    """
    N, C, H, W = x.shape
    F, _, kh, kw = w.shape
    ph, pw = padding
    Hp, Wp = H + 2 * ph, W + 2 * pw
    Ho, Wo = Hp - kh + 1, Wp - kw + 1
    w_all = w.transpose(2, 0, 3, 1).reshape(kh * F, kw * C)       # (KH*F, KW*C), a copy
    out = np.empty((N, F, Ho, Wo), x.dtype)
    per_image = max(kw * C, kh * F) * Hp * Wp * x.itemsize
    for part in image_chunks(N, per_image):
        n = part.stop - part.start
        P = n * Hp * Wp                                           # positions on the wide grid
        rows = scratch((kw * C, P + kw - 1), x.dtype, "rows")
        flat = rows[:C]                                           # the padded image itself is shift 0
        padded = flat[:, :P].reshape(C, n, Hp, Wp)
        _zero_border(padded, ph, pw)
        flat[:, P:] = 0                                           # read by the last shifts only
        padded[:, :, ph:ph + H, pw:pw + W] = x[part].transpose(1, 0, 2, 3)
        for j in range(1, kw):
            rows[j * C:(j + 1) * C, :P] = flat[:, j:j + P]        # shifted right by j
        T = scratch((kh * F, P), x.dtype, "taps")
        np.matmul(w_all, rows[:, :P], out=T)
        taps = T.reshape(kh, F, n, Hp, Wp)
        o = out[part].transpose(1, 0, 2, 3)                       # (F, n, H', W') view
        first = taps[0, :, :, :Ho, :Wo]
        if kh == 1:
            np.copyto(o, first)
        else:                                                     # tap row i, shifted down by i
            np.add(first, taps[1, :, :, 1:1 + Ho, :Wo], out=o)
        for i in range(2, kh):
            o += taps[i, :, :, i:i + Ho, :Wo]
        if bias is not None:
            o += bias[:, None, None, None]
    return out


def shifted_pays(channels, kh, kw, out_width):
    """Whether ``conv2d_shifted`` beats im2col (measured on VGG-16's layers, batch 1 and 8):
    a real kernel, enough channels for a large product, and an image wide enough
    that the KW-1 junk columns per row of the wide grid are a small share."""
    return kh * kw > 1 and channels >= 16 and out_width >= 48


def _zero_border(padded, ph, pw):
    """Zero the padding frame of (C, n, Hp, Wp) (the scratch buffer holds the last layer's data)."""
    if ph:
        padded[:, :, :ph] = 0
        padded[:, :, -ph:] = 0
    if pw:
        padded[:, :, :, :pw] = 0
        padded[:, :, :, -pw:] = 0


# --------------------------------------------------------------------------
# The three products Conv2d needs
# --------------------------------------------------------------------------

def conv2d(x, w, stride=(1, 1), padding=(0, 0), bias=None):
    """x: (N, C, H, W), w: (F, C, KH, KW), bias: (F,) or None -> (N, F, H', W'): im2col + one matrix product."""
    N, C, H, W = x.shape
    F, _, kh, kw = w.shape
    Ho = conv_output_size(H, kh, stride[0], padding[0])
    Wo = conv_output_size(W, kw, stride[1], padding[1])
    if winograd.pays(C, F, (kh, kw), stride, padding, H, W):           # 3x3, stride 1: fewer multiplications
        return winograd.conv3x3(x, w, bias)
    if tuple(stride) == (1, 1) and shifted_pays(C, kh, kw, Wo):
        return conv2d_shifted(x, w, padding, bias)
    if (kh, kw) == (1, 1) and tuple(padding) == (0, 0):     # 1x1 (ResNet's): the image itself is the columns
        out = np.matmul(w.reshape(F, C), x[:, :, ::stride[0], ::stride[1]].reshape(N, C, Ho * Wo))
        if bias is not None:
            out += bias[:, None]
        return out.reshape(N, F, Ho, Wo)
    out = np.empty((N, F, Ho * Wo), x.dtype)
    for part in image_chunks(N, C * kh * kw * Ho * Wo * x.itemsize):
        cols = im2col(x[part], kh, kw, stride, padding, reuse=True)     # (n, C*KH*KW, H'*W')
        np.matmul(w.reshape(F, -1), cols, out=out[part])                 # (n, F, H'*W')
    if bias is not None:
        out += bias[:, None]
    return out.reshape(N, F, Ho, Wo)


def conv2d_input_grad(dout, w, x_shape, stride=(1, 1), padding=(0, 0)):
    """dout: (N, F, H', W'), w: (F, C, KH, KW) -> dx: (N, C, H, W), the gradient w.r.t. the input.

    Three routes to the same numbers, chosen for speed:

    - 3x3, stride 1, padding 1 where ``winograd.pays``: the forward's Winograd steps, transposed
      (``winograd.conv3x3_input_grad``);
    - stride 1, a layer that does not widen (F <= C) and an image wide enough
      for ``conv2d_shifted``: dx is itself a convolution, of dout padded by
      K-1-pad with the kernel flipped and in/out swapped (a "transposed
      convolution");
    - otherwise: columns ``W^T @ dout`` (N, C*KH*KW, H'*W') folded back onto
      the windows they came from (col2im). No copy of the weights (the
      product reads W transposed in place): on small images that copy would
      cost as much as the product.
    """
    N, F, Ho, Wo = dout.shape
    kh, kw = w.shape[2:]
    if winograd.pays(x_shape[1], F, (kh, kw), stride, padding, Ho, Wo):   # the forward's steps, transposed
        return winograd.conv3x3_input_grad(dout, w)
    if (tuple(stride) == (1, 1) and padding[0] < kh and padding[1] < kw and F <= x_shape[1]
            and shifted_pays(F, kh, kw, x_shape[3])):
        w_flipped = w[:, :, ::-1, ::-1].transpose(1, 0, 2, 3)         # a view; conv2d_shifted copies it once
        return conv2d_shifted(dout, w_flipped, (kh - 1 - padding[0], kw - 1 - padding[1]))
    d = dout.reshape(N, F, Ho * Wo)
    if (kh, kw) == (1, 1) and tuple(padding) == (0, 0):     # 1x1: W^T @ dout lands on every stride-th pixel
        dsub = np.matmul(w.reshape(F, -1).T, d).reshape((N, x_shape[1], Ho, Wo))
        if tuple(stride) == (1, 1):
            return dsub
        dx = np.zeros(x_shape, dout.dtype)
        dx[:, :, ::stride[0], ::stride[1]] = dsub
        return dx
    dx = np.empty(x_shape, dout.dtype)
    for part in image_chunks(N, w[0].size * Ho * Wo * dout.itemsize):
        dcols = scratch((part.stop - part.start, w[0].size, Ho * Wo), dout.dtype)
        np.matmul(w.reshape(F, -1).T, d[part], out=dcols)            # (n, C*KH*KW, H'*W')
        dx[part] = col2im(dcols, dx[part].shape, kh, kw, stride, padding)
    return dx


def conv2d_weight_grad(dout, x, w_shape, stride=(1, 1), padding=(0, 0)):
    """dout: (N, F, H', W'), x: (N, C, H, W) -> dw: (F, C, KH, KW), summed over the batch:
    ``dout @ cols^T`` with the input's columns rebuilt (training only pays for them)."""
    N, F, Ho, Wo = dout.shape
    kh, kw = w_shape[2:]
    d = dout.reshape(N, F, Ho * Wo)
    per_image = int(np.prod(w_shape[1:]))
    grad = np.zeros((F, per_image), dtype=x.dtype)
    for part in image_chunks(N, per_image * Ho * Wo * x.itemsize):
        cols = im2col(x[part], kh, kw, stride, padding, reuse=True)
        grad += np.matmul(d[part], cols.transpose(0, 2, 1)).sum(axis=0)   # sum over the batch
    return grad.reshape(w_shape)
