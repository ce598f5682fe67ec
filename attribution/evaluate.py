"""Evaluating attribution maps: can we tell whether an explanation is right?

On the generated shapes the object's mask is known, so a map can be scored:

- localization: pointing game, relevance mass, relevance rank (one image, one mask);
- faithfulness: deletion and insertion curves (does removing what the map
  calls relevant change the prediction?);
- class sensitivity: on two-object images, does the map for class A sit on
  object A rather than on object B?
- model parameter randomization (Adebayo et al. 2018): randomize the layers
  from the logits down; a map that explains the model should change
  (Spearman rank correlation and SSIM with the original map fall);
- input invariance (Kindermans et al. 2017): shift the input by a constant and
  compensate in the first layer's bias so that the model is the same
  function; a reliable map should not change;
- the standard metrics (``attribution.metrics``, equal to Quantus) on the
  same maps: complexity, localisation, faithfulness, axiomatic, robustness
  (``standard_metrics``), drawn as ranks per column (``metrics_figure``).

``attribution evaluate`` runs them all on the shipped model and prints a table.
"""
import copy
import os
from pathlib import Path

import numpy as np

import minicnn as mc
from minicnn.files import atomic_write

from . import methods as am
from .registry import METHODS


PERTURBATION_METHODS = ("occlusion", "lime", "kernel_shap", "shapley_values")
DEFAULT_N = 12          # images per measurement in `attribution evaluate` (under 3 minutes on 2 cores)
SMALL_N = 4             # images for the randomization cascade and the input-shift test
ROBUST_N = 4            # images re-explained on noisy copies for max and avg sensitivity
# LIME and KernelSHAP at the registry's 1000 samples and 50 segments take 2 s per 64x64 image, exact Shapley
# values at 8 segments up to 2^10 forward passes; the table explains 180 images with each, so (to stay within
# 10 minutes on 2 cores) 160 samples over 20 segments (8 samples per unknown) and 6 segments for Shapley.
EVALUATION_SETTINGS = {"lime": {"n_samples": 160, "n_segments": 20}, "kernel_shap": {"n_samples": 160,
                                                                                      "n_segments": 20},
                       "shapley_values": {"n_segments": 6}}


def evaluation_methods(smoothgrad_samples=None, ig_steps=None, perturbation_samples=None):
    """{name: registry Method} for every method in the registry, in its order, with EVALUATION_SETTINGS.

    smoothgrad_samples, ig_steps, perturbation_samples (LIME, KernelSHAP):
    fewer samples or steps than the registry's defaults, an explicit override
    where an experiment repeats a method many times (the randomization
    cascade, the float64 input-shift test) and needs speed."""
    chosen = {name: m.with_settings(**EVALUATION_SETTINGS.get(name, {})) for name, m in METHODS.items()}
    if smoothgrad_samples is not None:
        chosen["smoothgrad"] = chosen["smoothgrad"].with_settings(n_samples=smoothgrad_samples)
    if ig_steps is not None:
        chosen["integrated_gradients"] = chosen["integrated_gradients"].with_settings(steps=ig_steps)
    if perturbation_samples is not None:
        for name in ("lime", "kernel_shap"):
            chosen[name] = chosen[name].with_settings(n_samples=perturbation_samples)
    return chosen


def pixel_explainer(name, method):
    """``f(model, x, y) -> pixel maps (N, H, W)``: ``method`` (registry entry ``name``) through ``to_pixel_map``,
    the explanation function the robustness metrics re-run on noisy copies."""
    return lambda model, x, y: to_pixel_map(name, method(model, x, y), x.shape[2:])


def to_pixel_map(name, a, size):
    """One method's raw output -> (N, H, W): channels summed with their sign for signed methods
    (``METHODS[name].signed``: positive = evidence for the class), as |a| for the others, whose sign
    says nothing about relevance; coarse maps (Grad-CAM) upsampled bilinearly to ``size``."""
    a = np.asarray(a, dtype=np.float64)
    if a.ndim == 4:
        a = a.sum(axis=1) if name in METHODS and METHODS[name].signed else np.abs(a).sum(axis=1)
    if a.shape[1:] != tuple(size):
        a = am.upsample(a, size, "bilinear")
    return a


