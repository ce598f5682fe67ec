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

Used by ``conv_ops.conv2d`` and ``conv_ops.conv2d_input_grad`` for 3x3 kernels, stride 1, padding 1 and at
least ``MIN_CHANNELS`` input channels (``pays``), with the tile size chosen by ``tile_size``. The input
gradient is the same routine: a convolution of dout with the kernel flipped and in/out channels swapped.

Off by default for now: in this NumPy version the transforms still cost more than the multiplications they
save on most of VGG-16's layers (README, "Winograd", measured). ``with minicnn.winograd.enabled():`` (or
MINICNN_WINOGRAD=1 in the environment) turns it on; ``disabled()`` forces the direct route, the readable
reference. In float64 the two agree to ~1e-15; in float32 F(2x2) rounds about like the direct route and
F(4x4) several times more (``benchmarks/bench_winograd.py`` prints both, per layer).
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

MIN_CHANNELS = 64          # fewer input channels: the products are too thin for the transforms to pay
MIN_SIZE = 8               # smaller images: most of each tile would be padding
# Off unless asked for (see the module's docstring): MINICNN_WINOGRAD=1, or ``with enabled():``.
_enabled = os.environ.get("MINICNN_WINOGRAD", "0") == "1"


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


def pays(in_channels, kernel, stride, padding, height, width):
    """Whether a convolution takes this route: on, 3x3, stride 1, padding 1, at least MIN_CHANNELS input
    channels and an image of at least MIN_SIZE on each side (measured: ``benchmarks/bench_winograd.py``)."""
    return (_enabled and tuple(kernel) == (3, 3) and tuple(stride) == (1, 1) and tuple(padding) == (1, 1)
            and in_channels >= MIN_CHANNELS and min(height, width) >= MIN_SIZE)


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


BT_PASSES, AT_PASSES = {2: _bt2, 4: _bt4}, {2: _at2, 4: _at4}


def transform_weights(w, m):
    """U = G w G^T for every (f, c): (alpha, alpha, F, C), in w's dtype (computed in float64)."""
    _, G, _ = TRANSFORMS[m]
    t = np.tensordot(G, w.astype(np.float64), axes=([1], [2]))            # (alpha, F, C, 3)
    U = np.tensordot(t, G, axes=([3], [1]))                                # (alpha, F, C, alpha)
    return np.ascontiguousarray(U.transpose(0, 3, 1, 2), dtype=w.dtype)


def _split_columns(x, m, n_tiles):
    """x (N, C, H, W) padded by 1 and laid out (N, Hp, m, tw + 1, C): the padded column X = t*m + r at [..., r,
    t, :]. Column b of tile tx is then [b % m, tx + b // m]: every pass over the tiles reads whole runs of
    (tw, C), not a stride-m view."""
    N, C, H, W = x.shape
    th, tw = n_tiles
    xq = np.zeros((N, th * m + 2, m, tw + 1, C), x.dtype)
    for r in range(m):
        first = 1 if r == 0 else 0                                        # X = t*m + r >= 1 (X = 0 is padding)
        count = (W - r) // m - first + 1                                   # ... and X <= W
        if count > 0:
            start = first * m + r - 1                                      # x's column X - 1
            xq[:, 1:H + 1, r, first:first + count] = x[:, :, :, start:start + (count - 1) * m + 1:m].transpose(
                0, 2, 3, 1)
    return xq


THREADS = min(2, os.cpu_count() or 1)   # a transform's blocks are shared out over this many threads
BLOCK = 64 * 1024                       # elements of a block's intermediate array: it and its neighbours stay
                                        # in a core's L2 cache
_pool = None


def _in_threads(blocks, work):
    """work(block) for every block, shared out over THREADS Python threads (NumPy's ufuncs release the GIL)."""
    def run(share):
        for block in share:
            work(block)
    if THREADS == 1 or len(blocks) < 2:
        return run(blocks)
    from concurrent.futures import ThreadPoolExecutor
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(THREADS - 1)
    try:
        pending = [_pool.submit(run, blocks[k::THREADS]) for k in range(1, THREADS)]
    except RuntimeError:                          # no threads allowed here (a sandbox's limits): one thread
        return run(blocks)
    run(blocks[0::THREADS])
    for p in pending:
        p.result()


