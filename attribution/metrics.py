"""The standard metrics of explanation quality, as Quantus 0.6.0 computes them, in NumPy.

Each function gives the number Quantus gives for the same inputs and settings, with Quantus's defaults
(``../shared/QUANTUS.md`` in the project's notes gives the source lines). Where Quantus departs from the
paper that defined a metric, the docstring says so, and ``paper=True`` gives the paper's version.

Conventions (the names and arguments are Quantus's):

- ``a``: the maps, (N, C, H, W), (N, 1, H, W) or (N, H, W); ``s``: the object masks, (N, 1, H, W) or (N, H, W),
  in {0, 1}; ``x``: the images (N, C, H, W); ``y``: the classes (N,).
- ``model``: a minicnn model or any callable from images to logits.
- Before a metric sees ``a``: if ``normalise``, ``a / max|a|`` with the maximum over the **whole batch**
  (Quantus's ``normalise_by_max``; so one image's score depends on the others'), then, if ``abs``, ``|a|``.
  The defaults of both are each metric's Quantus default.
- One score per image, a curve where Quantus returns curves, and one number per batch for ``sensitivity_n``
  (as Quantus). Rankings use ``np.argsort`` exactly as Quantus calls it, so ties break the same way.
- "black" is the image's **minimum** (over all channels and pixels), not 0, as Quantus.
- ``softmax``: whether a "prediction" is the target's probability (True) or its logit (False); each metric's
  default is Quantus's.

Groups: complexity (``sparseness``, ``complexity``, ``effective_complexity``); localisation
(``pointing_game``, ``attribution_localisation``, ``top_k_intersection``, ``relevance_rank_accuracy``,
``relevance_mass_accuracy``, ``auc``); faithfulness (``pixel_flipping``, ``region_perturbation``,
``selectivity``, ``faithfulness_estimate``, ``monotonicity_correlation``, ``sensitivity_n``, ``irof``,
``sufficiency``); axiomatic (``completeness``, ``non_sensitivity``); robustness (``max_sensitivity``,
``avg_sensitivity``).
"""
import math

import numpy as np

from minicnn.losses import softmax as _softmax

GROUPS = {
    "complexity": ("sparseness", "complexity", "effective_complexity"),
    "localisation": ("pointing_game", "attribution_localisation", "top_k_intersection", "relevance_rank_accuracy",
                     "relevance_mass_accuracy", "auc"),
    "faithfulness": ("pixel_flipping", "region_perturbation", "selectivity", "faithfulness_estimate",
                     "monotonicity_correlation", "sensitivity_n", "irof", "sufficiency"),
    "axiomatic": ("completeness", "non_sensitivity"),
    "robustness": ("max_sensitivity", "avg_sensitivity"),
}


# --------------------------------------------------------------------------
# Checking and preparing the inputs
# --------------------------------------------------------------------------

def _as_maps(a, name="a"):
    a = np.asarray(a)
    if a.dtype.kind not in "fiub":
        raise TypeError(f"{name} must be an array of numbers, got dtype {a.dtype}")
    a = a.astype(np.float64)
    if a.ndim == 3:
        a = a[:, None]
    if a.ndim != 4 or a.shape[0] == 0:
        raise ValueError(f"{name} must be maps (N, C, H, W), (N, 1, H, W) or (N, H, W), got shape {a.shape}")
    if not np.isfinite(a).all():
        raise ValueError(f"{name} contains NaN or infinity; a metric of such a map means nothing")
    return a


def prepare(a, normalise=True, abs=False):
    """The maps as a metric sees them: ``a / max|a|`` over the whole batch if ``normalise`` (nothing if all are
    0), then ``|a|`` if ``abs``. Refuses what Quantus refuses: maps that are all 0, all 1, constant or all
    negative (every ranking is then arbitrary)."""
    a = _as_maps(a)
    if np.all(a == 0):
        raise ValueError("the maps are all 0: every ranking of their features would be arbitrary")
    if np.all(a == 1) or a.min() == a.max():
        raise ValueError("the maps are constant: every ranking of their features would be arbitrary")
    if np.all(a < 0):
        raise ValueError("the maps are all negative; Quantus refuses them (pass -a, or abs=True)")
    if normalise:
        a = a / np.abs(a).max()
    return np.abs(a) if abs else a


def _masks(s, a):
    s = np.asarray(s)
    if s.ndim == 3:
        s = s[:, None]
    if s.ndim != 4 or s.shape[1] != 1 or s.shape[0] != a.shape[0] or s.shape[2:] != a.shape[2:]:
        raise ValueError(f"s must be object masks (N, 1, H, W) or (N, H, W) matching the maps {a.shape}, got "
                         f"shape {s.shape}")
    if not np.isin(s, (0, 1)).all():
        raise ValueError("s must hold 0 and 1 (or False and True) only")
    if a.shape[1] != 1:
        raise ValueError(f"localisation compares each pixel of the map with the mask: the maps need one channel, "
                         f"got {a.shape[1]} (sum or take the largest value over the channels first)")
    return s.astype(bool).reshape(len(s), -1)


