"""SLIC superpixels (Achanta et al. 2012) in NumPy and SciPy: the segments that
LIME and SHAP switch on and off.

    labels = slic(image, n_segments=50)       # image: (C, H, W) in [0, 1] -> labels: (H, W) ints 0..M-1

1. convert to CIELAB, where distances match perceived colour differences;
2. seed centres on a grid of spacing S = sqrt(H*W / K), each moved to the
   lowest colour gradient of its 3x3 neighbourhood (off edges);
3. repeat: give each pixel to the nearest of the 3x3 neighbouring centres by
   ``D = sqrt(d_lab^2 + (d_xy / S)^2 * m^2)`` (m = compactness: larger is
   squarer), then move each centre to the mean of its pixels;
4. make every segment one connected region: pieces cut off from their
   segment, and segments smaller than half of S^2, join the neighbour
   they share the longest border with.

It does not reproduce scikit-image's labels pixel for pixel (seeding and
the connectivity pass differ); the tests compare boundary recall instead.
"""
import numpy as np
from scipy import ndimage


def rgb_to_lab(image):
    """(3, H, W) sRGB in [0, 1] -> (3, H, W) CIELAB (L in 0..100), D65 white point."""
    rgb = np.clip(np.asarray(image, dtype=np.float64), 0, 1)
    linear = np.where(rgb > 0.04045, ((rgb + 0.055) / 1.055) ** 2.4, rgb / 12.92)
    to_xyz = np.array([[0.412453, 0.357580, 0.180423],
                       [0.212671, 0.715160, 0.072169],
                       [0.019334, 0.119193, 0.950227]])
    xyz = np.einsum("ij,jhw->ihw", to_xyz, linear) / np.array([0.950456, 1.0, 1.088754])[:, None, None]
    f = np.where(xyz > 0.008856, np.cbrt(xyz), 7.787 * xyz + 16 / 116)
    L = np.where(xyz[1] > 0.008856, 116 * np.cbrt(xyz[1]) - 16, 903.3 * xyz[1])
    return np.stack([L, 500 * (f[0] - f[1]), 200 * (f[1] - f[2])])


def _check_image(image):
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[0] not in (1, 3) or image.dtype.kind not in "fui":
        raise ValueError(f"slic: expected one image (C, H, W) with C = 1 or 3, got shape {image.shape} "
                         f"({image.dtype}); for a batch, call it per image")
    if image.shape[1] < 2 or image.shape[2] < 2:
        raise ValueError(f"slic: the image {image.shape[1]}x{image.shape[2]} is too small to segment")
    if image.dtype == np.uint8:                                   # 0..255: as the [0, 1] image it stands for
        return image.astype(np.float64) / 255
    if image.dtype.kind in "ui" or image.dtype == np.float16:
        raise ValueError(f"slic: an image of {image.dtype} is ambiguous; give floats in [0, 1] (or uint8 0..255)")
    image = image.astype(np.float64)
    if not np.isfinite(image).all():
        raise ValueError("slic: the image contains NaN or infinity")
    return image


