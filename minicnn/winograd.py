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
# The transforms: each row of a small matrix is a few adds on whole arrays
# --------------------------------------------------------------------------

def _combine(coefficients, parts, out, tmp):
    """out = sum_k coefficients[k] * parts[k] over the nonzero coefficients (parts: arrays or views; tmp: a
    scratch array of out's shape for the scaled terms, so that no pass allocates). Two unit terms first
    make one ufunc call (p0 + p1, p0 - p1 or p1 - p0), not a copy and an add."""
    terms = [(c, p) for c, p in zip(coefficients, parts) if c != 0]
    (c0, p0), rest = terms[0], terms[1:]
    if rest and abs(c0) == 1 and abs(rest[0][0]) == 1:
        (c1, p1), rest = rest[0], rest[1:]
        if c0 == c1:
            np.add(p0, p1, out=out)
            if c0 == -1:
                np.negative(out, out=out)
        else:
            np.subtract(p0, p1, out=out) if c0 == 1 else np.subtract(p1, p0, out=out)
    elif c0 == 1:
        np.copyto(out, p0)
    else:
        np.multiply(p0, c0, out=out)
    for c, p in rest:
        if c == 1:
            np.add(out, p, out=out)
        elif c == -1:
            np.subtract(out, p, out=out)
        else:
            np.multiply(p, c, out=tmp)
            np.add(out, tmp, out=out)


THREADS = min(2, os.cpu_count() or 1)   # the transforms are memory-bound ufunc passes: two threads, each its share


def _combine_all(jobs, shape, dtype):
    """Run ``_combine(coefficients, parts, out, tmp)`` for every job (coefficients, parts, out), split over
    THREADS Python threads (NumPy's ufuncs release the GIL), each with its own scratch array."""
    def run(share):
        tmp = np.empty(shape, dtype)
        for coefficients, parts, out in share:
            _combine(coefficients, parts, out, tmp)
    shares = [jobs[k::THREADS] for k in range(THREADS)]
    if THREADS == 1 or len(jobs) < 2:
        return run(jobs)
    from concurrent.futures import ThreadPoolExecutor
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(THREADS - 1)
    pending = [_pool.submit(run, share) for share in shares[1:]]
    run(shares[0])
    for p in pending:
        p.result()


_pool = None


def transform_weights(w, m):
    """U = G w G^T for every (f, c): (alpha, alpha, F, C), in w's dtype (computed in float64)."""
    _, G, _ = TRANSFORMS[m]
    t = np.tensordot(G, w.astype(np.float64), axes=([1], [2]))            # (alpha, F, C, 3)
    U = np.tensordot(t, G, axes=([3], [1]))                                # (alpha, F, C, alpha)
    return np.ascontiguousarray(U.transpose(0, 3, 1, 2), dtype=w.dtype)


def _transform_input(x, m, n_tiles):
    """V = B^T d B for every tile d of x padded by 1, channels last: (alpha, alpha, N, th, tw, C).

    First along the rows (H): row i of a tile combines image rows ty*m + k, whole rows of (W, C) at a time.
    Then along the columns (W): every pass runs over whole channel vectors (long contiguous inner loops)."""
    BT, _, _ = TRANSFORMS[m]
    alpha = m + 2
    N, C, H, W = x.shape
    th, tw = n_tiles
    Wp = tw * m + 2
    xp = np.zeros((N, th * m + 2, Wp, C), x.dtype)
    xp[:, 1:H + 1, 1:W + 1] = x.transpose(0, 2, 3, 1)
    sN, sH, sW, sC = xp.strides
    d = as_strided(xp, (alpha, N, th, Wp, C), (sH, sN, m * sH, sW, sC), writeable=False)   # d[k]: rows ty*m + k
    rows = np.empty((alpha, N, th, Wp, C), x.dtype)                        # rows[i] = sum_k BT[i, k] d[k]
    _combine_all([(BT[i], d, rows[i]) for i in range(alpha)], rows.shape[1:], x.dtype)
    sI, sN, sT, sW, sC = rows.strides
    cols = as_strided(rows, (alpha, alpha, N, th, tw, C), (sI, sW, sN, sT, m * sW, sC), writeable=False)
    V = np.empty((alpha, alpha, N, th, tw, C), x.dtype)                    # V[i, j] = sum_k BT[j, k] cols[i, k]
    _combine_all([(BT[j], cols[i], V[i, j]) for i in range(alpha) for j in range(alpha)], V.shape[2:], x.dtype)
    return V


def _transform_output(M, m, out):
    """out[n, f, ty*m + p, tx*m + q] = (A^T M A)[p, q] for M: (alpha, alpha, F, N, th, tw); out: (N, F, th*m,
    tw*m)."""
    _, _, AT = TRANSFORMS[m]
    alpha = m + 2
    N, F = out.shape[:2]
    th, tw = M.shape[-2:]
    rows = np.empty((m, alpha) + M.shape[2:], M.dtype)                     # rows[p, j] = sum_i AT[p, i] M[i, j]
    _combine_all([(AT[p], M[:, j], rows[p, j]) for p in range(m) for j in range(alpha)], M.shape[2:], M.dtype)
    tiles = out.reshape(N, F, th, m, tw, m)                                # written straight into the result
    _combine_all([(AT[q], rows[p], tiles[:, :, :, p, :, q].transpose(1, 0, 2, 3)) for p in range(m)
                  for q in range(m)], M.shape[2:], M.dtype)


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
