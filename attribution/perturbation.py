"""Perturbation methods on superpixels: LIME, KernelSHAP and exact Shapley values.

All three ask the model the same kind of question: what is the target's
logit when only some segments of the image are "on" (the rest replaced by a
baseline)? A coalition is a binary vector z (M,) over the M segments.

- ``lime`` (Ribeiro et al. 2016): random coalitions, weighted by how close
  they are to the full image, and a weighted ridge regression logit ~ z;
  the coefficients are the explanation.
- ``kernel_shap`` (Lundberg & Lee 2017): the same regression with the
  Shapley kernel as weights and the efficiency constraint (the coefficients
  add up to F(all on) - F(all off)); with every coalition it gives the exact
  Shapley values.
- ``shapley_values``: the Shapley values by enumerating all 2^M coalitions.

Every function returns per-pixel maps (N, C, H, W), each pixel its segment's
value (equal across channels, as Captum's), and can return the per-segment
values. Segments are SLIC superpixels unless the caller gives them.
"""
from math import comb, factorial

import numpy as np

from .methods import (batch_for, check_baseline, check_batch_size, check_images, check_logits, check_positive,
                      check_result, check_work, resolve_targets)
from .progress import Progress
from .superpixels import slic

BASELINES = ("mean", "grey", "blur", "black")
MAX_EXACT_SEGMENTS = 14          # 2^14 = 16384 forward passes per image for exact Shapley values


# --------------------------------------------------------------------------
# The shared steps: segments, the switched-off image, coalitions -> logits
# --------------------------------------------------------------------------

def image_segments(x, segments=None, n_segments=50, compactness=10.0):
    """A list of N (H, W) int label arrays 0..M-1: the caller's (one for all images, or one per image), else SLIC."""
    N, _, H, W = x.shape
    if segments is None:
        result = [slic(np.clip(img, 0, 1), n_segments=n_segments, compactness=compactness) for img in x]
        for n, labels in enumerate(result):
            if labels.max() < 1:
                raise ValueError(f"SLIC found one segment in image {n} (n_segments={n_segments}): with nothing to "
                                 f"switch off and on there is nothing to explain; give more n_segments or segments=")
        return result
    segments = np.asarray(segments)
    if segments.shape == (H, W):
        segments = np.broadcast_to(segments, (N, H, W))
    if segments.shape != (N, H, W):
        raise ValueError(f"segments must be one (H, W) = {(H, W)} label array or one per image {(N, H, W)}, "
                         f"got shape {segments.shape}")
    if segments.dtype.kind not in "iu":
        raise ValueError(f"segments must hold integer labels, got {segments.dtype}")
    result = []
    for n, labels in enumerate(segments):
        labels = np.unique(labels, return_inverse=True)[1].reshape(H, W)      # labels 0..M-1 in order
        if labels.max() < 1:
            raise ValueError(f"image {n} has fewer than 2 segments: there is nothing to switch off and on")
        result.append(labels)
    return result


def switched_off(image, labels, baseline):
    """What a switched-off segment shows: (C, H, W) for one image.

    baseline: "mean" (each segment filled with its own mean colour, as lime_image),
    "grey" (0.5), "black" (0), "blur" (a Gaussian blur, sigma = 1/16 of the image side),
    a number, or an array broadcastable to (C, H, W)."""
    if isinstance(baseline, str):
        if baseline == "mean":
            M = labels.max() + 1
            count = np.bincount(labels.ravel(), minlength=M)
            means = np.stack([np.bincount(labels.ravel(), c.ravel(), M) / count for c in image])   # (C, M)
            return means[:, labels].astype(image.dtype)
        if baseline == "grey":
            return np.full_like(image, 0.5)
        if baseline == "black":
            return np.zeros_like(image)
        if baseline == "blur":
            from scipy.ndimage import gaussian_filter
            sigma = max(image.shape[1:]) / 16
            return gaussian_filter(image, sigma=(0, sigma, sigma)).astype(image.dtype)
        raise ValueError(f"unknown baseline {baseline!r}; use one of {', '.join(BASELINES)}, a number or an array")
    return check_baseline(baseline, image)


