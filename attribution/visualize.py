"""From raw attribution arrays to pictures (matplotlib).

The methods return raw maps; every reduction for display lives here:

- ``max_abs``: max over channels of |a| (Simonyan et al. 2013, CS231n);
- ``sum_abs_clipped``: sum over channels of |a|, clipped at a percentile and
  scaled to [0, 1] (the SmoothGrad paper, PAIR's saliency library);
- ``signed``: sum over channels, for a diverging colormap centred on zero;
- ``overlay``: a coarse map (Grad-CAM) upsampled and laid over the image;
- ``show_segments``: superpixel boundaries (LIME, SHAP) drawn over a map or an image.
"""
from pathlib import Path

import numpy as np

from .methods import scale_01, upsample


def max_abs(a):
    """(N, C, H, W) -> (N, H, W): max over channels of |a|."""
    return np.abs(a).max(axis=1)


def sum_abs_clipped(a, percentile=99):
    """(N, C, H, W) -> (N, H, W) in [0, 1]: sum over channels of |a|, clipped at the percentile of each map."""
    m = np.abs(a).sum(axis=1)
    top = np.percentile(m.reshape(len(m), -1), percentile, axis=1)[:, None, None]
    return np.clip(m / np.where(top > 0, top, 1), 0, 1)


def signed(a):
    """(N, C, H, W) -> (N, H, W): sum over channels, sign kept."""
    return a.sum(axis=1)


def to_display(a, kind="abs"):
    """A map for showing: (N, C, H, W) attributions -> (N, H, W), by ``signed`` for a signed map
    (kind "signed"), else by ``max_abs``; (N, H, W) maps are kept."""
    if a.ndim != 4:
        return a
    return signed(a) if kind == "signed" else max_abs(a)


def show_image(ax, image):
    """image: (3, H, W) or (H, W, 3) in [0, 1]."""
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[0] in (1, 3):
        image = image.transpose(1, 2, 0)
    ax.imshow(np.clip(image, 0, 1))
    ax.set_xticks([])
    ax.set_yticks([])


def show_map(ax, m, kind="abs", image=None, alpha=0.5, segments=None):
    """Draw one (H, W) map. kind: "abs" (grey, 0 = black, white from the 99th percentile up),
    "signed" (diverging, white at 0, symmetric limits: red for, blue against the class),
    or "overlay" (a jet heat map at ``alpha`` over ``image``). segments: (H, W) labels whose
    boundaries are drawn on top."""
    m = np.asarray(m, dtype=np.float64)
    if kind == "signed":
        limit = np.abs(m).max() or 1.0
        ax.imshow(m, cmap="bwr", vmin=-limit, vmax=limit)
    elif kind == "overlay":
        show_image(ax, image)
        ax.imshow(scale_01(m[None])[0], cmap="jet", alpha=alpha, vmin=0, vmax=1)
    elif kind == "abs":                 # clipped at the 99th percentile, so a few pixels do not set the scale
        top = np.percentile(m, 99)
        ax.imshow(np.clip(m / top, 0, 1) if top > 0 else m, cmap="gray", vmin=0, vmax=1)
    else:
        raise ValueError(f"unknown map kind {kind!r}; use 'abs', 'signed' or 'overlay'")
    if segments is not None:
        show_segments(ax, segments)
    ax.set_xticks([])
    ax.set_yticks([])


def segment_boundaries(labels):
    """(H, W) labels -> (H, W) bool, True on the pixels where the label changes to the right or below."""
    labels = np.asarray(labels)
    edge = np.zeros(labels.shape, dtype=bool)
    edge[:-1] |= labels[:-1] != labels[1:]
    edge[:, :-1] |= labels[:, :-1] != labels[:, 1:]
    return edge


def show_segments(ax, labels, color=(0.0, 0.0, 0.0), alpha=0.7):
    """Draw the boundaries of the segments ``labels`` (H, W) over whatever ``ax`` shows."""
    rgba = np.zeros(np.shape(labels) + (4,))
    rgba[segment_boundaries(labels)] = (*color, alpha)
    ax.imshow(rgba)


def comparison_figure(images, maps, row_labels=None, titles=None, kinds=None, cell=2.2, note=None):
    """The textbook's grid: one row per image, the image then one column per method.

    images: (N, 3, H, W) in [0, 1] (for display).
    maps: {method title: array}, each (N, C, H, W) or (N, H, W) or (N, h, w)
        (coarse maps are upsampled bilinearly and overlaid on the image).
    row_labels: a text per row (class and probability), shown under each image.
    kinds: {method title: "abs" | "signed" | "overlay"}; default "overlay" for
        coarse maps, "abs" for the rest. Signed maps are summed over channels
        and drawn with a diverging colormap centred on zero, symmetric limits.
    note: a line of text under the grid (how to read the maps).
    Returns the matplotlib Figure.
    """
    import matplotlib.pyplot as plt
    images = np.asarray(images)
    N, _, H, W = images.shape
    names = list(maps)
    kinds = dict(kinds or {})
    fig, axes = plt.subplots(N, len(names) + 1, figsize=(cell * (len(names) + 1), cell * N + 0.4),
                             squeeze=False)
    for n in range(N):
        show_image(axes[n, 0], images[n])
        if row_labels is not None:
            axes[n, 0].set_xlabel(row_labels[n], fontsize=9)
        for j, name in enumerate(names):
            a = np.asarray(maps[name])
            coarse = a.shape[-2:] != (H, W)
            kind = kinds.get(name, "overlay" if coarse else "abs")
            m = to_display(a, kind)[n]
            if coarse:
                m = upsample(m[None], (H, W), "bilinear")[0]
            show_map(axes[n, j + 1], m, kind, image=images[n])
            if n == 0:
                axes[n, j + 1].set_title((titles or {}).get(name, name), fontsize=10)
    axes[0, 0].set_title("image", fontsize=10)
    if note:
        import textwrap
        wrapped = "\n".join(textwrap.wrap(note, width=int(28 * (len(names) + 1))))
        fig.text(0.01, 0.005, wrapped, fontsize=8, va="bottom", ha="left")
        fig.tight_layout(rect=(0, 0.012 * (wrapped.count("\n") + 2) * 6 / N, 1, 1))
    else:
        fig.tight_layout()
    return fig


def save_figure(fig, path, dpi=100):
    """Save atomically (a temporary file, then a rename) and close the figure. Returns the path."""
    import matplotlib.pyplot as plt

    from minicnn.files import atomic_write
    path = Path(path)
    try:
        with atomic_write(path) as f:
            fig.savefig(f, dpi=dpi, format=(path.suffix or ".png").lstrip("."))
    finally:
        plt.close(fig)
    return path
