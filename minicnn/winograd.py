"""Winograd's minimal filtering (Lavin & Gray 2016): the stride-1 3x3 convolution with fewer multiplications.

The 1-D idea, F(2, 3): two outputs of a 3-tap filter g over four inputs d,

    y0 = d0 g0 + d1 g1 + d2 g2
    y1 = d1 g0 + d2 g1 + d3 g2                                  (6 multiplications)

are also

    m1 = (d0 - d2) g0          m2 = (d1 + d2) (g0 + g1 + g2) / 2
    m4 = (d1 - d3) g2          m3 = (d2 - d1) (g0 - g1 + g2) / 2
    y0 = m1 + m2 + m3          y1 = m2 - m3 - m4                (4 multiplications)

and the filter's sums are computed once per layer, not once per output. In matrix form ``y = A^T [(G g) * (B^T
d)]``; in 2-D, for an m x m output tile from an (m+2) x (m+2) input tile,

    Y = A^T [ (G g G^T) * (B^T d B) ] A        (* element-wise)

Over C input channels the element-wise products summed over c are, for each of the (m+2)^2 positions of the
tile, one matrix product (F, C) @ (C, tiles): that is where the time goes, and there are (m+2)^2 / (9 m^2) as
many multiplications as in the direct convolution: 4/9 for F(2x2, 3x3), 36/144 = 1/4 for F(4x4, 3x3). The
transforms B^T d B and A^T M A are additions (and small constant multiples): memory-bound passes that eat part
of the saving (``benchmarks/bench_winograd.py`` measures both).

Used by ``conv_ops.conv2d`` and ``conv_ops.conv2d_input_grad`` for 3x3 kernels, stride 1 and padding 1, where
``pays`` says so: at least MIN_CHANNELS (256) input and output channels on an image of 8 to 56 px, the layers
where ``benchmarks/bench_winograd.py`` measured it faster than the direct route in both directions (VGG-16's
conv3 to conv5, ResNet-50's layer3). Elsewhere the transforms cost more than the multiplications they save.
The tile size is chosen by ``tile_size``. The input gradient (``conv3x3_input_grad``) runs the forward's steps
backwards, each transposed, with the same transformed weights.

On by default. ``with minicnn.winograd.disabled():`` (or MINICNN_WINOGRAD=0 in the environment) forces the
direct route, the readable reference; ``enabled()`` turns it back on. In float64 the two agree to ~1e-15; in
float32 F(2x2) rounds about like the direct route and F(4x4) about four times more, 1.6e-6 relative (its input
gradient 4e-6; ``benchmarks/bench_winograd.py`` prints all three routes, per layer and direction).
"""
import contextlib
import os
import weakref
from collections import OrderedDict

import numpy as np
from numpy.lib.stride_tricks import as_strided

# F(m x m, 3 x 3): B^T (alpha x alpha), G (alpha x 3), A^T (m x alpha), alpha = m + 2 (Lavin & Gray 2016).
TRANSFORMS = {
    2: (np.array([[1, 0, -1, 0],
                  [0, 1, 1, 0],
                  [0, -1, 1, 0],
                  [0, 1, 0, -1]], dtype=np.float64),
        np.array([[1, 0, 0],
                  [1 / 2, 1 / 2, 1 / 2],
                  [1 / 2, -1 / 2, 1 / 2],
                  [0, 0, 1]]),
        np.array([[1, 1, 1, 0],
                  [0, 1, -1, -1]], dtype=np.float64)),
    4: (np.array([[4, 0, -5, 0, 1, 0],
                  [0, -4, -4, 1, 1, 0],
                  [0, 4, -4, -1, 1, 0],
                  [0, -2, -1, 2, 1, 0],
                  [0, 2, -1, -2, 1, 0],
                  [0, 4, 0, -5, 0, 1]], dtype=np.float64),
        np.array([[1 / 4, 0, 0],
                  [-1 / 6, -1 / 6, -1 / 6],
                  [-1 / 6, 1 / 6, -1 / 6],
                  [1 / 24, 1 / 12, 1 / 6],
                  [1 / 24, -1 / 12, 1 / 6],
                  [0, 0, 1]]),
        np.array([[1, 1, 1, 1, 1, 0],
                  [0, 1, -1, 2, -2, 0],
                  [0, 1, 1, 4, 4, 0],
                  [0, 1, -1, 8, -8, 1]], dtype=np.float64)),
}

