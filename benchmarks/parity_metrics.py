"""How far attribution.metrics is from Quantus 0.6.0, on nets and data the tests never saw.

    python benchmarks/parity_metrics.py [--nets 6] [--seed 2000]

Draws ``--nets`` random VGG-style nets (random depth of the head, class count, image size from 12 to 24
pixels, an even side so that the steps divide it), random images, classes, masks and maps (signed, positive or
three-channel), and compares every deterministic metric with Quantus at its defaults and with a few other
settings (float64: Quantus is given the torch twin of the net). (The robustness metrics, random in Quantus,
are compared given the same noise in tests/test_metrics.py.) Prints, per metric, the largest error |ours - Quantus| / max(|Quantus|, 1e-6) over all nets (NaN must
match NaN). Needs the test extras and the references (torch 2.13.0 CPU, quantus --no-deps); it uses the tests'
helpers.
"""
import argparse
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("TQDM_DISABLE", "1")

import test_metrics as T  # noqa: E402  (installs the torchvision stub Quantus imports)

import attribution.metrics as M  # noqa: E402
from common import report_worst_errors  # noqa: E402
from nets import small_vgg  # noqa: E402
from torch_reference import to_torch  # noqa: E402


def error(ours, theirs):
    ours, theirs = np.asarray(ours, dtype=np.float64), np.asarray(theirs, dtype=np.float64)
    if ours.shape != theirs.shape or not np.array_equal(np.isnan(ours), np.isnan(theirs)):
        return np.inf
    ok = ~np.isnan(ours)
    if not ok.any():
        return 0.0
    return float((np.abs(ours[ok] - theirs[ok]) / np.maximum(np.abs(theirs[ok]), 1e-6)).max())


def cases(rng):
    side = int(rng.choice([12, 16, 20, 24]))
    model = small_vgg(num_classes=int(rng.integers(3, 8)), seed=int(rng.integers(1 << 30)), in_size=side)
    N = int(rng.integers(3, 6))
    x = rng.uniform(0, 1, (N, 3, side, side))
    y = rng.integers(0, model.forward(x).shape[1], N)
    s = np.zeros((N, 1, side, side))
    for n in range(N):
        h, w = rng.integers(2, side // 2, 2)
        i, j = rng.integers(0, side - h), rng.integers(0, side - w)
        s[n, 0, i:i + h, j:j + w] = 1
    kind = rng.choice(["signed", "positive", "rgb"])
    a = {"signed": lambda: rng.standard_normal((N, 1, side, side)),
         "positive": lambda: rng.random((N, 1, side, side)) ** 3,
         "rgb": lambda: rng.standard_normal((N, 3, side, side))}[kind]()
    return model, to_torch(model), x, y, s, a, f"{side}px, {N} images, {kind} map"


def compare(model, net, x, y, s, a):
    import quantus
    side = x.shape[2]
    step = side * side // 4
    out = {}
    one = a if a.shape[1] == 1 else a.sum(axis=1, keepdims=True)
    for name, cls in (("sparseness", "Sparseness"), ("complexity", "Complexity"),
                      ("effective_complexity", "EffectiveComplexity")):
        out[name] = error(getattr(M, name)(a), T._q(getattr(quantus, cls), net, x, y, a.copy()))
    for name, cls, settings in (("pointing_game", "PointingGame", {}),
                                ("attribution_localisation", "AttributionLocalisation", {}),
                                ("top_k_intersection", "TopKIntersection", {"k": side * side // 10}),
                                ("relevance_rank_accuracy", "RelevanceRankAccuracy", {}),
                                ("relevance_mass_accuracy", "RelevanceMassAccuracy", {}), ("auc", "AUC", {})):
        out[name] = error(getattr(M, name)(one, s, **settings),
                          T._q(getattr(quantus, cls), net, x, y, one.copy(), s, **settings))
    for name, cls, settings in (
            ("pixel_flipping", "PixelFlipping", {"features_in_step": step}),
            ("region_perturbation", "RegionPerturbation", {"patch_size": 5, "regions_evaluation": 6}),
            ("selectivity", "Selectivity", {"patch_size": 6}),
            ("faithfulness_estimate", "FaithfulnessEstimate", {"features_in_step": step}),
            ("monotonicity_correlation", "MonotonicityCorrelation", {"features_in_step": step, "nr_samples": 2,
                                                                     "perturb_baseline": "black"}),
            ("sensitivity_n", "SensitivityN", {"features_in_step": step // 4, "return_aggregate": False}),
            ("sufficiency", "Sufficiency", {}), ("completeness", "Completeness", {})):
        out[name] = error(getattr(M, name)(model, x, y, a, **settings),
                          T._q(getattr(quantus, cls), net, x, y, a.copy(), **settings))
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nets", type=int, default=6)
    parser.add_argument("--seed", type=int, default=2000)
    args = parser.parse_args(argv)
    if args.nets < 1:
        parser.error("--nets must be at least 1")
    rng = np.random.default_rng(args.seed)

    def one_net(k):
        model, net, x, y, s, a, what = cases(rng)
        return what, compare(model, net, x, y, s, a)
    report_worst_errors(args.nets, args.seed, one_net, "|ours - Quantus| / max(|Quantus|, 1e-6)")

if __name__ == "__main__":
    main()