# --------------------------------------------------------------------------
# Localization metrics: maps (N, H, W), masks (N, H, W) bool
# --------------------------------------------------------------------------

def _check_pair(maps, masks):
    maps, masks = np.asarray(maps, dtype=np.float64), np.asarray(masks, dtype=bool)
    if maps.shape != masks.shape or maps.ndim != 3:
        raise ValueError(f"maps and masks must both be (N, H, W), got {maps.shape} and {masks.shape}")
    return maps, masks


def pointing_game(maps, masks):
    """(N,) bool: is each map's maximum inside its mask? (The first maximum in row-major order on ties.)"""
    maps, masks = _check_pair(maps, masks)
    flat = maps.reshape(len(maps), -1)
    return masks.reshape(len(masks), -1)[np.arange(len(maps)), flat.argmax(axis=1)]


def relevance_mass(maps, masks):
    """(N,): the share of each map's positive total that lies inside the mask (0 for a map with none)."""
    maps, masks = _check_pair(maps, masks)
    pos = np.maximum(maps, 0).reshape(len(maps), -1)
    total = pos.sum(axis=1)
    inside = (pos * masks.reshape(len(masks), -1)).sum(axis=1)
    return np.where(total > 0, inside / np.where(total > 0, total, 1), 0.0)


def relevance_rank(maps, masks):
    """(N,): of the k = |mask| highest pixels of each map, the share inside the mask."""
    maps, masks = _check_pair(maps, masks)
    result = np.zeros(len(maps))
    for n, (m, mask) in enumerate(zip(maps, masks)):
        k = int(mask.sum())
        if k:
            top = np.argsort(-m.ravel(), kind="stable")[:k]
            result[n] = mask.ravel()[top].mean()
    return result


def deletion_insertion(model, x, targets, maps, steps=16, blur=4.0):
    """Faithfulness curves (Petsiuk et al. 2018): (deletion AUC, insertion AUC), each (N,).

    Deletion: black out the map's most relevant pixels first (all channels, in
    ``steps`` equal chunks) and follow the target's softmax probability; a
    faithful map makes it fall fast (low area under the curve). Insertion:
    start from a blurred copy (Gaussian, ``blur`` pixels) and put the most
    relevant pixels back first; a faithful map makes it rise fast (high area).
    Areas are the trapezoid mean over the steps + 1 points, in [0, 1].
    """
    from scipy.ndimage import gaussian_filter

    from minicnn.losses import softmax
    maps = np.asarray(maps, dtype=np.float64)
    N, C, H, W = x.shape
    counts = np.round(np.linspace(0, H * W, steps + 1)).astype(int)
    deletion, insertion = np.zeros(N), np.zeros(N)
    for n in range(N):
        order = np.argsort(-maps[n].ravel(), kind="stable")
        blurred = gaussian_filter(x[n], sigma=(0, blur, blur))
        deleted = np.repeat(x[n:n + 1], steps + 1, axis=0)
        inserted = np.repeat(blurred[None], steps + 1, axis=0)
        for k, count in enumerate(counts):
            rows, cols = np.unravel_index(order[:count], (H, W))
            deleted[k][:, rows, cols] = 0
            inserted[k][:, rows, cols] = x[n][:, rows, cols]
        for curve, batch in ((deletion, deleted), (insertion, inserted)):
            p = softmax(model.forward(batch.astype(x.dtype)))[:, targets[n]]
            curve[n] = (p[:-1] + p[1:]).sum() / (2 * steps)
    return deletion, insertion


# --------------------------------------------------------------------------
# Map similarity for the randomization test
# --------------------------------------------------------------------------

def spearman(a, b):
    """Spearman rank correlation of two maps (flattened); 0 if either is constant."""
    from scipy.stats import spearmanr
    a, b = np.ravel(a), np.ravel(b)
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return 0.0
    return float(spearmanr(a, b)[0])