def slic(image, n_segments=50, compactness=10.0, max_iter=10):
    """SLIC superpixels of one image (C, H, W) in [0, 1] -> (H, W) int labels 0..M-1, each one connected region.

    A uint8 image (0..255) is read as the [0, 1] image it stands for; other integer types are refused.

    n_segments: about how many segments (the grid's size; the result is near it, not equal).
    compactness: the weight m of spatial distance against colour distance (CIELAB units; 10 is SLIC's
        default for colour images): larger gives squarer, more regular segments.
    max_iter: assignment/update rounds (SLIC converges in about 10).
    """
    image = _check_image(image)
    if not (isinstance(n_segments, (int, np.integer)) and n_segments >= 2):
        raise ValueError(f"slic: n_segments must be an int >= 2, got {n_segments!r}")
    if not compactness > 0:
        raise ValueError(f"slic: compactness must be positive, got {compactness!r}")
    C, H, W = image.shape
    features = rgb_to_lab(image) if C == 3 else image * 100.0        # grey: L in 0..100 too
    S = max(1.0, np.sqrt(H * W / n_segments))
    rows_n, cols_n = max(1, int(round(H / S))), max(1, int(round(W / S)))
    step_r, step_c = H / rows_n, W / cols_n

    # 2. seeds on the grid, moved to the lowest gradient in their 3x3 neighbourhood
    grad = sum(ndimage.sobel(f, axis=0) ** 2 + ndimage.sobel(f, axis=1) ** 2 for f in features)
    cy = np.clip(((np.arange(rows_n) + 0.5) * step_r).astype(int), 0, H - 1)
    cx = np.clip(((np.arange(cols_n) + 0.5) * step_c).astype(int), 0, W - 1)
    centres_y, centres_x = [a.ravel().astype(np.float64) for a in np.meshgrid(cy, cx, indexing="ij")]
    for k, (y, x) in enumerate(zip(centres_y.astype(int), centres_x.astype(int))):
        y0, x0 = max(y - 1, 0), max(x - 1, 0)
        window = grad[y0:y + 2, x0:x + 2]
        dy, dx = np.unravel_index(np.argmin(window), window.shape)
        centres_y[k], centres_x[k] = y0 + dy, x0 + dx
    centres_f = features[:, centres_y.astype(int), centres_x.astype(int)]            # (C, K)

    # 3. assign to the nearest of the 3x3 neighbouring centres, then move the centres
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float64)
    cell_r = np.minimum((yy / step_r).astype(int), rows_n - 1)
    cell_c = np.minimum((xx / step_c).astype(int), cols_n - 1)
    spatial = (compactness / S) ** 2
    labels = np.zeros((H, W), dtype=np.int64)
    for _ in range(max_iter):
        best = np.full((H, W), np.inf)
        for dr in (-1, 0, 1):
            for dc in (-1, 0, 1):
                r, c = cell_r + dr, cell_c + dc
                valid = (r >= 0) & (r < rows_n) & (c >= 0) & (c < cols_n)
                k = np.where(valid, r * cols_n + c, 0)
                d = ((features - centres_f[:, k]) ** 2).sum(axis=0) + \
                    spatial * ((yy - centres_y[k]) ** 2 + (xx - centres_x[k]) ** 2)
                d[~valid] = np.inf
                closer = d < best
                best[closer], labels[closer] = d[closer], k[closer]
        count = np.bincount(labels.ravel(), minlength=len(centres_y))
        has = count > 0
        for f in range(len(features)):
            centres_f[f, has] = np.bincount(labels.ravel(), features[f].ravel(), len(centres_y))[has] / count[has]
        centres_y[has] = np.bincount(labels.ravel(), yy.ravel(), len(centres_y))[has] / count[has]
        centres_x[has] = np.bincount(labels.ravel(), xx.ravel(), len(centres_y))[has] / count[has]

    # 4. one connected region per segment, none tiny
    return enforce_connectivity(labels, min_size=max(1, int(0.5 * S * S)))


def _border_lengths(pieces):
    """{piece: {neighbour: shared border length}} from the 4-neighbour pixel pairs, in one vectorized pass."""
    pairs = np.concatenate([np.stack([pieces[:, :-1].ravel(), pieces[:, 1:].ravel()], 1),
                            np.stack([pieces[:-1, :].ravel(), pieces[1:, :].ravel()], 1)])
    pairs = np.sort(pairs[pairs[:, 0] != pairs[:, 1]], axis=1)
    if not len(pairs):
        return {}
    keys, counts = np.unique(pairs, axis=0, return_counts=True)
    border = {}
    for (a, b), n in zip(keys.tolist(), counts.tolist()):
        border.setdefault(a, {})[b] = n
        border.setdefault(b, {})[a] = n
    return border


def enforce_connectivity(labels, min_size=1):
    """Relabel so that every label is one 4-connected region of at least ``min_size`` pixels (when there is
    more than one region): pieces and small regions join their longest-bordering neighbour. Labels 0..M-1.

    Linear in the image: every connected piece is labelled once, border lengths are counted once, and the
    small pieces (smallest first) are merged with a union-find, so a noisy image with thousands of
    fragments costs no more than a clean one."""
    labels = np.asarray(labels)
    pieces = np.zeros(labels.shape, dtype=np.int64)
    count = 0
    for value in np.unique(labels):                   # each label's connected pieces, numbered 0..count-1
        comps, n = ndimage.label(labels == value)
        pieces[comps > 0] = comps[comps > 0] + count - 1
        count += n
    size = np.bincount(pieces.ravel(), minlength=count)
    border = _border_lengths(pieces)                  # per region (a root of the union-find), as it grows
    parent = np.arange(count)

    def root(k):
        while parent[k] != k:
            parent[k] = parent[parent[k]]
            k = parent[k]
        return k
    merged = True
    while merged:                                     # until no region below min_size has a neighbour
        merged = False
        for k in np.argsort(size, kind="stable"):
            if parent[k] != k or size[k] >= min_size:
                continue
            touching = {}
            for neighbour, length in border.get(int(k), {}).items():
                other = root(neighbour)
                if other != k:
                    touching[other] = touching.get(other, 0) + length
            if not touching:
                continue
            target = max(touching, key=lambda t: (touching[t], -t))      # longest border; ties to the lower id
            parent[k] = target
            size[target] += size[k]
            grown = border.setdefault(int(target), {})
            for other, length in touching.items():                     # the region inherits k's borders
                if other != target:
                    grown[other] = grown.get(other, 0) + length
            border.pop(int(k), None)
            merged = True
    roots = np.array([root(k) for k in range(count)])
    return np.unique(roots[pieces], return_inverse=True)[1].reshape(labels.shape)