def _images(x, y, a=None):
    x = np.asarray(x)
    if x.ndim != 4 or x.dtype.kind != "f":
        raise ValueError(f"x must be float images (N, C, H, W), got shape {x.shape} and dtype {x.dtype}")
    if not np.isfinite(x).all():
        raise ValueError("x contains NaN or infinity")
    y = np.asarray(y)
    if y.shape != (len(x),) or y.dtype.kind not in "iu":
        raise ValueError(f"y must be {len(x)} class indices, one per image, got {y!r}")
    if a is not None and (a.shape[0] != x.shape[0] or a.shape[2:] != x.shape[2:] or a.shape[1] not in (1, x.shape[1])):
        raise ValueError(f"the maps {a.shape} do not fit the images {x.shape}: (N, 1, H, W) or (N, C, H, W) needed")
    return x, y


def _predict(model, x, softmax):
    """The model's logits (or probabilities, with ``softmax``) for x, (N, K) float64."""
    logits = model.forward(x) if hasattr(model, "forward") else model(x)
    logits = np.asarray(logits, dtype=np.float64)
    if logits.ndim != 2 or len(logits) != len(x):
        raise ValueError(f"the model must map {len(x)} images to logits (N, K), gave shape {logits.shape}")
    return _softmax(logits) if softmax else logits


def _score(model, x, y, softmax):
    return _predict(model, x, softmax)[np.arange(len(x)), y]


def _baseline(flat, kind):
    """Quantus's per-image fill value on the flattened current images (N, F): "black" their minimum, "white"
    their maximum, "mean" their mean, or a number. ("uniform" is drawn by the caller.)"""
    if isinstance(kind, (int, float, np.integer, np.floating)) and not isinstance(kind, bool):
        return np.full((len(flat), 1), float(kind))
    table = {"black": flat.min, "white": flat.max, "mean": flat.mean}
    if kind not in table:
        raise ValueError(f"perturb_baseline must be 'black' (the image's minimum), 'white' (its maximum), 'mean' "
                         f"or a number, got {kind!r}")
    return table[kind](axis=1)[:, None]


def _features(a, x):
    """The maps broadcast to the images' shape and flattened channel-major: (N, C*H*W) (Quantus's features)."""
    return np.broadcast_to(a, x.shape).reshape(len(x), -1)


def _check_step(features_in_step, x):
    if not isinstance(features_in_step, (int, np.integer)) or features_in_step < 1:
        raise ValueError(f"features_in_step must be a whole number >= 1, got {features_in_step!r}")
    if (x.shape[2] * x.shape[3]) % features_in_step:
        raise ValueError(f"features_in_step ({features_in_step}) must divide H*W = {x.shape[2] * x.shape[3]} "
                         f"(Quantus asserts it)")


# --------------------------------------------------------------------------
# Complexity: how concentrated a map is (model-free)
# --------------------------------------------------------------------------

def sparseness(a, normalise=True, abs=True):
    """The Gini index of each map (Chalasani et al. 2020): ``sum_i (2i - n - 1) v_i / (n sum v)``, v the n
    values sorted ascending, each + 1e-7 (after normalising, as Quantus). 1: one feature holds everything."""
    A = prepare(a, normalise, abs).reshape(len(np.asarray(a)), -1) + 1e-7
    v = np.sort(A, axis=1)
    n = v.shape[1]
    i = np.arange(1, n + 1)
    return ((2 * i - n - 1) * v).sum(axis=1) / (n * v.sum(axis=1))


def complexity(a, normalise=True, abs=True):
    """The entropy of each map's share of the total (Bhatt et al. 2020): ``-sum p log(p + 1e-12)``,
    ``p = |A| / sum |A|`` (natural log). Low: few features carry the map."""
    A = prepare(a, normalise, abs).reshape(len(np.asarray(a)), -1)
    p = A / np.abs(A).sum(axis=1, keepdims=True)
    return -(p * np.log(p + 1e-12)).sum(axis=1)


def effective_complexity(a, eps=1e-5, normalise=True, abs=True):
    """How many features of each map exceed ``eps`` (Nguyen & Martinez 2020), an integer per image."""
    A = prepare(a, normalise, abs).reshape(len(np.asarray(a)), -1)
    return (A > eps).sum(axis=1)