# Where the route is taken (``pays``), measured by benchmarks/bench_winograd.py (README, "Winograd"): wide layers
# on small images. Fewer channels or larger images: the transforms cost more than the multiplications they save.
MIN_CHANNELS = 256         # input and output channels, each
MIN_SIZE, MAX_SIZE = 8, 56  # the image's smaller side
_enabled = os.environ.get("MINICNN_WINOGRAD", "1") != "0"     # MINICNN_WINOGRAD=0: the direct route everywhere


@contextlib.contextmanager
def _switched(on):
    global _enabled
    before, _enabled = _enabled, on
    try:
        yield
    finally:
        _enabled = before


def enabled():
    """``with minicnn.winograd.enabled():`` the convolutions that qualify (``pays``) take this route."""
    return _switched(True)


def disabled():
    """``with minicnn.winograd.disabled():`` every convolution takes the direct route (for teaching, and to
    compare float32 results with a library that does not use Winograd)."""
    return _switched(False)


def pays(in_channels, out_channels, kernel, stride, padding, height, width):
    """Whether a convolution (and its input gradient) takes this route: on, 3x3, stride 1, padding 1, at least
    MIN_CHANNELS input and output channels, and an image between MIN_SIZE and MAX_SIZE on its smaller side."""
    return (_enabled and tuple(kernel) == (3, 3) and tuple(stride) == (1, 1) and tuple(padding) == (1, 1)
            and min(in_channels, out_channels) >= MIN_CHANNELS and MIN_SIZE <= min(height, width) <= MAX_SIZE)


def tile_size(height, width):
    """m of F(m x m, 3x3): 4, except 2 on images of 16 or less per side (at 14x14 F(4x4) makes 16 tiles per
    image, and the products become too thin to run near the machine's peak)."""
    return 4 if min(height, width) > 16 else 2


# --------------------------------------------------------------------------
# The transforms: B^T and A^T applied along one axis, with shared subexpressions
# --------------------------------------------------------------------------
# d: the alpha inputs along that axis (arrays or views of one shape), o: the outputs (of the same shape).
# Each line is one ufunc pass over whole arrays; a scaled term goes through the scratch array t.

def _bt2(d, o, t):
    """F(2x2): rows of B^T, [1 0 -1 0], [0 1 1 0], [0 -1 1 0], [0 1 0 -1]: 4 passes."""
    np.subtract(d[0], d[2], out=o[0])
    np.add(d[1], d[2], out=o[1])
    np.subtract(d[2], d[1], out=o[2])
    np.subtract(d[1], d[3], out=o[3])


def _bt4(d, o, t):
    """F(4x4): rows of B^T, 4d0 - 5d2 + d4, -4(d1 + d2) + (d3 + d4), 4(d1 - d2) + (d4 - d3),
    2(d3 - d1) + (d4 - d2), -2(d3 - d1) + (d4 - d2), 4d1 - 5d3 + d5: 21 passes."""
    np.multiply(d[0], 4.0, out=o[0])
    o[0] += d[4]
    np.multiply(d[2], 5.0, out=t)
    o[0] -= t
    np.multiply(d[1], 4.0, out=o[5])
    o[5] += d[5]
    np.multiply(d[3], 5.0, out=t)
    o[5] -= t
    np.add(d[1], d[2], out=t)
    t *= 4.0
    np.add(d[3], d[4], out=o[1])
    o[1] -= t
    np.subtract(d[1], d[2], out=t)
    t *= 4.0
    np.subtract(d[4], d[3], out=o[2])
    o[2] += t
    np.subtract(d[3], d[1], out=t)
    t *= 2.0
    np.subtract(d[4], d[2], out=o[3])
    np.subtract(o[3], t, out=o[4])
    o[3] += t


