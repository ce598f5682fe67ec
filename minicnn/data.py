"""Generated images with ground truth: one shape on a cluttered, textured background.

Each image holds one object of a class in SHAPE_CLASSES at a random position,
scale, rotation and colour, drawn over a noisy colour texture with strokes
and dots that belong to no class, so a classifier must find the object. The
object's pixel mask comes with every image; that is what makes the
attribution maps checkable (``attribution.evaluate``). Everything is
deterministic for a seed.

Images are float32 (N, 3, H, W) in [0, 1]; the demo model takes them as they are.
"""
import numpy as np
from matplotlib.path import Path

SHAPE_CLASSES = ("circle", "square", "triangle", "star", "cross", "ring")
SUPERSAMPLE = 3          # sub-pixels per pixel side, for anti-aliased edges and exact masks


def _polygon(kind):
    """The outline of a polygonal shape, radius about 1, centred on 0."""
    if kind == "square":
        return np.array([[-0.75, -0.75], [0.75, -0.75], [0.75, 0.75], [-0.75, 0.75]])
    if kind == "triangle":
        a = np.pi / 2 + np.arange(3) * 2 * np.pi / 3
        return np.stack([np.cos(a), np.sin(a)], 1)
    if kind == "star":
        a = np.pi / 2 + np.arange(10) * np.pi / 5
        r = np.where(np.arange(10) % 2 == 0, 1.0, 0.42)
        return np.stack([r * np.cos(a), r * np.sin(a)], 1)
    if kind == "cross":
        t, s = 0.3, 0.95
        return np.array([[-t, -s], [t, -s], [t, -t], [s, -t], [s, t], [t, t], [t, s], [-t, s], [-t, t],
                         [-s, t], [-s, -t], [-t, -t]])
    raise ValueError(kind)


def shape_coverage(kind, size, center, radius, angle):
    """Share of each pixel covered by the shape: (size, size) in [0, 1].

    The shape is tested at SUPERSAMPLE^2 points per pixel in its own frame
    (rotated by ``angle``, scaled by ``radius``, centred on ``center`` = (row, col)).
    """
    n = size * SUPERSAMPLE
    coords = (np.arange(n) + 0.5) / SUPERSAMPLE
    rows, cols = np.meshgrid(coords, coords, indexing="ij")
    c, s = np.cos(angle), np.sin(angle)
    dx, dy = (cols - center[1]) / radius, (rows - center[0]) / radius
    u, v = c * dx + s * dy, -s * dx + c * dy
    if kind == "circle":
        inside = u * u + v * v <= 1
    elif kind == "ring":
        r2 = u * u + v * v
        inside = (r2 <= 1) & (r2 >= 0.5 ** 2)
    else:
        inside = Path(_polygon(kind)).contains_points(np.stack([u.ravel(), v.ravel()], 1)).reshape(n, n)
    return inside.reshape(size, SUPERSAMPLE, size, SUPERSAMPLE).mean(axis=(1, 3))


def _background(rng, size, noise=0.04, clutter=(2, 5)):
    """A smooth random colour field plus pixel noise, and strokes and dots of clutter."""
    coarse = rng.uniform(0, 1, (3, 5, 5))
    ramp = np.linspace(0, 4, size)
    i0 = np.minimum(ramp.astype(int), 3)
    f = ramp - i0
    rows = coarse[:, i0] * (1 - f)[None, :, None] + coarse[:, i0 + 1] * f[None, :, None]         # (3, size, 5)
    field = rows[:, :, i0] * (1 - f) + rows[:, :, i0 + 1] * f                                     # (3, size, size)
    img = 0.25 + 0.5 * field + rng.normal(0, noise, (3, size, size))
    yy, xx = np.mgrid[0:size, 0:size] + 0.5
    for _ in range(rng.integers(*clutter)):
        colour = rng.uniform(0, 1, 3)[:, None, None]
        if rng.random() < 0.6:            # a stroke: pixels within w/2 of a segment
            p0, p1 = rng.uniform(0, size, 2), rng.uniform(0, size, 2)
            d = p1 - p0
            t = np.clip(((yy - p0[0]) * d[0] + (xx - p0[1]) * d[1]) / max(d @ d, 1e-9), 0, 1)
            dist = np.hypot(yy - p0[0] - t * d[0], xx - p0[1] - t * d[1])
            cover = np.clip(rng.uniform(0.8, 1.6) - dist, 0, 1)
        else:                             # a dot
            c = rng.uniform(0, size, 2)
            cover = np.clip(rng.uniform(1.5, 3.0) - np.hypot(yy - c[0], xx - c[1]), 0, 1)
        img = img * (1 - cover) + colour * cover
    return img