def coalition_logits(model, image, off, labels, target, coalitions, batch_size=64, tick=None):
    """The target's logit for each coalition: image where z is 1, ``off`` where it is 0. -> (S,) float64.

    image, off: (C, H, W); labels: (H, W) 0..M-1; coalitions: (S, M) of 0/1; tick(k): told after each batch."""
    scores = np.empty(len(coalitions))
    for start in range(0, len(coalitions), batch_size):
        z = coalitions[start:start + batch_size]
        keep = z[:, labels][:, None].astype(bool)                     # (s, 1, H, W): is the pixel's segment on?
        batch = np.where(keep, image[None], off[None])
        scores[start:start + len(z)] = check_logits(model.forward(batch), "the copies with segments switched "
                                                                      "off")[:, target]
        if tick is not None:
            tick(len(z))
    return scores


class _Counter:
    """Model evaluations done so far, reported to a Progress."""

    def __init__(self, bar):
        self.bar, self.done = bar, 0

    def __call__(self, k):
        self.done += k
        self.bar.update(self.done)


def _to_maps(x, labels_list, values_list, method):
    """Per-segment values -> (N, C, H, W) maps, each pixel its segment's value, equal across channels."""
    maps = np.stack([values[labels] for labels, values in zip(labels_list, values_list)])
    maps = np.repeat(maps[:, None], x.shape[1], axis=1).astype(x.dtype)
    return check_result(maps, method, f"the segments' values do not fit {x.dtype} (logits far apart between "
                                      f"coalitions: a baseline far outside the images' range?)")


# --------------------------------------------------------------------------
# LIME
# --------------------------------------------------------------------------

def weighted_ridge(Z, y, weights, alpha=1.0):
    """argmin over (b, w) of sum_i weights_i (y_i - b - Z_i w)^2 + alpha |w|^2 -> (w (M,), b).

    The intercept b is not penalized (as scikit-learn's Ridge): centre Z and y by their weighted means,
    solve (Zc^T W Zc + alpha I) w = Zc^T W yc, then b = mean(y) - mean(Z) w."""
    weights = np.asarray(weights, dtype=np.float64)
    total = weights.sum()
    if not total > 0:
        raise ValueError("every sample has weight 0: widen the kernel (kernel_width)")
    z_mean = weights @ Z / total
    y_mean = weights @ y / total
    Zc, yc = Z - z_mean, y - y_mean
    A = Zc.T @ (weights[:, None] * Zc) + alpha * np.eye(Z.shape[1])
    w = np.linalg.lstsq(A, Zc.T @ (weights * yc), rcond=None)[0]
    return w, y_mean - z_mean @ w


def lime_weights(coalitions, kernel_width=0.25):
    """LIME's sample weights: ``exp(-d^2 / kernel_width^2)`` under a square root (lime_image's kernel,
    equal to exp(-d^2 / (2 w^2))), d the cosine distance between z and the all-on coalition."""
    z = np.asarray(coalitions, dtype=np.float64)
    on = z.sum(axis=1)
    cosine = np.where(on > 0, on / np.sqrt(np.maximum(on, 1) * z.shape[1]), 0.0)
    d = 1 - cosine
    return np.sqrt(np.exp(-d ** 2 / kernel_width ** 2))


def lime(model, x, target=None, segments=None, n_samples=1000, baseline="mean", kernel_width=0.25, alpha=1.0,
         seed=0, n_segments=50, batch_size=None, return_coefficients=False, progress=False):
    """LIME for images (Ribeiro et al. 2016), (N, C, H, W): each pixel its segment's coefficient.

    For each image: ``n_samples`` coalitions, the first all on and the others
    Bernoulli(0.5) over the M segments; the target logit of each (switched-off
    segments show ``baseline``, see ``switched_off``); weights from the cosine
    distance to the all-on coalition (``lime_weights``); and a weighted ridge
    regression ``logit ~ b + z w`` (``weighted_ridge``, alpha=1 as lime_image).
    Departures from lime_image: the logit, not the probability, is explained
    (like every method here); SLIC rather than quickshift segments.

    segments: (H, W) labels for every image, (N, H, W) one per image, or None (SLIC with ``n_segments``).
    return_coefficients: also return a list of N arrays (M_n,), the per-segment coefficients.
    progress: True for a progress line on stderr (model evaluations done), or a callable f(done, total).
    """
    check_images(x)
    check_positive(n_samples, "n_samples", 2)
    check_batch_size(batch_size)
    if not kernel_width > 0:
        raise ValueError(f"kernel_width must be positive, got {kernel_width!r}")
    if not alpha >= 0:
        raise ValueError(f"alpha (the ridge penalty) must be >= 0, got {alpha!r}")
    targets = resolve_targets(target, model.forward(x))
    batch_size = batch_for(model, len(x), batch_size)
    labels_list = image_segments(x, segments, n_segments)
    M = max(labels.max() + 1 for labels in labels_list)
    check_work(8 * (3 * M * M + 3 * n_samples * M), f"LIME with {M} segments and {n_samples} samples (the "
               f"regression holds {n_samples} x {M} samples and an {M} x {M} system)", "use fewer segments "
               "(n_segments, or coarser segments=) or fewer samples")
    rng = np.random.default_rng(seed)
    coefficients = []
    bar = Progress("LIME model evaluations", len(x) * n_samples, progress)
    tick = _Counter(bar)
    for image, labels, t in zip(x, labels_list, targets):
        M = labels.max() + 1
        z = rng.integers(0, 2, (n_samples, M))
        z[0] = 1                                                       # the image itself, as lime_image
        y = coalition_logits(model, image, switched_off(image, labels, baseline), labels, t, z, batch_size, tick)
        w, _ = weighted_ridge(z.astype(np.float64), y, lime_weights(z, kernel_width), alpha)
        coefficients.append(w)
    bar.close()
    maps = _to_maps(x, labels_list, coefficients, "LIME")
    return (maps, coefficients) if return_coefficients else maps