def _at2(d, o, t):
    """F(2x2): rows of A^T, [1 1 1 0], [0 1 -1 -1]: 4 passes."""
    np.add(d[0], d[1], out=o[0])
    o[0] += d[2]
    np.subtract(d[1], d[2], out=o[1])
    o[1] -= d[3]


def _at4(d, o, t):
    """F(4x4): rows of A^T, d0 + (d1 + d2) + (d3 + d4), (d1 - d2) + 2(d3 - d4), (d1 + d2) + 4(d3 + d4),
    (d1 - d2) + 8(d3 - d4) + d5: 13 passes (t holds two scratch arrays)."""
    s12, s34 = t
    np.add(d[1], d[2], out=s12)
    np.add(d[3], d[4], out=s34)
    np.add(d[0], s12, out=o[0])
    o[0] += s34
    np.multiply(s34, 4.0, out=o[2])
    o[2] += s12
    np.subtract(d[1], d[2], out=s12)                                       # now d1 - d2
    np.subtract(d[3], d[4], out=s34)                                       # now d3 - d4
    np.multiply(s34, 2.0, out=o[1])
    o[1] += s12
    np.multiply(s34, 8.0, out=o[3])
    o[3] += s12
    o[3] += d[5]


# The input gradient runs the forward's steps backwards, each transposed (see ``conv3x3_input_grad``): A where
# the forward had A^T (m values -> alpha), B where it had B^T. A tile's last two rows (or columns) of B's output
# fall on the next tile's first two: B's passes add to those, after writing the others.

def _a2(d, o, t):
    """F(2x2): rows of A, [1 0], [1 1], [1 -1], [0 -1]: 4 passes."""
    np.copyto(o[0], d[0])
    np.add(d[0], d[1], out=o[1])
    np.subtract(d[0], d[1], out=o[2])
    np.negative(d[1], out=o[3])


def _a4(d, o, t):
    """F(4x4): rows of A, d0, (d0 + d2) + (d1 + d3), (d0 + d2) - (d1 + d3), (d0 + 4d2) + (2d1 + 8d3),
    (d0 + 4d2) - (2d1 + 8d3), d3: 13 passes."""
    even, odd = t
    np.copyto(o[0], d[0])
    np.copyto(o[5], d[3])
    np.add(d[0], d[2], out=even)
    np.add(d[1], d[3], out=odd)
    np.add(even, odd, out=o[1])
    np.subtract(even, odd, out=o[2])
    np.multiply(d[2], 4.0, out=even)
    even += d[0]
    np.multiply(d[3], 4.0, out=odd)
    odd += d[1]
    odd *= 2.0
    np.add(even, odd, out=o[3])
    np.subtract(even, odd, out=o[4])


def _b2(d, o, t):
    """F(2x2): rows of B, [1 0 0 0], [0 1 -1 1], [-1 1 1 0], [0 0 0 -1]; o[2] and o[3] overlap the next
    tile's o[0] and o[1], so they are added to, after o[0] and o[1] are written: 7 passes."""
    np.copyto(o[0], d[0])
    np.subtract(d[1], d[2], out=o[1])
    o[1] += d[3]
    s = t[0]
    np.add(d[1], d[2], out=s)
    s -= d[0]
    o[2] += s
    o[3] -= d[3]


