"""How fragile is a map? The largest change of the map among small perturbations that keep the prediction.

Ghorbani et al. (2019, "Interpretation of neural networks is fragile") showed that an imperceptible change of
the image, which leaves the predicted class alone, can move a saliency map far away. They searched with the
gradient of the map's change, which for gradient maps needs second derivatives. This search needs none: it
tries directions (random signs, and the sign of the target logit's input gradient, both ways) and keeps, step
by step, the one that moves the map most, inside the L-infinity ball of radius ``epsilon`` and the image's
valid range, rejecting any step that changes the predicted class.

    result = fragility(attr.METHODS["vanilla_gradient"], model, x, epsilon=8 / 255, seed=0)
    result.top_k, result.spearman        # (N,): 1 = unchanged; lower = more fragile

The map's change is measured on its per-pixel version (channels summed with their sign for signed methods,
as |a| summed for the others; see ``attribution.evaluate.to_pixel_map``) by

- top-k intersection: the share of the original map's k highest pixels still among the k highest;
- Spearman's rank correlation between the two maps.

The search minimises the top-k intersection (ties broken by the rank correlation).
"""
from dataclasses import dataclass

import numpy as np

from .methods import check_images, one_hot, resolve_targets
from .progress import Progress


@dataclass
class FragilityResult:
    """What ``fragility`` found, per image: the worst top-k intersection and rank correlation (1: unchanged),
    the perturbation that gave it (N, C, H, W), the original and the perturbed pixel maps (N, H', W'),
    and how many maps were computed."""
    top_k: np.ndarray
    spearman: np.ndarray
    delta: np.ndarray
    before: np.ndarray
    after: np.ndarray
    evaluations: int


def _pixel_map(method, a):
    a = np.asarray(a, dtype=np.float64)
    if a.ndim == 4:
        a = a.sum(axis=1) if getattr(method, "signed", False) else np.abs(a).sum(axis=1)
    return a


def top_k_intersection(before, after, k):
    """The share of each map's k highest pixels (before) still among the k highest (after): (N,)."""
    b = np.argsort(-before.reshape(len(before), -1), axis=1, kind="stable")[:, :k]
    a = np.argsort(-after.reshape(len(after), -1), axis=1, kind="stable")[:, :k]
    return np.array([len(np.intersect1d(u, v)) / k for u, v in zip(b, a)])


def rank_correlation(before, after):
    """Spearman's rank correlation of each pair of maps: (N,); NaN where a map is constant."""
    from scipy.stats import rankdata
    u = rankdata(before.reshape(len(before), -1), axis=1)
    v = rankdata(after.reshape(len(after), -1), axis=1)
    u, v = u - u.mean(axis=1, keepdims=True), v - v.mean(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        return (u * v).sum(axis=1) / np.sqrt((u * u).sum(axis=1) * (v * v).sum(axis=1))


def fragility(method, model, x, target=None, epsilon=8 / 255, steps=10, directions=8, top=0.1, step_size=None,
              value_range=(0.0, 1.0), seed=0, progress=False):
    """Search, for each image, the perturbation within ``epsilon`` (L-infinity) that keeps the predicted class
    and moves ``method``'s map most. Returns a ``FragilityResult``.

    method: a registry entry (``attribution.METHODS[name]``) or any ``f(model, x, target) -> maps``.
    target: None explains each image's predicted class (the class every accepted step keeps).
    steps: rounds of search; each tries ``directions`` candidate steps per image: random sign patterns and
        the sign of the target logit's input gradient at the current point, both ways (no second derivatives).
    step_size: the L-infinity length of a step (default epsilon / 4); each candidate is projected back into
        the ball and into ``value_range`` (the images' valid values).
    top: k as a share of the map's pixels (0.1: the top 10%).
    Seeded: the same arguments give the same result. Cost: 1 + steps * directions maps and forward passes
    per image (the progress line counts the maps).
    """
    check_images(x)
    if not callable(method):
        raise TypeError(f"method must be a registry entry or a function f(model, x, target), got {method!r}")
    for name, value in (("epsilon", epsilon), ("top", top)):
        if not (isinstance(value, (int, float)) and np.isfinite(value) and value > 0):
            raise ValueError(f"{name} must be a number above 0, got {value!r}")
    if top > 1:
        raise ValueError(f"top is a share of the pixels, at most 1, got {top!r}")
    for name, value in (("steps", steps), ("directions", directions)):
        if not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be a whole number >= 1, got {value!r}")
    step_size = epsilon / 4 if step_size is None else step_size
    if not (isinstance(step_size, (int, float)) and 0 < step_size <= epsilon):
        raise ValueError(f"step_size must be above 0 and at most epsilon ({epsilon}), got {step_size!r}")
    low, high = value_range
    rng = np.random.default_rng(seed)
    N = len(x)
    logits = model.forward(x)
    classes = logits.argmax(axis=1)
    targets = resolve_targets(target, logits)
    before = _pixel_map(method, method(model, x, targets))
    k = max(1, int(round(top * before[0].size)))
    best_delta = np.zeros_like(x)
    best_map = before.copy()
    best = (np.ones(N), np.ones(N))
    bar = Progress("fragility maps", steps * directions, progress)
    for step in range(steps):
        grad_sign = np.sign(_input_gradient(model, x + best_delta, targets))
        for d in range(directions):
            if d < 2:
                direction = grad_sign * (1 if d == 0 else -1)
            else:
                direction = rng.choice(np.array([-1.0, 1.0], dtype=x.dtype), size=x.shape)
            delta = np.clip(best_delta + step_size * direction, -epsilon, epsilon)
            delta = np.clip(x + delta, low, high) - x
            moved = (x + delta).astype(x.dtype)
            kept = model.forward(moved).argmax(axis=1) == classes
            after = _pixel_map(method, method(model, moved, targets))
            scores = (top_k_intersection(before, after, k), rank_correlation(before, after))
            better = kept & ((scores[0] < best[0]) | ((scores[0] == best[0]) & (scores[1] < best[1])))
            best_delta[better], best_map[better] = delta[better], after[better]
            best = tuple(np.where(better, new, old) for new, old in zip(scores, best))
            bar.update(step * directions + d + 1)
    bar.close()
    return FragilityResult(best[0], best[1], best_delta, before, best_map, 1 + steps * directions)


def _input_gradient(model, x, targets):
    logits = model.forward(x)
    return model.backward(one_hot(targets, logits))