# --------------------------------------------------------------------------
# Localisation: does the map lie on the object? (model-free; a and s)
# --------------------------------------------------------------------------

def pointing_game(a, s, normalise=True, abs=False, paper=False):
    """Whether each map's maximum lies on the object (Zhang et al. 2018): True if any pixel where the map
    reaches its maximum (ties all count) is in the mask. Booleans (N,).

    Quantus's bug, followed by default: an empty mask gives True (it writes NaN into a boolean array).
    ``paper=True`` returns floats with NaN for an empty mask (the game is not defined there)."""
    A = prepare(a, normalise, abs)
    S = _masks(s, A)
    A = A.reshape(len(A), -1)
    hit = np.any(S & (A == A.max(axis=1, keepdims=True)), axis=1)
    empty = S.sum(axis=1) == 0
    if paper:
        return np.where(empty, np.nan, hit.astype(np.float64))
    return hit | empty


def attribution_localisation(a, s, weighted=False, max_size=1.0, positive_attributions=False, normalise=True,
                             abs=True, x=None, paper=False):
    """The share of each map's total inside the object (Kohlbrenner et al. 2020): ``sum(A s) / (sum A + 1e-9)``;
    NaN for an empty mask or a share above 1 (negative values outside). ``positive_attributions``: clip A at
    0 first. ``weighted``: times the object's size ratio. ``max_size`` only warns in Quantus: accepted, unused.

    Quantus's bug with ``weighted=True``: the ratio is ``|s| / x[2:].size`` = |s| / ((N - 2) C H W), which
    needs ``x=`` (the images); ``paper=True`` uses |s| / (H W), the object's share of the image."""
    A = prepare(a, normalise, abs)
    S = _masks(s, A)
    A = A.reshape(len(A), -1)
    if positive_attributions:
        A = np.clip(A, 0, None)
    inside = (A * S).sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = inside / (A.sum(axis=1) + 1e-9)
    r[S.sum(axis=1) == 0] = np.nan
    r[r > 1] = np.nan
    if weighted:
        if paper:
            size = S.shape[1]
        elif x is None:
            raise ValueError("weighted=True follows Quantus, which divides by x[2:].size: pass x= (the images), or "
                             "paper=True for the object's share of the image")
        else:
            size = np.asarray(x)[2:].size
        with np.errstate(divide="ignore", invalid="ignore"):
            r = r * (S.sum(axis=1) / size)
    return r


def top_k_intersection(a, s, k=1000, concept_influence=False, normalise=True, abs=False):
    """The share of each map's k highest features that lie on the object (Theiner et al. 2021); with
    ``concept_influence``, divided by the object's share of the image. NaN for an empty mask. Quantus asserts
    k < H*W; so does this (the default k=1000 needs images of more than 1000 pixels)."""
    A = prepare(a, normalise, abs)
    S = _masks(s, A)
    if not (isinstance(k, (int, np.integer)) and 1 <= k < S.shape[1]):
        raise ValueError(f"k must be a whole number from 1 to below the image's {S.shape[1]} pixels, got {k!r}")
    top = np.argsort(-A.reshape(len(A), -1), axis=1)[:, :k]
    score = np.take_along_axis(S, top, axis=1).sum(axis=1) / k
    with np.errstate(divide="ignore", invalid="ignore"):
        if concept_influence:
            score = score * S.shape[1] / S.sum(axis=1)
    return np.where(S.sum(axis=1) == 0, np.nan, score)


def relevance_rank_accuracy(a, s, normalise=True, abs=False):
    """The share of each map's K highest features that lie on the object, K the object's size in pixels
    (Arras et al. 2022). NaN for an empty mask."""
    A = prepare(a, normalise, abs)
    S = _masks(s, A)
    order = np.argsort(-A.reshape(len(A), -1), axis=1)
    out = np.full(len(A), np.nan)
    for n, K in enumerate(S.sum(axis=1)):
        if K:
            out[n] = S[n, order[n, :K]].sum() / K
    return out


def relevance_mass_accuracy(a, s, normalise=True, abs=False):
    """The share of each map's sum inside the object, ``sum(A s) / sum(A)`` (Arras et al. 2022), signed A by
    default and no epsilon (as Quantus). NaN for an empty mask."""
    A = prepare(a, normalise, abs)
    S = _masks(s, A)
    A = A.reshape(len(A), -1)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = (A * S).sum(axis=1) / A.sum(axis=1)
    return np.where(S.sum(axis=1) == 0, np.nan, r)


def _roc_auc(score, truth):
    """The area under the ROC curve of ``score`` separating ``truth``: the Mann-Whitney statistic with ties
    counted as one half (what scikit-learn's ``auc(roc_curve(...))`` gives)."""
    from scipy.stats import rankdata
    pos, neg = truth.sum(), (~truth).sum()
    ranks = rankdata(score)
    return (ranks[truth].sum() - pos * (pos + 1) / 2) / (pos * neg)