def _b4(d, o, t):
    """F(4x4): rows of B, 4d0, 4(d2 - d1 + d5) + 2(d4 - d3), -5d0 - 4(d1 + d2) - (d3 + d4),
    (d1 - d2) + 2(d3 - d4) - 5d5, d0 + (d1 + d2) + (d3 + d4), d5; o[4] and o[5] overlap the next tile's o[0]
    and o[1], so they are added to, after o[0] to o[3] are written: 21 passes."""
    s, u = t
    np.multiply(d[0], 4.0, out=o[0])
    np.add(d[1], d[2], out=s)
    np.add(d[3], d[4], out=u)
    np.multiply(s, -4.0, out=o[2])
    o[2] -= u
    s += u                                                               # d1 + d2 + d3 + d4
    s += d[0]
    np.multiply(d[0], 5.0, out=u)
    o[2] -= u
    o[4] += s
    np.subtract(d[2], d[1], out=s)                                       # now d2 - d1
    np.subtract(d[3], d[4], out=u)                                       # now d3 - d4
    np.multiply(u, 2.0, out=o[3])
    o[3] -= s
    np.add(s, d[5], out=o[1])
    o[1] *= 4.0
    np.multiply(u, 2.0, out=s)
    o[1] -= s
    np.multiply(d[5], 5.0, out=s)
    o[3] -= s
    o[5] += d[5]


BT_PASSES, AT_PASSES = {2: _bt2, 4: _bt4}, {2: _at2, 4: _at4}
A_PASSES, B_PASSES = {2: _a2, 4: _a4}, {2: _b2, 4: _b4}


def transform_weights(w, m):
    """U = G w G^T for every (f, c): (alpha, alpha, F, C), in w's dtype.

    U[a, b] = sum over i, j of G[a, i] G[b, j] w[i, j], that is (G kron G) @ w with each 3x3 kernel a column of
    9: one product (alpha^2, 9) @ (9, F*C) that writes U in its final layout. In float32 the 1/6 and 1/24 of G
    round once more than U's own storage does (about 1e-7 of U's scale, measured)."""
    _, G, _ = TRANSFORMS[m]
    F, C = w.shape[:2]
    U = np.kron(G, G).astype(w.dtype) @ w.transpose(2, 3, 0, 1).reshape(9, F * C)
    return U.reshape(m + 2, m + 2, F, C)


def _column_runs(W, m):
    """For each r < m, the padded columns X = t*m + r that hold one of x's W columns (1 <= X <= W; X = 0 and
    X > W are padding): (r, the first such t, how many, x's column X - 1 there) -> x[..., start::m][:count]."""
    for r in range(m):
        first = 1 if r == 0 else 0
        count = (W - r) // m - first + 1
        if count > 0:
            yield r, first, count, slice(first * m + r - 1, first * m + r - 1 + (count - 1) * m + 1, m)


def _split_columns(x, m, n_tiles):
    """x (N, C, H, W) padded by 1 and laid out (N, Hp, m, tw + 1, C): the padded column X = t*m + r at [..., r,
    t, :]. Column b of tile tx is then [b % m, tx + b // m]: every pass over the tiles reads whole runs of
    (tw, C), not a stride-m view."""
    N, C, H, W = x.shape
    th, tw = n_tiles
    xq = np.zeros((N, th * m + 2, m, tw + 1, C), x.dtype)
    for r, first, count, columns in _column_runs(W, m):
        xq[:, 1:H + 1, r, first:first + count] = x[:, :, :, columns].transpose(0, 2, 3, 1)
    return xq


def _merge_columns(xq, x):
    """The inverse of ``_split_columns``: x (N, C, H, W) from the rows and columns of xq that are not padding."""
    H, W = x.shape[2:]
    for r, first, count, columns in _column_runs(W, xq.shape[2]):
        x[:, :, :, columns] = xq[:, 1:H + 1, r, first:first + count].transpose(0, 3, 1, 2)


BLOCK = 64 * 1024       # elements of a block's intermediate array: it and its neighbours stay in a core's L2
                        # cache (measured: a third faster than whole-array passes at 224x224; two Python threads
                        # sharing the blocks gained nothing on 2 cores, the passes wait on memory)