def ssim(a, b, sigma=1.5):
    """Structural similarity of two (H, W) maps, each first scaled to [0, 1]
    (Wang et al. 2004, Gaussian window, C1 = 0.01^2, C2 = 0.03^2)."""
    from scipy.ndimage import gaussian_filter
    a, b = am.scale_01(np.asarray(a)[None])[0], am.scale_01(np.asarray(b)[None])[0]
    mu_a, mu_b = gaussian_filter(a, sigma), gaussian_filter(b, sigma)
    var_a = gaussian_filter(a * a, sigma) - mu_a ** 2
    var_b = gaussian_filter(b * b, sigma) - mu_b ** 2
    cov = gaussian_filter(a * b, sigma) - mu_a * mu_b
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))
    return float(s.mean())


# --------------------------------------------------------------------------
# The experiments
# --------------------------------------------------------------------------

def localization(model, x, masks, targets, methods, standard=None, log=None):
    """{method: {"pointing game", "relevance mass", "relevance rank", "deletion AUC", "insertion AUC":
    mean over images}}, plus the same for a "random map".

    standard: None, or the superpixels (N, H, W) for IROF: then each method's row also holds the
    ``standard_metrics`` of the same maps (robustness included: the method is run again on noisy copies).
    log: a function that receives one line per method (progress)."""
    results = {}
    rng = np.random.default_rng(0)
    maps_by_method = {}
    for i, (name, f) in enumerate(methods.items()):
        maps_by_method[name] = to_pixel_map(name, f(model, x, targets), x.shape[2:])
        if log:
            log(f"maps: {name} ({i + 1}/{len(methods)})")
    maps_by_method["random map"] = rng.random((len(x),) + x.shape[2:])
    for name, maps in maps_by_method.items():
        deletion, insertion = deletion_insertion(model, x, targets, maps)
        results[name] = {"pointing game": pointing_game(maps, masks).mean(),
                         "relevance mass": relevance_mass(maps, masks).mean(),
                         "relevance rank": relevance_rank(maps, masks).mean(),
                         "deletion AUC": deletion.mean(), "insertion AUC": insertion.mean()}
        if standard is not None:
            f = methods.get(name)
            if f is None:                                        # the random map: fresh noise is its "explanation"
                explain = lambda m, xs, ys: rng.random((len(xs),) + xs.shape[2:])  # noqa: E731
            else:
                if "segments" in getattr(f, "settings", {}):     # superpixels fixed on x: those of the images
                    f = f.with_settings(segments=f.settings["segments"][:ROBUST_N])       # re-explained
                explain = pixel_explainer(name, f)
            results[name].update(standard_metrics(model, x, targets, masks, maps, standard, explain, ROBUST_N))
            if log:
                log(f"standard metrics: {name}")
    return results


def class_sensitivity(model, x, labels, masks, methods):
    """Two-object images x with labels (N, 2) and masks (N, 2, H, W): explain each object's class and
    report, per method, the share of explanations whose positive mass is larger on the explained
    object than on the other one."""
    results = {}
    for name, f in methods.items():
        wins = []
        for k in (0, 1):
            maps = np.maximum(to_pixel_map(name, f(model, x, labels[:, k]), x.shape[2:]), 0)
            on_explained = (maps * masks[:, k]).sum(axis=(1, 2))
            on_other = (maps * masks[:, 1 - k]).sum(axis=(1, 2))
            wins.append(on_explained > on_other)
        results[name] = float(np.concatenate(wins).mean())
    return results


def randomized_copy(model, names, seed=0):
    """A copy of model whose parameter layers ``names`` are re-initialized at random: each array
    uniform in +-1/sqrt(fan_in), fan_in being its size per output unit (for a bias, its length;
    PyTorch would use the weight's fan-in there)."""
    clone = copy.deepcopy(model)
    rng = np.random.default_rng(seed)
    for name in names:
        layer = clone[name]
        for key, value in layer.params.items():
            fan_in = value[0].size if value.ndim > 1 else value.size
            bound = 1 / np.sqrt(fan_in)
            layer.params[key] = rng.uniform(-bound, bound, value.shape).astype(value.dtype)
    return clone