# --------------------------------------------------------------------------
# Shapley values: exact, and KernelSHAP
# --------------------------------------------------------------------------

def all_coalitions(M):
    """Every coalition of M players as rows of 0/1, (2^M, M); row k is the binary expansion of k."""
    return (np.arange(2 ** M)[:, None] >> np.arange(M)[None]) & 1


def exact_shapley(v, M):
    """Shapley values (M,) from v (2^M,), the value of every coalition in ``all_coalitions`` order:
    phi_i = sum over S not containing i of |S|! (M - |S| - 1)! / M! * (v(S + i) - v(S))."""
    z = all_coalitions(M)
    size = z.sum(axis=1)
    weight = np.array([factorial(s) * factorial(M - s - 1) / factorial(M) for s in range(M)])
    phi = np.zeros(M)
    for i in range(M):
        without = np.flatnonzero(z[:, i] == 0)                       # S without i ...
        phi[i] = (weight[size[without]] * (v[without + (1 << i)] - v[without])).sum()   # ... and S with i
    return phi


def shapley_values(model, x, target=None, segments=None, baseline="mean", n_segments=8, batch_size=None,
                   return_values=False, progress=False):
    """Exact Shapley values of the segments (N, C, H, W), by enumerating all 2^M coalitions.

    The players are the segments; v(S) is the target logit with the
    segments in S on and the others showing ``baseline``. Exact, and
    exponential: at most MAX_EXACT_SEGMENTS segments (use ``kernel_shap`` beyond).
    The values add up to v(all) - v(none) (efficiency).
    return_values: also return a list of N arrays (M_n,).
    progress: True for a progress line on stderr (model evaluations done), or a callable f(done, total).
    """
    check_images(x)
    check_batch_size(batch_size)
    targets = resolve_targets(target, model.forward(x))
    batch_size = batch_for(model, len(x), batch_size)
    labels_list = image_segments(x, segments, n_segments)
    for labels in labels_list:
        if labels.max() + 1 > MAX_EXACT_SEGMENTS:
            raise ValueError(f"exact Shapley values need 2^M model evaluations: M = {labels.max() + 1} segments is "
                             f"above the limit of {MAX_EXACT_SEGMENTS}; give fewer segments, or use kernel_shap")
    bar = Progress("Shapley model evaluations", sum(2 ** (labels.max() + 1) for labels in labels_list), progress)
    tick = _Counter(bar)
    values = []
    for image, labels, t in zip(x, labels_list, targets):
        M = labels.max() + 1
        v = coalition_logits(model, image, switched_off(image, labels, baseline), labels, t, all_coalitions(M),
                             batch_size, tick)
        values.append(exact_shapley(v, M))
    bar.close()
    maps = _to_maps(x, labels_list, values, "Shapley values")
    return (maps, values) if return_values else maps