def _transform_input(x, m, n_tiles):
    """V = B^T d B for every tile d of x padded by 1, channels last: (alpha, alpha, N, th, tw, C).

    First along the image's rows (row k of every tile is image row ty*m + k), then along its columns (with the
    columns split by ``_split_columns``, column k of every tile is one contiguous run of (tw, C)); each pass is
    one ufunc over all the tiles of a band of tile rows at once."""
    bt = BT_PASSES[m]
    alpha = m + 2
    th, tw = n_tiles
    xq = _split_columns(x, m, n_tiles)
    V = np.empty((alpha, alpha, x.shape[0], th, tw, x.shape[1]), x.dtype)
    per_block = max(1, BLOCK // (alpha * x.shape[0] * m * (tw + 1) * x.shape[1]))   # tile rows: stay in cache
    for t0 in range(0, th, per_block):
        t1 = min(th, t0 + per_block)
        d = [xq[:, k + t0 * m:k + (t1 - 1) * m + 1:m] for k in range(alpha)]      # (N, nb, m, tw + 1, C)
        rows = np.empty((alpha,) + d[0].shape, x.dtype)
        bt(d, rows, np.empty(d[0].shape, x.dtype))
        cols = [rows[:, :, :, k % m, k // m:k // m + tw] for k in range(alpha)]  # (alpha, N, nb, tw, C)
        bt(cols, [V[:, j, :, t0:t1] for j in range(alpha)], np.empty(cols[0].shape, x.dtype))
    return V


def _transform_output(M, m, out):
    """out[n, f, ty*m + p, tx*m + q] = (A^T M A)[p, q] for M: (alpha, alpha, F, N, th, tw); out: (N, F, th*m,
    tw*m). Along i, then along j straight into out, a band of channels at a time."""
    at = AT_PASSES[m]
    alpha = m + 2
    N, F = out.shape[:2]
    th, tw = M.shape[-2:]
    tiles = out.reshape(N, F, th, m, tw, m)

    per_block = max(1, BLOCK // (m * alpha * N * th * tw))                 # channels: stay in cache
    for f0 in range(0, F, per_block):
        f1 = min(F, f0 + per_block)
        d = [M[i, :, f0:f1] for i in range(alpha)]                         # (alpha_j, fb, N, th, tw)
        rows = np.empty((m,) + d[0].shape, M.dtype)
        at(d, rows, (np.empty(d[0].shape, M.dtype), np.empty(d[0].shape, M.dtype)))
        d = [rows[:, j] for j in range(alpha)]                             # (m_p, fb, N, th, tw)
        o = [tiles[:, f0:f1, :, :, :, q].transpose(3, 1, 0, 2, 4) for q in range(m)]
        at(d, o, (np.empty(d[0].shape, M.dtype), np.empty(d[0].shape, M.dtype)))


def _transform_output_transposed(dout, m):
    """M_bar = A Y_bar A^T for every m x m tile Y_bar of dout (N, F, th*m, tw*m): (alpha, alpha, F, N, th, tw),
    the transpose of ``_transform_output`` (its two passes backwards, A for A^T)."""
    a = A_PASSES[m]
    alpha = m + 2
    N, F = dout.shape[:2]
    th, tw = dout.shape[2] // m, dout.shape[3] // m
    tiles = dout.reshape(N, F, th, m, tw, m)
    M = np.empty((alpha, alpha, F, N, th, tw), dout.dtype)
    per_block = max(1, BLOCK // (m * alpha * N * th * tw))                 # channels: stay in cache
    for f0 in range(0, F, per_block):
        f1 = min(F, f0 + per_block)
        y = [tiles[:, f0:f1, :, :, :, q].transpose(3, 1, 0, 2, 4) for q in range(m)]   # (m_p, fb, N, th, tw)
        cols = np.empty((m, alpha) + y[0].shape[1:], dout.dtype)
        a(y, [cols[:, j] for j in range(alpha)], (np.empty(y[0].shape, dout.dtype),
                                                  np.empty(y[0].shape, dout.dtype)))
        d = [cols[p] for p in range(m)]                                     # (alpha_j, fb, N, th, tw)
        a(d, [M[i, :, f0:f1] for i in range(alpha)], (np.empty(d[0].shape, dout.dtype),
                                                        np.empty(d[0].shape, dout.dtype)))
    return M


def _transform_input_transposed(V, m, dx):
    """dx (N, C, H, W) from V_bar (alpha, alpha, N, th, tw, C): d_bar = B V_bar B^T for every tile, added up
    where tiles overlap, the padding dropped; the transpose of ``_transform_input`` (its passes backwards, B for
    B^T, and the column split undone at the end). The bands of tile rows go from the bottom up: each band adds
    its last two rows to the first two of the band below, which must be written by then."""
    b = B_PASSES[m]
    alpha = m + 2
    _, _, N, th, tw, C = V.shape
    xq = np.empty((N, th * m + 2, m, tw + 1, C), V.dtype)                  # the padded input, columns split
    xq[:, th * m:] = 0                                                      # below the last band: added to
    per_block = max(1, BLOCK // (alpha * N * m * (tw + 1) * C))
    for t0 in reversed(range(0, th, per_block)):
        t1 = min(th, t0 + per_block)
        rows = np.empty((alpha, N, t1 - t0, m, tw + 1, C), V.dtype)
        rows[:, :, :, :, tw] = 0                                            # the last tile's columns add here
        cols = [V[:, j, :, t0:t1] for j in range(alpha)]                    # (alpha_i, N, nb, tw, C)
        b(cols, [rows[:, :, :, k % m, k // m:k // m + tw] for k in range(alpha)],
          (np.empty(cols[0].shape, V.dtype), np.empty(cols[0].shape, V.dtype)))
        d = [rows[i] for i in range(alpha)]                                 # (N, nb, m, tw + 1, C)
        b(d, [xq[:, k + t0 * m:k + (t1 - 1) * m + 1:m] for k in range(alpha)],
          (np.empty(d[0].shape, V.dtype), np.empty(d[0].shape, V.dtype)))
    _merge_columns(xq, dx)


# --------------------------------------------------------------------------
# The convolution, and the transformed weights it keeps
# --------------------------------------------------------------------------

CACHE_BUDGET = 256 * 2 ** 20      # bytes of transformed weights kept between calls (least recently used go)
SAMPLES = 4096                    # weights compared at every call, spread evenly over the array
_cache = OrderedDict()            # (id(w), m) -> (weakref to w, sampled weights, U)


def _sampled(w):
    """About SAMPLES of w's values, evenly spaced (a view where w is contiguous)."""
    return np.ravel(w)[::max(1, w.size // SAMPLES)]


def transformed(w, m):
    """U for the weights w, kept between calls while w is alive (and dropped with it), within CACHE_BUDGET; the
    forward pass and the input gradient share it. A new array is a new key. An array changed in place is caught
    when one of the ~4096 weights compared at every call changed (rewriting, scaling, re-drawing or shuffling a
    layer); code that changes only a few weights in place must call ``forget(w)`` (the optimizers do, after every
    step)."""
    key = (id(w), m)
    entry = _cache.get(key)
    if entry is not None and entry[0]() is w and np.array_equal(entry[1], _sampled(w)):
        _cache.move_to_end(key)
        return entry[2]
    U = transform_weights(w, m)

    def drop(ref, key=key):                                  # w is gone: so is its entry (not a new one's)
        if key in _cache and _cache[key][0] is ref:
            del _cache[key]
    _cache[key] = (weakref.ref(w, drop), _sampled(w).copy(), U)
    while sum(kept[2].nbytes for kept in _cache.values()) > CACHE_BUDGET and len(_cache) > 1:
        _cache.popitem(last=False)
    return U


def forget(w=None):
    """Drop the transformed weights of w (all of them with None): after changing w in place."""
    for key in [k for k in _cache if w is None or k[0] == id(w)]:
        del _cache[key]


CHUNK_BUDGET = 64 * 2 ** 20       # bytes of transformed input per chunk of images


def _image_chunks(N, per_image):
    step = max(1, CHUNK_BUDGET // per_image)
    return [slice(start, min(N, start + step)) for start in range(0, N, step)]


def conv3x3(x, w, bias=None, m=None):
    """The stride-1, padding-1 3x3 convolution of x (N, C, H, W) by w (F, C, 3, 3) -> (N, F, H, W).
    m: the tile size (default ``tile_size``)."""
    N, C, H, W = x.shape
    m = tile_size(H, W) if m is None else m
    alpha = m + 2
    U = transformed(w, m)                                                   # (alpha, alpha, F, C)
    F = U.shape[2]
    if U.shape[3] != C:
        raise ValueError(f"winograd.conv3x3: the weights take {U.shape[3]} input channels, x has {C}")
    th, tw = -(-H // m), -(-W // m)
    out = np.empty((N, F, th * m, tw * m), x.dtype)
    for part in _image_chunks(N, alpha * alpha * max(C, F) * th * tw * x.itemsize):
        n = part.stop - part.start
        V = _transform_input(x[part], m, (th, tw)).reshape(alpha * alpha, n * th * tw, C)
        M = np.matmul(U.reshape(alpha * alpha, F, C), V.transpose(0, 2, 1))   # one product per tile position
        _transform_output(M.reshape(alpha, alpha, F, n, th, tw), m, out[part])
    if bias is not None:
        out += bias[:, None, None]
    if (th * m, tw * m) != (H, W):
        out = np.ascontiguousarray(out[:, :, :H, :W])
    return out


def conv3x3_input_grad(dout, w, m=None):
    """dx (N, C, H, W) of the stride-1, padding-1 3x3 convolution by w (F, C, 3, 3), from dout (N, F, H, W).

    Per tile the forward pass is linear in the input tile d: Y = A^T [U * (B^T d B)] A, summed over channels.
    Its transpose runs the same steps backwards, each transposed:

        d_bar = B [U^T * (A Y_bar A^T)] B^T        (U^T: the product over F instead of C)

    and the alpha x alpha d_bar of neighbouring tiles overlap by two rows and columns, where they add up (the
    forward read those pixels twice). The same transformed weights U serve both directions, so one cache entry
    per layer; the number of multiplications saved is the forward's."""
    N, F, H, W = dout.shape
    m = tile_size(H, W) if m is None else m
    alpha = m + 2
    U = transformed(w, m)                                                   # (alpha, alpha, F, C)
    C = U.shape[3]
    if U.shape[2] != F:
        raise ValueError(f"winograd.conv3x3_input_grad: the weights give {U.shape[2]} output channels, dout has "
                         f"{F}")
    th, tw = -(-H // m), -(-W // m)
    if (th * m, tw * m) != (H, W):                                          # the forward computed whole tiles
        dout = np.pad(dout, ((0, 0), (0, 0), (0, th * m - H), (0, tw * m - W)))
    dx = np.empty((N, C, H, W), dout.dtype)
    for part in _image_chunks(N, alpha * alpha * max(C, F) * th * tw * dout.itemsize):
        n = part.stop - part.start
        M = _transform_output_transposed(dout[part], m)                    # (alpha, alpha, F, n, th, tw)
        V = np.matmul(M.reshape(alpha * alpha, F, n * th * tw).transpose(0, 2, 1),
                      U.reshape(alpha * alpha, F, C))                       # (alpha^2, tiles, C)
        _transform_input_transposed(V.reshape(alpha, alpha, n, th, tw, C), m, dx[part])
    return dx