def parameter_randomization(model, x, targets, methods, seed=0):
    """Cascading randomization from the logits down (Adebayo et al. 2018).

    Returns (steps, {method: {"spearman": [...], "ssim": [...]}}) where step i
    has the last i+1 parameter layers randomized; similarities are with the
    trained model's maps (|map| for both, mean over images). The targets stay
    the trained model's.
    """
    layers = [name for name, layer in model.named_layers() if layer.params][::-1]
    originals = {name: to_pixel_map(name, f(model, x, targets), x.shape[2:]) for name, f in methods.items()}
    curves = {name: {"spearman": [], "ssim": []} for name in methods}
    for i in range(len(layers)):
        random_model = randomized_copy(model, layers[:i + 1], seed)
        for name, f in methods.items():
            maps = to_pixel_map(name, f(random_model, x, targets), x.shape[2:])
            curves[name]["spearman"].append(np.mean([spearman(np.abs(a), np.abs(b))
                                                     for a, b in zip(originals[name], maps)]))
            curves[name]["ssim"].append(np.mean([ssim(np.abs(a), np.abs(b)) for a, b in zip(originals[name], maps)]))
    return layers, curves


def shifted_model(model, shift):
    """A model that gives on ``x + shift`` exactly what ``model`` gives on ``x`` (Kindermans et al. 2017).

    The shift passes through the layers before the first convolution (the
    Normalize layer turns it into ``shift / std``) and is compensated in that
    convolution's bias: ``b' = b - sum over (c, i, j) of w * s_c``. Zero
    padding would not be shifted, so the copy pads explicitly with ``s``.
    """
    clone = copy.deepcopy(model)
    leaves = clone.named_layers()
    first_conv = next(i for i, (_, layer) in enumerate(leaves) if isinstance(layer, mc.Conv2d))
    s = np.full(leaves[first_conv][1].in_channels, float(shift))
    for _, layer in leaves[:first_conv]:
        if isinstance(layer, mc.Normalize):
            s = s / layer.std
        elif not isinstance(layer, mc.ReLU) and layer.params:
            raise ValueError("shifted_model: only a Normalize layer may come before the first convolution")
    if np.ptp(s) != 0:
        raise ValueError("shifted_model: the shift must be the same in every channel after normalization")
    name, conv = leaves[first_conv]
    new_conv = copy.deepcopy(conv)
    new_conv.padding = (0, 0)
    w = conv.params["weight"]
    new_conv.params["bias"] = (conv.params.get("bias", 0) - (w * s[None, :, None, None]).sum(axis=(1, 2, 3))
                               ).astype(w.dtype)
    clone.replace(name, mc.Sequential({"pad": mc.ConstantPad2d(conv.padding, s[0]), "conv": new_conv}))
    return clone


def fixed_segments(methods, x):
    """The methods with their superpixels computed once on ``x``, one SLIC per image and segment count.

    It saves time where several methods (and both classes of a two-object
    image) explain the same images, and the input-shift test needs it: it
    moves the image out of [0, 1], where SLIC (which clips) would segment
    differently, and that would measure the segmenter, not the method."""
    from .superpixels import slic
    fixed, cache = dict(methods), {}
    for name, m in methods.items():
        if "n_segments" in m.settings:
            k = m.settings["n_segments"]
            if k not in cache:
                cache[k] = np.stack([slic(image, n_segments=k) for image in x])
            fixed[name] = m.with_settings(segments=cache[k])
    return fixed


def input_invariance(model, x, targets, methods, shift=-1.0):
    """{method: max |map(shifted model, x + shift) - map(model, x)| / max |map(model, x)|}.

    0 (up to rounding) means the method ignores the shift, as the model does.
    Checks first that the two models' logits agree.
    """
    model = copy.deepcopy(model).to(np.float64)
    x = x.astype(np.float64)
    other = shifted_model(model, shift)
    logits, shifted_logits = model.forward(x), other.forward(x + shift)
    if mc.rel_error(logits, shifted_logits) > 1e-10:
        raise RuntimeError("the shift-compensated model does not reproduce the logits "
                           f"(relative error {mc.rel_error(logits, shifted_logits):.1e})")
    result = {}
    for name, f in methods.items():
        a, b = f(model, x, targets), f(other, x + shift, targets)
        result[name] = float(np.abs(a - b).max() / max(np.abs(a).max(), 1e-300))
    return result


# --------------------------------------------------------------------------
# The standard metrics (attribution.metrics, equal to Quantus) on the same maps
# --------------------------------------------------------------------------