def shapley_kernel(M, size):
    """The Shapley kernel weight of a coalition of ``size`` of M players: (M - 1) / (C(M, k) k (M - k));
    infinite for the empty and the full coalition (they become the efficiency constraint)."""
    size = np.asarray(size)
    inner = (size > 0) & (size < M)
    k = np.where(inner, size, 1)
    binom = np.array([comb(M, int(s)) for s in k.ravel()], dtype=np.float64).reshape(k.shape)
    return np.where(inner, (M - 1) / (binom * k * (M - k)), np.inf)


def kernel_shap_solve(z, v, v_empty, v_full, weights):
    """The weighted least squares of KernelSHAP under sum(phi) = v_full - v_empty -> phi (M,).

    Eliminate the last player: phi_M = (v_full - v_empty) - sum_{j<M} phi_j, so the model
    v(z) - v_empty - z_M (v_full - v_empty) = sum_{j<M} (z_j - z_M) phi_j is fit by ordinary WLS."""
    z = np.asarray(z, dtype=np.float64)
    total = v_full - v_empty
    X = z[:, :-1] - z[:, -1:]
    y = v - v_empty - z[:, -1] * total
    sw = np.sqrt(weights)
    head = np.linalg.lstsq(X * sw[:, None], y * sw, rcond=None)[0]
    return np.append(head, total - head.sum())


def kernel_shap(model, x, target=None, segments=None, n_samples=1000, baseline="mean", seed=0, n_segments=50,
                batch_size=None, return_values=False, progress=False):
    """KernelSHAP (Lundberg & Lee 2017) over segments, (N, C, H, W): each pixel its segment's Shapley estimate.

    The empty and full coalitions fix the efficiency constraint (the values
    add up to v(all) - v(none)); the other coalitions enter a weighted least
    squares with the Shapley kernel (``shapley_kernel``). With
    ``n_samples >= 2^M`` every coalition is enumerated and the result equals
    ``shapley_values``; below that, coalition sizes are drawn in proportion
    to the kernel's mass, uniform subsets of that size and their complements
    (paired sampling), each with equal weight.
    return_values: also return a list of N arrays (M_n,).
    progress: True for a progress line on stderr (model evaluations done), or a callable f(done, total).
    """
    check_images(x)
    check_positive(n_samples, "n_samples", 2)
    check_batch_size(batch_size)
    targets = resolve_targets(target, model.forward(x))
    batch_size = batch_for(model, len(x), batch_size)
    labels_list = image_segments(x, segments, n_segments)
    M = max(labels.max() + 1 for labels in labels_list)
    if n_samples >= 2 ** min(M, 62):
        check_work(8 * 4 * M * 2 ** M, f"KernelSHAP enumerating every coalition of {M} segments (n_samples = "
                   f"{n_samples} >= 2^{M})", f"give n_samples below 2^{M} = {2 ** M} to sample coalitions, or use "
                   f"fewer segments")
    else:
        check_work(8 * 6 * M * n_samples, f"KernelSHAP with {n_samples} samples of {M} segments",
                   "use fewer samples or fewer segments")
    rng = np.random.default_rng(seed)
    values = []
    planned = [2 ** (labels.max() + 1) if n_samples >= 2 ** (labels.max() + 1)
               else 2 + 2 * max(1, (n_samples - 2) // 2) for labels in labels_list]
    bar = Progress("KernelSHAP model evaluations", sum(planned), progress)
    tick = _Counter(bar)
    for image, labels, t in zip(x, labels_list, targets):
        M = labels.max() + 1
        ends = np.array([np.zeros(M, int), np.ones(M, int)])
        if n_samples >= 2 ** M:                                       # enumerate every coalition
            z = all_coalitions(M)[1:-1]
            weights = shapley_kernel(M, z.sum(axis=1))
        else:
            sizes = np.arange(1, M)
            mass = (M - 1) / (sizes * (M - sizes))
            k = rng.choice(sizes, size=max(1, (n_samples - 2) // 2), p=mass / mass.sum())
            ranks = rng.random((len(k), M)).argsort(axis=1).argsort(axis=1)     # a random order of the players
            half = (ranks < k[:, None]).astype(int)                              # the first k of them are on
            z = np.concatenate([half, 1 - half])                      # each coalition and its complement
            weights = np.ones(len(z))
        v = coalition_logits(model, image, switched_off(image, labels, baseline), labels, t,
                             np.concatenate([ends, z]), batch_size, tick)
        values.append(kernel_shap_solve(z, v[2:], v[0], v[1], weights))
    bar.close()
    maps = _to_maps(x, labels_list, values, "KernelSHAP")
    return (maps, values) if return_values else maps