def _object_colour(rng, background, cover):
    """A random colour that stands out from the background under the object."""
    under = (background * cover).sum(axis=(1, 2)) / max(cover.sum(), 1e-9)
    for _ in range(100):
        colour = rng.uniform(0, 1, 3)
        if np.abs(colour - under).sum() > 0.6:
            return colour
    return 1 - np.round(under)


def _draw(rng, img, kind, size, radius, center):
    cover = shape_coverage(kind, size, center, radius, rng.uniform(0, 2 * np.pi))
    colour = _object_colour(rng, img, cover)
    img = img * (1 - cover) + colour[:, None, None] * cover
    return img, cover >= 0.5


def make_shapes(n, size=64, seed=0, radius_range=None, noise=0.04, clutter=(2, 5)):
    """n images with one object each.

    Returns images float32 (n, 3, size, size) in [0, 1], labels int64 (n,)
    indexing SHAPE_CLASSES (balanced, shuffled), and masks bool (n, size, size):
    the pixels at least half covered by the object. noise: the pixel noise's
    standard deviation; clutter: (min, max + 1) strokes and dots.
    """
    if n < 0 or size < 32:
        raise ValueError(f"make_shapes: need n >= 0 and size >= 32, got n={n}, size={size}")
    rng = np.random.default_rng(seed)
    radius_range = radius_range or (0.18 * size, 0.3 * size)
    labels = rng.permutation(np.arange(n) % len(SHAPE_CLASSES))
    images = np.empty((n, 3, size, size), np.float32)
    masks = np.empty((n, size, size), bool)
    for i, label in enumerate(labels):
        radius = rng.uniform(*radius_range)
        center = rng.uniform(radius, size - radius, 2)           # the whole object inside the image
        img, masks[i] = _draw(rng, _background(rng, size, noise, clutter), SHAPE_CLASSES[label], size, radius,
                              center)
        images[i] = np.clip(img, 0, 1)
    return images, labels.astype(np.int64), masks


def make_composites(n, size=64, seed=0, radius_range=None):
    """n images with two objects of different classes, apart from each other.

    Returns images float32 (n, 3, size, size), labels int64 (n, 2) and masks
    bool (n, 2, size, size), one per object. Objects take the lower part of
    ``make_shapes``' size range so that two fit.
    """
    rng = np.random.default_rng(seed)
    radius_range = radius_range or (0.18 * size, 0.22 * size)
    labels = np.empty((n, 2), np.int64)
    images = np.empty((n, 3, size, size), np.float32)
    masks = np.empty((n, 2, size, size), bool)
    for i in range(n):
        labels[i] = rng.choice(len(SHAPE_CLASSES), 2, replace=False)
        radii = rng.uniform(*radius_range, 2)
        while True:                                   # both centres together, until the objects are apart
            centers = [rng.uniform(r, size - r, 2) for r in radii]
            if np.hypot(*(centers[0] - centers[1])) > radii.sum() + 2:
                break
        img = _background(rng, size)
        for k in (0, 1):
            img, masks[i, k] = _draw(rng, img, SHAPE_CLASSES[labels[i, k]], size, radii[k], centers[k])
        images[i] = np.clip(img, 0, 1)
    return images, labels, masks