def auc(a, s, normalise=True, abs=False):
    """The ROC AUC of each map as a detector of the object's pixels (Fawcett 2006): 1 if every object pixel
    outranks every other. NaN for an empty (or full) mask, where the curve is not defined."""
    A = prepare(a, normalise, abs)
    S = _masks(s, A)
    A = A.reshape(len(A), -1)
    out = np.full(len(A), np.nan)
    for n in range(len(A)):
        if 0 < S[n].sum() < S.shape[1]:
            out[n] = _roc_auc(A[n], S[n])
    return out


# --------------------------------------------------------------------------
# Faithfulness: does the model's output follow the map? (model, x, y, a)
# --------------------------------------------------------------------------

def pixel_flipping(model, x, y, a, features_in_step=1, perturb_baseline="black", return_auc_per_sample=False,
                   softmax=True, normalise=True, abs=False):
    """The target's probability as the features are removed, most relevant first (Bach et al. 2015), a curve
    (N, ceil(F / features_in_step)), F = C*H*W: features ``order[t*k:(t+1)*k]`` (order: ``argsort(-A)``) of the
    current image are set to the baseline, cumulatively; no point for the untouched image. A one-channel map
    counts for every channel of its pixel (its C copies tie). ``return_auc_per_sample``: the trapezoid area
    under each curve instead."""
    A = prepare(a, normalise, abs)
    x, y = _images(x, y, A)
    _check_step(features_in_step, x)
    order = np.argsort(-_features(A, x), axis=1)
    steps = math.ceil(order.shape[1] / features_in_step)
    curve = np.stack([score for _, score in _removed_cumulatively(model, x, y, order, features_in_step, steps,
                                                                  perturb_baseline, softmax)], axis=1)
    return np.trapezoid(curve, dx=1, axis=1) if return_auc_per_sample else curve


def _removed_cumulatively(model, x, y, order, k, steps, perturb_baseline, softmax):
    """For t < steps: (the features removed at step t, ``order[:, t*k:(t+1)*k]``, and the target's score once
    they are set to the baseline of the current image, on top of those of the steps before)."""
    N = len(x)
    flat = x.reshape(N, -1).astype(np.float64).copy()
    for t in range(steps):
        idx = order[:, t * k:(t + 1) * k]
        flat[np.arange(N)[:, None], idx] = _baseline(flat, perturb_baseline)
        yield idx, _score(model, flat.reshape(x.shape).astype(x.dtype), y, softmax)