def _transform_input(x, m, n_tiles):
    """V = B^T d B for every tile d of x padded by 1, channels last: (alpha, alpha, N, th, tw, C).

    First along the image's rows (row k of every tile is image row ty*m + k), then along its columns (with the
    columns split by ``_split_columns``, column k of every tile is one contiguous run of (tw, C)); each pass is
    one ufunc over all tiles at once. The threads take a share of the tile rows each."""
    bt = BT_PASSES[m]
    alpha = m + 2
    th, tw = n_tiles
    xq = _split_columns(x, m, n_tiles)
    V = np.empty((alpha, alpha, x.shape[0], th, tw, x.shape[1]), x.dtype)

    def work(block):
        t0, t1 = block
        d = [xq[:, k + t0 * m:k + (t1 - 1) * m + 1:m] for k in range(alpha)]      # (N, nb, m, tw + 1, C)
        rows = np.empty((alpha,) + d[0].shape, x.dtype)
        bt(d, rows, np.empty(d[0].shape, x.dtype))
        cols = [rows[:, :, :, k % m, k // m:k // m + tw] for k in range(alpha)]  # (alpha, N, nb, tw, C)
        bt(cols, [V[:, j, :, t0:t1] for j in range(alpha)], np.empty(cols[0].shape, x.dtype))
    per_block = max(1, BLOCK // (alpha * x.shape[0] * m * (tw + 1) * x.shape[1]))   # tile rows: stay in cache
    _in_threads([(t, min(th, t + per_block)) for t in range(0, th, per_block)], work)
    return V


def _transform_output(M, m, out):
    """out[n, f, ty*m + p, tx*m + q] = (A^T M A)[p, q] for M: (alpha, alpha, F, N, th, tw); out: (N, F, th*m,
    tw*m). Along i, then along j straight into out. The threads take a share of the channels each."""
    at = AT_PASSES[m]
    alpha = m + 2
    N, F = out.shape[:2]
    th, tw = M.shape[-2:]
    tiles = out.reshape(N, F, th, m, tw, m)

    def work(block):
        f0, f1 = block
        d = [M[i, :, f0:f1] for i in range(alpha)]                         # (alpha_j, fb, N, th, tw)
        rows = np.empty((m,) + d[0].shape, M.dtype)
        at(d, rows, (np.empty(d[0].shape, M.dtype), np.empty(d[0].shape, M.dtype)))
        d = [rows[:, j] for j in range(alpha)]                             # (m_p, fb, N, th, tw)
        o = [tiles[:, f0:f1, :, :, :, q].transpose(3, 1, 0, 2, 4) for q in range(m)]
        at(d, o, (np.empty(d[0].shape, M.dtype), np.empty(d[0].shape, M.dtype)))
    per_block = max(1, BLOCK // (m * alpha * N * th * tw))                 # channels: stay in cache
    _in_threads([(f, min(F, f + per_block)) for f in range(0, F, per_block)], work)


# --------------------------------------------------------------------------
# The convolution, and the transformed weights it keeps
# --------------------------------------------------------------------------

CACHE_BUDGET = 256 * 2 ** 20      # bytes of transformed weights kept between calls (least recently used go)
_cache = OrderedDict()            # (id(w), m, flipped) -> (weakref to w, U)


def transformed(w, m, flipped=False):
    """U for the weights w (flipped: of the input gradient's kernel, w flipped with in/out swapped), kept
    between calls while w is alive, within CACHE_BUDGET. Code that changes a weight array in place must call
    ``forget(w)`` (the optimizers do); a new array is a new key."""
    key = (id(w), m, flipped)
    entry = _cache.get(key)
    if entry is not None and entry[0]() is w:
        _cache.move_to_end(key)
        return entry[1]
    kernel = w[:, :, ::-1, ::-1].transpose(1, 0, 2, 3) if flipped else w
    U = transform_weights(kernel, m)
    _cache[key] = (weakref.ref(w), U)
    while sum(u.nbytes for _, u in _cache.values()) > CACHE_BUDGET and len(_cache) > 1:
        _cache.popitem(last=False)
    return U


def forget(w=None):
    """Drop the transformed weights of w (all of them with None): after changing w in place."""
    for key in [k for k in _cache if w is None or k[0] == id(w)]:
        del _cache[key]


CHUNK_BUDGET = 64 * 2 ** 20       # bytes of transformed input per chunk of images


def conv3x3(x, w, bias=None, flipped=False, m=None):
    """The stride-1, padding-1 3x3 convolution of x (N, C, H, W) by w (F, C, 3, 3) -> (N, F, H, W) (flipped:
    by w flipped with in/out swapped, w (C', F', 3, 3) then; the input gradient's convolution).
    m: the tile size (default ``tile_size``)."""
    N, C, H, W = x.shape
    m = tile_size(H, W) if m is None else m
    alpha = m + 2
    U = transformed(w, m, flipped)                                          # (alpha, alpha, F, C)
    F = U.shape[2]
    if U.shape[3] != C:
        raise ValueError(f"winograd.conv3x3: the weights take {U.shape[3]} input channels, x has {C}")
    th, tw = -(-H // m), -(-W // m)
    out = np.empty((N, F, th * m, tw * m), x.dtype)
    per_image = alpha * alpha * max(C, F) * th * tw * x.itemsize
    step = max(1, CHUNK_BUDGET // per_image)
    for start in range(0, N, step):
        part = slice(start, min(N, start + step))
        n = part.stop - part.start
        V = _transform_input(x[part], m, (th, tw)).reshape(alpha * alpha, n * th * tw, C)
        M = np.matmul(U.reshape(alpha * alpha, F, C), V.transpose(0, 2, 1))   # one product per tile position
        _transform_output(M.reshape(alpha, alpha, F, n, th, tw), m, out[part])
    if bias is not None:
        out += bias[:, None, None]
    if (th * m, tw * m) != (H, W):
        out = np.ascontiguousarray(out[:, :, :H, :W])
    return out