# (column, group, higher is better?) in the table's order. Settings where the table departs from Quantus's
# defaults (for time: 64x64 images have 12,288 features) are in ``standard_metrics``.
STANDARD_METRICS = [
    ("sparseness", "complexity", None), ("complexity", "complexity", None),
    ("pointing game (Q)", "localisation", True), ("attribution localisation", "localisation", True),
    ("top-k intersection", "localisation", True), ("relevance rank accuracy", "localisation", True),
    ("relevance mass accuracy", "localisation", True), ("ROC AUC", "localisation", True),
    ("pixel flipping AUC", "faithfulness", False), ("region perturbation AOPC", "faithfulness", True),
    ("selectivity AUC", "faithfulness", False), ("faithfulness estimate", "faithfulness", True),
    ("monotonicity correlation", "faithfulness", True), ("IROF", "faithfulness", True),
    ("sufficiency", "faithfulness", True),
    ("completeness", "axiomatic", True),
    ("max sensitivity", "robustness", False), ("avg sensitivity", "robustness", False),
]


def standard_metrics(model, x, y, masks, maps, segments, explain=None, robust_images=4, robust_samples=2,
                     seed=0):
    """{column: mean over the images} of ``attribution.metrics`` on one method's pixel maps (N, H, W).

    masks: (N, H, W) object masks; segments: (N, H, W) superpixels for IROF; explain: ``f(model, x, y) ->
    pixel maps`` for the robustness metrics (None: left out), run on the first ``robust_images`` images with
    ``robust_samples`` noise draws (uniform, +-0.02: a small perturbation on images in [0, 1]).
    Quantus's defaults except, for time: pixel flipping, faithfulness estimate and monotonicity in steps of
    H*W/4 features (12 steps for RGB), region perturbation and selectivity with patches of a quarter of the
    side (16 patches), the areas divided by their number of steps (so in [0, 1]), monotonicity
    with the black baseline and one repetition (deterministic), top-k with k = 5% of the pixels, completeness
    with a relative tolerance of 1e-3 on the raw map (Quantus tests exact equality on the normalised one) and
    a black image of zeros, the methods' own baseline (Quantus's "black" is the image's minimum)."""
    from . import metrics as M
    a = maps[:, None]
    s = masks[:, None].astype(np.float64)
    H, W = x.shape[2:]
    step = H * W // 4 if (H * W) % 4 == 0 else H * W                 # 4 * C steps: a divisor of H*W (Quantus)
    out = {}
    if np.all(maps == maps.reshape(len(maps), -1)[:, :1, None]):
        return {column: np.nan for column, _, _ in STANDARD_METRICS}      # constant maps: nothing to rank
    out["sparseness"] = M.sparseness(a).mean()
    out["complexity"] = M.complexity(a).mean()
    out["pointing game (Q)"] = M.pointing_game(a, s).mean()
    out["attribution localisation"] = np.nanmean(M.attribution_localisation(a, s))
    out["top-k intersection"] = M.top_k_intersection(a, s, k=max(1, H * W // 20)).mean()
    out["relevance rank accuracy"] = M.relevance_rank_accuracy(a, s).mean()
    out["relevance mass accuracy"] = M.relevance_mass_accuracy(a, s).mean()
    out["ROC AUC"] = M.auc(a, s).mean()
    out["pixel flipping AUC"] = _area(M.pixel_flipping(model, x, y, a, features_in_step=step))
    patch = max(1, min(H, W) // 4)
    out["region perturbation AOPC"] = M.region_perturbation(model, x, y, a, patch_size=patch).mean()
    out["selectivity AUC"] = _area(M.selectivity(model, x, y, a, patch_size=patch))
    out["faithfulness estimate"] = np.nanmean(M.faithfulness_estimate(model, x, y, a, features_in_step=step))
    out["monotonicity correlation"] = np.nanmean(M.monotonicity_correlation(
        model, x, y, a, nr_samples=1, features_in_step=step, perturb_baseline="black"))
    out["IROF"] = (M.irof(model, x, y, a, segments=segments) / (segments.reshape(len(x), -1).max(axis=1) + 1)).mean()
    out["sufficiency"] = M.sufficiency(model, x, y, a).mean()
    out["completeness"] = M.completeness(model, x, y, a, perturb_baseline=0.0, normalise=False, rtol=1e-3).mean()
    if explain is not None:
        r = slice(0, min(robust_images, len(x)))
        noise = np.random.default_rng(seed).uniform(-0.02, 0.02, (robust_samples,) + x[r].shape)
        def pixel_explain(m, xs, ys):
            return explain(m, xs, ys)[:, None]
        out["max sensitivity"] = np.nanmean(M.max_sensitivity(model, x[r], y[r], a[r], pixel_explain, noise=noise))
        out["avg sensitivity"] = np.nanmean(M.avg_sensitivity(model, x[r], y[r], a[r], pixel_explain, noise=noise))
    return {column: float(out.get(column, np.nan)) for column, _, _ in STANDARD_METRICS}


def _area(curves):
    """The mean over images of the area under each curve (N, T), trapezoids on [0, 1]: in [0, 1]."""
    return float((np.trapezoid(curves, dx=1, axis=1) / max(curves.shape[1] - 1, 1)).mean())


def metric_ranks(table):
    """{method: {column: rank}} from ``{method: {column: value}}``: 1 the best of each column where the
    column has a direction (STANDARD_METRICS' third field), NaN where it has none or the value is NaN."""
    directions = {column: better for column, _, better in STANDARD_METRICS}
    names = list(table)
    ranks = {name: {} for name in names}
    for column, better in directions.items():
        values = np.array([table[name].get(column, np.nan) for name in names], dtype=np.float64)
        for name in names:
            ranks[name][column] = np.nan
        if better is None:
            continue
        ok = ~np.isnan(values)
        from scipy.stats import rankdata
        r = rankdata(-values[ok] if better else values[ok], method="average")     # ties share their mean rank
        for name, rank in zip(np.array(names)[ok], r):
            ranks[name][column] = float(rank)
    return ranks


def metrics_figure(table):
    """A heatmap of methods x standard metrics, coloured by rank per column (1 = best, yellow), each cell
    annotated with its value; columns without a direction (complexity) are grey. Returns the Figure."""
    import matplotlib.pyplot as plt
    ranks = metric_ranks(table)
    names = list(table)
    columns = [c for c, _, _ in STANDARD_METRICS]
    R = np.array([[ranks[n][c] for c in columns] for n in names])
    fig, ax = plt.subplots(figsize=(1.0 * len(columns) + 3, 0.32 * len(names) + 2.5))
    shown = np.ma.masked_invalid(R)
    cmap = plt.get_cmap("viridis_r").copy()
    cmap.set_bad("#dddddd")
    image = ax.imshow(shown, cmap=cmap, aspect="auto", vmin=1, vmax=max(len(names), 2))
    for i, n in enumerate(names):
        for j, c in enumerate(columns):
            v = table[n].get(c, np.nan)
            if not np.isnan(v):
                ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=6,
                        color="white" if not np.isnan(R[i, j]) and R[i, j] > len(names) / 2 else "black")
    ax.set_xticks(range(len(columns)))
    ax.set_xticklabels([f"{c} ({g})" for c, g, _ in STANDARD_METRICS], rotation=40, ha="right", fontsize=7)
    ax.set_yticks(range(len(names)))
    ax.set_yticklabels(names, fontsize=7)
    ax.set_title("standard metrics (attribution.metrics = Quantus), coloured by rank in each column: 1 = best "
                 "(yellow); ties share their mean rank; grey: no better direction, or no value", fontsize=9)
    fig.colorbar(image, ax=ax, fraction=0.02, pad=0.01, label="rank")
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------
# The command: attribution evaluate
# --------------------------------------------------------------------------

EVALUATION_MODELS = ("shapes", "shapes_resnet")


def run_experiments(n=DEFAULT_N, seed=0, log=print, model_name="shapes"):
    """Every experiment on a shipped shapes model -> a results dict (see ``results_table``).

    Localization, faithfulness and the standard metrics on ``n`` generated images, class sensitivity on
    ``n`` two-object images, the randomization cascade and the input-shift test on ``min(n, 4)`` images;
    every method of the registry. model_name: "shapes" (the VGG-style net) or "shapes_resnet".
    """
    import time

    from minicnn import models
    from minicnn.data import make_composites, make_shapes
    if not isinstance(n, (int, np.integer)) or n < 2:
        raise ValueError(f"n must be a number of images, at least 2 (some metrics compare images), got {n!r}")
    if model_name not in EVALUATION_MODELS:
        raise ValueError(f"model must be one of {', '.join(EVALUATION_MODELS)} (shapes models: the object masks "
                         f"are known), got {model_name!r}")
    start = time.perf_counter()
    progress = log

    def log(message):
        progress(f"[{time.perf_counter() - start:4.0f} s] {message}")
    model = getattr(models, "shapes_net" if model_name == "shapes" else "shapes_resnet")(pretrained=True)
    methods = evaluation_methods()
    x, labels, masks = make_shapes(n, seed=seed + 500)
    log(f"localization, faithfulness and the standard metrics on {n} images")
    from .superpixels import slic
    segments = np.stack([slic(image, n_segments=20) for image in x])          # IROF's superpixels
    loc = localization(model, x, masks, labels, fixed_segments(methods, x), standard=segments, log=log)
    cx, clabels, cmasks = make_composites(n, seed=seed + 600)
    log(f"class sensitivity on {n} two-object images")
    sens = class_sensitivity(model, cx, clabels, cmasks, fixed_segments(methods, cx))
    small = min(n, SMALL_N)
    # the cascade recomputes every map once per layer: fewer SmoothGrad samples and IG steps, and the
    # perturbation methods (hundreds of forward passes per map) left out
    fast = {k: v for k, v in evaluation_methods(smoothgrad_samples=16, ig_steps=16).items()
            if k not in PERTURBATION_METHODS}
    log(f"parameter randomization on {small} images")
    steps, curves = parameter_randomization(model, x[:small], labels[:small], fast, seed=seed)
    log(f"input invariance on {small} images")
    quick = evaluation_methods(smoothgrad_samples=8, perturbation_samples=100)
    inv = input_invariance(model, x[:small], labels[:small], fixed_segments(quick, x[:small]))
    standard_columns = [c for c, _, _ in STANDARD_METRICS]
    standard = {name: {c: row.pop(c) for c in standard_columns} for name, row in loc.items()}
    return {"localization": loc, "class_sensitivity": sens, "randomization": (steps, curves), "invariance": inv,
            "standard": standard, "n": n, "small": small, "seed": seed, "model": model_name,
            "seconds": time.perf_counter() - start}


def results_table(results):
    """The results of ``run_experiments`` as a Markdown table and a note saying what was measured."""
    loc, sens, inv = results["localization"], results["class_sensitivity"], results["invariance"]
    curves = results["randomization"][1]
    header = ("| method | pointing game | relevance mass | relevance rank | deletion AUC (lower is better) | "
              "insertion AUC (higher is better) | class sensitivity | Spearman, all layers randomized | "
              "SSIM, all layers randomized | change under input shift |")
    lines = [header, "|" + "---|" * 10]
    for name in loc:
        row = loc[name]
        cells = [f"{row[k]:.2f}" for k in ("pointing game", "relevance mass", "relevance rank", "deletion AUC",
                                           "insertion AUC")]
        cells.append(f"{sens[name]:.2f}" if name in sens else "")
        if name in curves:
            cells += [f"{curves[name]['spearman'][-1]:.2f}", f"{curves[name]['ssim'][-1]:.2f}"]
        else:
            cells += ["", ""]
        cells.append(("invariant" if inv[name] < 1e-6 else f"{inv[name]:.2g}") if name in inv else "")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    note = (f"{results.get('model', 'shapes')} model; localization on {results['n']} images, class sensitivity on "
            f"{results['n']} two-object images (both classes explained), randomization and input shift on "
            f"{results['small']} images; seed {results['seed']}.")
    return "\n".join(lines), note


def standard_table(results):
    """The standard metrics of ``run_experiments`` (``results["standard"]``) as a Markdown table: one row per
    method, one column per metric, its group and direction in the header."""
    arrow = {True: " (higher is better)", False: " (lower is better)", None: ""}
    header = "| method | " + " | ".join(f"{c}: {g}{arrow[b]}" for c, g, b in STANDARD_METRICS) + " |"
    lines = [header, "|" + "---|" * (len(STANDARD_METRICS) + 1)]
    for name, row in results["standard"].items():
        cells = ["" if np.isnan(row[c]) else f"{row[c]:.2f}" for c, _, _ in STANDARD_METRICS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def results_json(results):
    """The results as plain JSON-ready values (floats, lists, dicts), for notebooks: ``--json FILE``."""
    def plain(v):
        if isinstance(v, dict):
            return {str(k): plain(w) for k, w in v.items()}
        if isinstance(v, (list, tuple)):
            return [plain(w) for w in v]
        if isinstance(v, (np.floating, float)):
            return None if np.isnan(v) else float(v)
        if isinstance(v, (np.integer, int)):
            return int(v)
        if isinstance(v, np.ndarray):
            return plain(v.tolist())
        return v
    steps, curves = results["randomization"]
    out = dict(results)
    out["randomization"] = {"layers": list(steps), "curves": curves}
    out["ranks"] = metric_ranks(results["standard"])
    return plain(out)


def randomization_figure(results):
    """The randomization cascade: Spearman and SSIM with the trained model's map, per method. Returns the Figure."""
    import matplotlib.pyplot as plt
    steps, curves = results["randomization"]
    fig, axes = plt.subplots(1, 2, figsize=(15, 5))
    colours = plt.get_cmap("tab20").colors                # more methods than the default 10-colour cycle
    for i, (name, c) in enumerate(curves.items()):
        style = dict(marker="osD^v"[i // 10 % 5], markersize=4, label=name, color=colours[(2 * i) % 20 + (2 * i) // 20 % 2],
                     linestyle="-" if i % 2 == 0 else "--")
        axes[0].plot(range(1, len(steps) + 1), c["spearman"], **style)
        axes[1].plot(range(1, len(steps) + 1), c["ssim"], **style)
    for ax, title in zip(axes, ["Spearman rank correlation with the trained model's map", "SSIM"]):
        ax.set_xticks(range(1, len(steps) + 1))
        ax.set_xticklabels(steps, rotation=45, ha="right", fontsize=8)
        ax.set_xlabel("randomized down to layer (cascading from the logits)")
        ax.set_title(title, fontsize=10)
        ax.axhline(0, color="gray", lw=0.5)
    fig.tight_layout(rect=(0, 0, 0.83, 1))
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="center left", bbox_to_anchor=(0.83, 0.5), fontsize=8, frameon=False)
    return fig


def _to_stderr(message):
    import sys
    print(message, file=sys.stderr, flush=True)


def run_evaluation(n=DEFAULT_N, out_dir="evaluation", seed=0, log=print, progress=_to_stderr, model_name="shapes",
                   json_path=None):
    """``attribution evaluate``: run the experiments, write evaluation.md, randomization.png and metrics.png
    (the standard metrics' ranks) to ``out_dir``, and the results as JSON to ``json_path`` if given; print the
    tables with ``log``; progress lines (with the elapsed time) go to ``progress``, stderr by default, so that
    the tables can be piped. Returns the results."""
    import json

    from .visualize import save_figure
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"the output {out_dir} exists and is not a folder")
    out_dir.mkdir(parents=True, exist_ok=True)
    if not os.access(out_dir, os.W_OK):
        raise ValueError(f"the output folder {out_dir} is not writable")
    results = run_experiments(n, seed, progress, model_name)
    table, note = results_table(results)
    standard = standard_table(results)
    save_figure(randomization_figure(results), out_dir / "randomization.png")
    save_figure(metrics_figure(results["standard"]), out_dir / "metrics.png")
    md = out_dir / "evaluation.md"
    with atomic_write(md, "w") as f:
        f.write(table + "\n\n" + note + "\n\n## The standard metrics (equal to Quantus)\n\n" + standard + "\n")
    if json_path is not None:
        with atomic_write(Path(json_path), "w") as f:
            json.dump(results_json(results), f, indent=1)
    log(table)
    log("\n" + note)
    log("\nThe standard metrics (attribution.metrics, equal to Quantus):\n")
    log(standard)
    log(f"\n{results['seconds']:.0f} s. written: {md.resolve()}, {(out_dir / 'randomization.png').resolve()}, "
        f"{(out_dir / 'metrics.png').resolve()}" + (f" and {Path(json_path).resolve()}" if json_path else ""))
    return results