def _patches(A, x, patch_size):
    """Quantus's patches: (padding (h, w), patch sums (N, P), patch members (P, N, C*p*p) as flat indices of the
    padded image). The image is padded to a multiple of patch_size (floor before, ceil after); the maps with
    zeros."""
    if not isinstance(patch_size, (int, np.integer)) or not 1 <= patch_size <= min(x.shape[2:]):
        raise ValueError(f"patch_size must be a whole number from 1 to the image's side, got {patch_size!r}")

    def pad(d):
        m = d % patch_size
        return (0, 0) if m == 0 else ((patch_size - m) // 2, patch_size - m - (patch_size - m) // 2)
    ph, pw = pad(x.shape[2]), pad(x.shape[3])
    a_pad = np.pad(np.broadcast_to(A, x.shape), ((0, 0), (0, 0), ph, pw))
    N, C, Hp, Wp = a_pad.shape
    index = np.arange(C * Hp * Wp).reshape(C, Hp, Wp)
    members = []
    for i in range(Hp // patch_size):
        for j in range(Wp // patch_size):
            block = index[:, i * patch_size:(i + 1) * patch_size, j * patch_size:(j + 1) * patch_size].ravel()
            members.append(block)
    members = np.array(members)                                              # (P, C*p*p)
    sums = a_pad.reshape(N, -1)[:, members].sum(axis=2)                     # (N, P)
    return (ph, pw), sums, members


def _remove_patches(model, x, y, order, members, padding, perturb_baseline, softmax, steps):
    """Scores after removing the patches ``order[:, t]`` one after another, cumulatively, on the edge-padded
    image (as Quantus: the fill value is taken on the padded current image); (N, steps)."""
    (ph, pw) = padding
    N = len(x)
    padded = np.pad(x.astype(np.float64), ((0, 0), (0, 0), ph, pw), mode="edge")
    shape = padded.shape
    flat = padded.reshape(N, -1).copy()
    scores = []
    for t in range(steps):
        idx = members[order[:, t]]                                           # (N, C*p*p)
        flat[np.arange(N)[:, None], idx] = _baseline(flat, perturb_baseline)
        cropped = flat.reshape(shape)[:, :, ph[0]:shape[2] - ph[1], pw[0]:shape[3] - pw[1]]
        scores.append(_score(model, np.ascontiguousarray(cropped).astype(x.dtype), y, softmax))
    return np.stack(scores, axis=1)


def region_perturbation(model, x, y, a, patch_size=8, order="morf", regions_evaluation=100,
                        perturb_baseline="black", softmax=True, normalise=True, abs=False, seed=None):
    """The drop of the target's probability as square patches are removed, most relevant first ("morf"),
    least first ("lerf") or in random order (Samek et al. 2015): a curve (N, min(regions_evaluation, P)),
    each point ``y(x) - y(x_t)``. Patches: the non-overlapping patch_size blocks (all channels) of the image
    padded to a multiple of patch_size, row by row; a patch's relevance is the sum of the map in it.
    ``order="random"`` draws from NumPy's global generator as Quantus (not reproducible) unless ``seed``."""
    A = prepare(a, normalise, abs)
    x, y = _images(x, y, A)
    padding, sums, members = _patches(A, x, patch_size)
    if order == "morf":
        ranking = np.argsort(-sums, -1)
    elif order == "lerf":
        ranking = np.argsort(sums, -1)
    elif order == "random":
        rng = np.random if seed is None else np.random.RandomState(seed)
        ranking = np.array([rng.permutation(sums.shape[1]) for _ in range(len(x))])
    else:
        raise ValueError(f"order must be 'morf', 'lerf' or 'random', got {order!r}")
    if not isinstance(regions_evaluation, (int, np.integer)) or regions_evaluation < 1:
        raise ValueError(f"regions_evaluation must be a whole number >= 1, got {regions_evaluation!r}")
    before = _score(model, x, y, softmax)
    steps = min(regions_evaluation, sums.shape[1])
    return before[:, None] - _remove_patches(model, x, y, ranking, members, padding, perturb_baseline, softmax, steps)


def selectivity(model, x, y, a, patch_size=8, perturb_baseline="black", softmax=True, normalise=True, abs=False):
    """The target's probability as every patch is removed, most relevant first (Montavon et al. 2018): a curve
    (N, P) of ``y(x_t)`` itself (no difference, no point for the untouched image); patches as in
    ``region_perturbation``."""
    A = prepare(a, normalise, abs)
    x, y = _images(x, y, A)
    padding, sums, members = _patches(A, x, patch_size)
    return _remove_patches(model, x, y, np.argsort(-sums, -1), members, padding, perturb_baseline, softmax,
                           sums.shape[1])


def _pearson_rows(u, v):
    """Pearson's r of each row pair (scipy.stats.pearsonr along axis 1); NaN where a row is constant."""
    from scipy.stats import pearsonr
    with np.errstate(divide="ignore", invalid="ignore"):
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return np.asarray(pearsonr(u, v, axis=1)[0], dtype=np.float64)


def _spearman_rows(u, v):
    """Spearman's rho of each row pair (average ranks for ties), as scipy.stats.spearmanr per row."""
    from scipy.stats import rankdata
    return _pearson_rows(rankdata(u, axis=1), rankdata(v, axis=1))


def faithfulness_estimate(model, x, y, a, features_in_step=1, perturb_baseline="black", softmax=False,
                          normalise=True, abs=False):
    """Pearson's r between the map's sum over each step's features and the drop of the target's logit when
    only those features are removed from the original image (Alvarez-Melis & Jaakkola 2018), one per image.
    Steps of ``features_in_step`` features in the order ``argsort(-A)`` (an order that does not change r)."""
    A = prepare(a, normalise, abs)
    x, y = _images(x, y, A)
    _check_step(features_in_step, x)
    feats = _features(A, x)
    order = np.argsort(-feats, axis=1)
    N, F = feats.shape
    before = _score(model, x, y, softmax)
    original = x.reshape(N, -1).astype(np.float64)
    drops, sums = [], []
    for t in range(F // features_in_step):
        idx = order[:, t * features_in_step:(t + 1) * features_in_step]
        flat = original.copy()
        flat[np.arange(N)[:, None], idx] = _baseline(original, perturb_baseline)
        drops.append(before - _score(model, flat.reshape(x.shape).astype(x.dtype), y, softmax))
        sums.append(np.take_along_axis(feats, idx, axis=1).sum(axis=1))
    return _pearson_rows(np.stack(sums, axis=1), np.stack(drops, axis=1))


def monotonicity_correlation(model, x, y, a, nr_samples=100, features_in_step=1, perturb_baseline="uniform",
                             eps=1e-5, softmax=True, normalise=True, abs=True, seed=None):
    """Spearman's rho between the map's sum over each step's features and the variance their removal causes
    (Nguyen & Martinez 2020), one per image. Steps in ascending order of A (``argsort(A)``), each removing only
    its features from the original image, ``nr_samples`` times: ``V_t = mean_r (y(x_t,r) - y(x))^2 / y(x)^2``
    (the divisor 1 where |y(x)| < eps).

    The default "uniform" baseline fills each step with a fresh draw of ``uniform(0, 1)`` per image from
    NumPy's global generator, as Quantus (step-major, then repetition); ``seed`` seeds it first (Quantus with
    ``np.random.seed(seed)`` just before gives the same number). "black" and the others are deterministic."""
    A = prepare(a, normalise, abs)
    x, y = _images(x, y, A)
    _check_step(features_in_step, x)
    if not isinstance(nr_samples, (int, np.integer)) or nr_samples < 1:
        raise ValueError(f"nr_samples must be a whole number >= 1, got {nr_samples!r}")
    if seed is not None:
        np.random.seed(seed)
    feats = _features(A, x)
    order = np.argsort(feats, axis=1)
    N, F = feats.shape
    before = _score(model, x, y, softmax)
    inv = np.where(np.abs(before) >= eps, 1 / np.abs(before), 1.0) ** 2
    original = x.reshape(N, -1).astype(np.float64)
    variances, sums = [], []
    for t in range(F // features_in_step):
        idx = order[:, t * features_in_step:(t + 1) * features_in_step]
        total = np.zeros(N)
        for _ in range(nr_samples):
            flat = original.copy()
            fill = (np.random.uniform(0.0, 1.0, size=N)[:, None] if perturb_baseline == "uniform"
                    else _baseline(original, perturb_baseline))
            flat[np.arange(N)[:, None], idx] = fill
            total += (_score(model, flat.reshape(x.shape).astype(x.dtype), y, softmax) - before) ** 2
        variances.append(total / nr_samples * inv)
        sums.append(np.take_along_axis(feats, idx, axis=1).sum(axis=1))
    return _spearman_rows(np.stack(sums, axis=1), np.stack(variances, axis=1))


def sensitivity_n(model, x, y, a, n_max_percentage=0.8, features_in_step=1, perturb_baseline="black",
                  return_aggregate=True, softmax=True, normalise=True, abs=False, paper=False):
    """Pearson's r, across the images, between the map's sum over the removed features and the drop of the
    target's probability (Ancona et al. 2018): features removed cumulatively in the order ``argsort(-A)``,
    ``features_in_step`` at a time, for ``M = int(n_max_percentage * H * W // features_in_step)`` steps; r_t
    over the N images at each step. Returns the mean of r_t (one number for the batch), or the M values with
    ``return_aggregate=False``.

    Quantus departs from the paper: the map's sum is over **only the step's** features, not all removed so
    far; ``paper=True`` sums all removed features. (Quantus also scores only its first 64 images; this scores
    all.)"""
    A = prepare(a, normalise, abs)
    x, y = _images(x, y, A)
    _check_step(features_in_step, x)
    if len(x) < 2:
        raise ValueError("sensitivity_n correlates across the images: give at least 2")
    feats = _features(A, x)
    order = np.argsort(-feats, axis=1)
    N = len(x)
    M = int(n_max_percentage * x.shape[2] * x.shape[3] // features_in_step)
    if M < 1:
        raise ValueError(f"n_max_percentage * H * W // features_in_step gives {M} steps; at least 1 is needed")
    before = _score(model, x, y, softmax)
    r, removed = [], np.zeros(N)
    for idx, score in _removed_cumulatively(model, x, y, order, features_in_step, M, perturb_baseline, softmax):
        drop = before - score
        step = np.take_along_axis(feats, idx, axis=1).sum(axis=1)
        removed = removed + step
        r.append(_pearson_rows((removed if paper else step)[None], drop[None])[0])
    r = np.array(r)
    return float(np.mean(r)) if return_aggregate else r


def irof(model, x, y, a, segments, perturb_baseline="mean", return_aggregate=False, softmax=True, normalise=True,
         abs=False):
    """Iterative removal of features (Rieger & Hansen 2020): segments removed most relevant first (a
    segment's relevance: the mean of the map over its pixels and channels), cumulatively; ``p_t = y(x_t) /
    y(x)``, 0 once an image's segments are used up; the score ``S_n - trapezoid(p_0..p_{S-1})``, S_n the
    image's segment count, S the largest. ``segments``: (N, H, W) integer labels 0..S_n - 1 (Quantus computes
    SLIC itself; pass the same labels).

    Quantus's fill value is **one number for the whole batch**: the mean of every image, channel and pixel of
    the current batch (so one image's score depends on the others'); kept. Quantus runs only on one-channel
    images (an assertion fails for C > 1); this runs on any. ``return_aggregate``: the mean over the images."""
    A = prepare(a, normalise, abs)
    x, y = _images(x, y, A)
    seg = np.asarray(segments)
    if seg.shape != (len(x),) + x.shape[2:] or seg.dtype.kind not in "iu" or seg.min() < 0:
        raise ValueError(f"segments must be integer labels 0, 1, ... of shape {(len(x),) + x.shape[2:]}, got "
                         f"shape {seg.shape} and dtype {seg.dtype}")
    if perturb_baseline != "mean":
        raise ValueError("irof follows Quantus: perturb_baseline='mean' (the whole batch's mean) only")
    N, C = x.shape[:2]
    feats = np.broadcast_to(A, x.shape)
    counts = seg.reshape(N, -1).max(axis=1) + 1
    S = int(counts.max())
    orders = []
    for n in range(N):
        means = np.array([feats[n][:, seg[n] == k].mean() for k in range(counts[n])])
        orders.append(np.argsort(-means))
    before = _score(model, x, y, softmax)
    current = x.astype(np.float64).copy()
    p = np.zeros((N, S))
    for t in range(S):
        fill = current.mean()
        for n in range(N):
            if t < counts[n]:
                current[n][:, seg[n] == orders[n][t]] = fill
        p[:, t] = _score(model, current.astype(x.dtype), y, softmax) / before
        p[t >= counts, t] = 0.0
    scores = counts - np.trapezoid(p, dx=1, axis=1)
    return float(np.mean(scores)) if return_aggregate else scores


def sufficiency(model, x, y, a, threshold=0.6, softmax=True, normalise=True, abs=True):
    """For each image, the share of the images whose maps are similar to its own that the model puts in the
    same (predicted) class (Dasgupta et al. 2022); 0 when no other map is similar. Similar: the standardized
    Euclidean distance (variance from the maps, ddof 1, as SciPy's ``cdist(..., "seuclidean")``), divided by
    its largest value, at most ``threshold``. ``y`` is not used (the predicted classes are), as Quantus.

    Quantus's quirk, kept: a feature constant over the batch (a pixel 0 in every map) makes every distance NaN
    and every score 0. Quantus scores in batches of 64 images; pass at most 64 to match it."""
    A = prepare(a, normalise, abs)
    x, y = _images(x, y, A)
    from scipy.spatial.distance import cdist
    F = A.reshape(len(A), -1)
    with np.errstate(divide="ignore", invalid="ignore"):
        d = cdist(F, F, "seuclidean", V=np.var(np.vstack([F, F]), axis=0, ddof=1))
        d = d / np.max(d)
    similar = d <= threshold
    np.fill_diagonal(similar, False)
    classes = _predict(model, x, softmax).argmax(axis=1)
    same = similar & (classes[:, None] == classes[None, :])
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(similar.sum(axis=1) > 0, same.sum(axis=1) / similar.sum(axis=1), 0.0)


# --------------------------------------------------------------------------
# Axiomatic
# --------------------------------------------------------------------------

def completeness(model, x, y, a, perturb_baseline="black", softmax=False, normalise=True, abs=False, rtol=None):
    """Whether each map sums to the output's change from the baseline image (Sundararajan et al. 2017):
    ``sum(A) == y(x) - y(x_b)``, x_b every feature set to the baseline (black: the image's minimum). Quantus
    tests **exact** float equality (almost always False); ``rtol`` gives a tolerance instead. Note that the
    map is normalised by default, which breaks completeness by itself: pass ``normalise=False``."""
    A = prepare(a, normalise, abs)
    x, y = _images(x, y, A)
    flat = x.reshape(len(x), -1).astype(np.float64)
    baseline = np.broadcast_to(_baseline(flat, perturb_baseline), flat.shape).reshape(x.shape).astype(x.dtype)
    change = _score(model, x, y, softmax) - _score(model, baseline, y, softmax)
    total = A.reshape(len(A), -1).sum(axis=1)
    if rtol is None:
        return total == change
    return np.abs(total - change) <= rtol * np.maximum(np.abs(change), 1e-300)


def non_sensitivity(model, x, y, a, eps=1e-5, features_in_step=1, perturb_baseline="black", softmax=True,
                    normalise=True, abs=True):
    """How many features break the dummy axiom (Nguyen & Martinez 2020): a feature whose map value is below
    ``eps`` should not change the output when removed, and one that changes nothing should have a map value
    below eps. Each feature is removed alone from the original image; returns, per image, the count of
    features where "the output moved by less than eps" differs from "the map is below eps". Quantus fails for
    ``features_in_step`` > 1; so does this, with a message."""
    A = prepare(a, normalise, abs)
    x, y = _images(x, y, A)
    if features_in_step != 1:
        raise ValueError("non_sensitivity needs features_in_step=1 (Quantus fails otherwise: it compares a "
                         "result per step with one per feature)")
    feats = _features(A, x)
    N, F = feats.shape
    before = _score(model, x, y, softmax)
    original = x.reshape(N, -1).astype(np.float64)
    fill = _baseline(original, perturb_baseline)
    same = np.zeros((N, F), dtype=bool)
    for f in range(F):
        flat = original.copy()
        flat[:, f] = fill[:, 0]
        same[:, f] = np.abs(_score(model, flat.reshape(x.shape).astype(x.dtype), y, softmax) - before) < eps
    return (same ^ (feats < eps)).sum(axis=1)


# --------------------------------------------------------------------------
# Robustness
# --------------------------------------------------------------------------

def _sensitivities(model, x, y, a, explain_func, nr_samples, lower_bound, upper_bound, noise, seed, normalise,
                   abs, return_nan_when_prediction_changes):
    a = _as_maps(a)
    x, y = _images(x, y)
    if not callable(explain_func):
        raise TypeError("explain_func must be a function f(model, x, y) -> maps")
    if noise is None:
        if not isinstance(nr_samples, (int, np.integer)) or nr_samples < 1:
            raise ValueError(f"nr_samples must be a whole number >= 1, got {nr_samples!r}")
        low, high = (-lower_bound, lower_bound) if upper_bound is None else (lower_bound, upper_bound)
        noise = np.random.RandomState(seed).uniform(low, high, size=(nr_samples,) + x.shape)
    noise = np.asarray(noise, dtype=np.float64)
    if noise.ndim != 5 or noise.shape[1:] != x.shape:
        raise ValueError(f"noise must be (nr_samples, N, C, H, W) = (?, {', '.join(map(str, x.shape))}), got "
                         f"{noise.shape}")

    def process(m):
        m = np.asarray(m, dtype=np.float64)
        if normalise and not np.all(m == 0):
            m = m / np.abs(m).max()
        return np.abs(m) if abs else m
    A = process(a).reshape(len(x), -1)
    classes = _predict(model, x, False).argmax(axis=1)
    out = []
    for u in noise:
        xr = (x + u).astype(x.dtype)
        ar = process(explain_func(model, xr, y)).reshape(len(x), -1)
        with np.errstate(divide="ignore", invalid="ignore"):
            s = np.linalg.norm(A - ar, axis=1) / np.linalg.norm(A, axis=1)
        if return_nan_when_prediction_changes:
            s = np.where(_predict(model, xr, False).argmax(axis=1) != classes, np.nan, s)
        out.append(s)
    return np.stack(out)                                              # (nr_samples, N)


def max_sensitivity(model, x, y, a, explain_func, nr_samples=200, lower_bound=0.2, upper_bound=None, noise=None,
                    seed=0, normalise=False, abs=False, return_nan_when_prediction_changes=False):
    """The largest relative change of the map under small noise (Yeh et al. 2019): over ``nr_samples`` draws
    ``x_r = x + U_r``, ``U_r ~ uniform(-lower_bound, lower_bound)`` on every feature (``(lower_bound,
    upper_bound)`` if upper_bound is given), ``max_r ||a - explain_func(model, x_r, y)|| / ||a||`` per image
    (L2 over the flattened map). ``noise``: the draws themselves, (nr_samples, N, C, H, W); without it they are
    ``np.random.RandomState(seed).uniform(...)``, which is what Quantus draws after ``np.random.seed(seed)``.
    ``return_nan_when_prediction_changes``: NaN for draws that change the predicted class (then the max is
    NaN if any is)."""
    s = _sensitivities(model, x, y, a, explain_func, nr_samples, lower_bound, upper_bound, noise, seed, normalise,
                       abs, return_nan_when_prediction_changes)
    return np.max(s, axis=0) if return_nan_when_prediction_changes else np.nanmax(s, axis=0)


def avg_sensitivity(model, x, y, a, explain_func, nr_samples=200, lower_bound=0.2, upper_bound=None, noise=None,
                    seed=0, normalise=False, abs=False, return_nan_when_prediction_changes=False):
    """The mean relative change of the map under small noise (Yeh et al. 2019): as ``max_sensitivity`` with the
    mean over the draws instead of the max."""
    s = _sensitivities(model, x, y, a, explain_func, nr_samples, lower_bound, upper_bound, noise, seed, normalise,
                       abs, return_nan_when_prediction_changes)
    return np.mean(s, axis=0) if return_nan_when_prediction_changes else np.nanmean(s, axis=0)
