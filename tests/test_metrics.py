"""Issue 22: attribution.metrics equal to Quantus 0.6.0 on the same inputs (float64; Quantus given the torch
twin of a minicnn net, or the minicnn net itself through a callable), with Quantus's defaults and with other
settings; hand-worked cases; and the refusals."""
import numpy as np
import pytest

import attribution.metrics as M
from conftest import needs_skimage, torch
from nets import small_vgg

try:                                                   # Quantus imports torchvision at import time: the stub
    if torch is None:
        raise ImportError
    import sys
    if "torchvision" not in sys.modules:
        from torch_resnet import install_torchvision_stub
        install_torchvision_stub()
    import quantus
except Exception:  # pragma: no cover - depends on the machine
    quantus = None

needs_quantus = pytest.mark.skipif(quantus is None, reason="Quantus is not installed (the metrics' reference: "
                                                           "pip install --no-deps quantus, with torch)")
TOL = 1e-8


def _close(ours, theirs, tol=TOL):
    ours, theirs = np.asarray(ours, dtype=np.float64), np.asarray(theirs, dtype=np.float64)
    assert ours.shape == theirs.shape, (ours.shape, theirs.shape)
    assert np.array_equal(np.isnan(ours), np.isnan(theirs)), (ours, theirs)
    ok = ~np.isnan(ours)
    err = np.abs(ours[ok] - theirs[ok]) / np.maximum(np.abs(theirs[ok]), 1e-6)
    assert err.size == 0 or err.max() <= tol, (err.max(), ours, theirs)


@pytest.fixture(scope="module")
def case():
    """A small VGG-style net (minicnn and its torch twin), 3 images of 16x16, maps of three kinds."""
    from torch_reference import to_torch
    model = small_vgg(num_classes=5, seed=4, in_size=16)
    rng = np.random.default_rng(21)
    x = rng.uniform(0, 1, (3, 3, 16, 16))
    y = np.array([1, 3, 0])
    s = np.zeros((3, 1, 16, 16))
    s[0, 0, 3:9, 4:11] = 1
    s[1, 0, 8:15, 1:6] = 1
    s[2, 0, 0:5, 10:16] = 1
    maps = {"signed": rng.standard_normal((3, 1, 16, 16)),
            "positive": np.abs(rng.standard_normal((3, 1, 16, 16))) ** 2,
            "rgb": rng.standard_normal((3, 3, 16, 16))}
    return model, to_torch(model), x, y, s, maps


def _q(metric_class, net, x, y, a, s=None, **settings):
    """Quantus's scores (its __call__ with the same settings; disable_warnings)."""
    np.trapz = getattr(np, "trapz", np.trapezoid)
    call = {k: settings.pop(k) for k in ("softmax", "explain_func") if k in settings}
    metric = metric_class(disable_warnings=True, **settings)
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)         # Quantus feeds torch.Tensor(x): float64 only this way
    try:
        return metric(model=net, x_batch=x, y_batch=y, a_batch=a, s_batch=s, device="cpu", **call)
    finally:
        torch.set_default_dtype(before)            # not for the tests that run after these


# --- complexity and localisation: model-free ---

@needs_quantus
@pytest.mark.parametrize("kind", ["signed", "positive", "rgb"])
@pytest.mark.parametrize("name,cls,settings", [
    ("sparseness", "Sparseness", {}), ("complexity", "Complexity", {}),
    ("effective_complexity", "EffectiveComplexity", {}), ("effective_complexity", "EffectiveComplexity",
                                                          {"eps": 0.3}),
    ("sparseness", "Sparseness", {"normalise": False})])
def test_complexity_equals_quantus(case, kind, name, cls, settings):
    model, net, x, y, s, maps = case
    a = maps[kind]
    _close(getattr(M, name)(a, **settings), _q(getattr(quantus, cls), net, x, y, a.copy(), **settings))


@needs_quantus
@pytest.mark.parametrize("kind", ["signed", "positive"])
@pytest.mark.parametrize("name,cls,settings", [
    ("pointing_game", "PointingGame", {}), ("attribution_localisation", "AttributionLocalisation", {}),
    ("attribution_localisation", "AttributionLocalisation", {"positive_attributions": True, "abs": False}),
    ("top_k_intersection", "TopKIntersection", {"k": 30}),
    ("top_k_intersection", "TopKIntersection", {"k": 50, "concept_influence": True}),
    ("relevance_rank_accuracy", "RelevanceRankAccuracy", {}),
    ("relevance_mass_accuracy", "RelevanceMassAccuracy", {}), ("auc", "AUC", {})])
def test_localisation_equals_quantus(case, kind, name, cls, settings):
    model, net, x, y, s, maps = case
    a = maps[kind]
    _close(getattr(M, name)(a, s, **settings), _q(getattr(quantus, cls), net, x, y, a.copy(), s, **settings))


@needs_quantus
def test_localisation_with_an_empty_mask_and_tied_maxima(case):
    model, net, x, y, s, maps = case
    s = s.copy()
    s[1] = 0                                                    # an empty mask
    a = np.round(maps["positive"], 1)                           # ties
    a[2, 0, 0, 10] = a[2, 0, 15, 0] = a.max()                   # the maximum tied on and off the object
    for name, cls in (("pointing_game", "PointingGame"), ("relevance_mass_accuracy", "RelevanceMassAccuracy"),
                      ("relevance_rank_accuracy", "RelevanceRankAccuracy"), ("auc", "AUC")):
        _close(getattr(M, name)(a, s), _q(getattr(quantus, cls), net, x, y, a.copy(), s))
    assert M.pointing_game(a, s)[1] and np.isnan(M.pointing_game(a, s, paper=True)[1])


# --- faithfulness, axiomatic ---

FAITHFULNESS = [
    ("pixel_flipping", "PixelFlipping", {"features_in_step": 16}),
    ("pixel_flipping", "PixelFlipping", {"features_in_step": 32, "perturb_baseline": "mean",
                                         "return_auc_per_sample": True}),
    ("region_perturbation", "RegionPerturbation", {}),
    ("region_perturbation", "RegionPerturbation", {"patch_size": 4, "order": "lerf"}),
    ("region_perturbation", "RegionPerturbation", {"patch_size": 5, "regions_evaluation": 10}),
    ("selectivity", "Selectivity", {}), ("selectivity", "Selectivity", {"patch_size": 5}),
    ("faithfulness_estimate", "FaithfulnessEstimate", {"features_in_step": 16}),
    ("monotonicity_correlation", "MonotonicityCorrelation", {"features_in_step": 64, "perturb_baseline": "black",
                                                             "nr_samples": 3}),
    ("sensitivity_n", "SensitivityN", {"features_in_step": 8}),
    ("sensitivity_n", "SensitivityN", {"features_in_step": 16, "return_aggregate": False}),
    ("sufficiency", "Sufficiency", {}), ("sufficiency", "Sufficiency", {"threshold": 0.8}),
    ("completeness", "Completeness", {}),
]


@needs_quantus
@pytest.mark.parametrize("kind", ["signed", "rgb"])
@pytest.mark.parametrize("name,cls,settings", FAITHFULNESS, ids=[f"{n}-{i}" for i, (n, _, _) in
                                                                  enumerate(FAITHFULNESS)])
def test_faithfulness_equals_quantus(case, kind, name, cls, settings):
    model, net, x, y, s, maps = case
    a = maps[kind]
    ours = getattr(M, name)(model, x, y, a, **settings)
    theirs = _q(getattr(quantus, cls), net, x, y, a.copy(), **settings)
    if name == "sensitivity_n" and settings.get("return_aggregate", True):
        theirs, = theirs                                    # one number for the batch (Quantus: a list of one)
    _close(ours, theirs)


@needs_quantus
def test_seeded_monotonicity_correlation_equals_quantus_with_the_same_seed(case):
    model, net, x, y, s, maps = case
    a = maps["signed"]
    ours = M.monotonicity_correlation(model, x, y, a, features_in_step=64, nr_samples=4, seed=5)
    np.random.seed(5)
    _close(ours, _q(quantus.MonotonicityCorrelation, net, x, y, a.copy(), features_in_step=64, nr_samples=4))


@needs_quantus
@needs_skimage
def test_non_sensitivity_and_irof_equal_quantus_on_grey_images(case):
    """IROF runs only on one-channel images in Quantus; non-sensitivity removes every feature alone."""
    import minicnn as mc
    from torch_reference import to_torch
    r = np.random.default_rng(3)
    model = mc.Sequential({"features": mc.Sequential(mc.Conv2d(1, 4, 3, padding=1, rng=r), mc.ReLU(),
                                                     mc.MaxPool2d(2)),
                           "flatten": mc.Flatten(), "classifier": mc.Linear(4 * 36, 4, rng=r)}).to(np.float64)
    net = to_torch(model)
    x = r.uniform(0, 1, (3, 1, 12, 12))
    y = np.array([0, 2, 1])
    a = r.standard_normal((3, 1, 12, 12))
    a[0, 0, :3] = 0                                              # features below eps
    _close(M.non_sensitivity(model, x, y, a), _q(quantus.NonSensitivity, net, x, y, a.copy()))
    from skimage.segmentation import slic
    segments = np.stack([slic(np.moveaxis(im, 0, -1).astype("double"), start_label=0) for im in x])
    ours = M.irof(model, x, y, a, segments=segments)
    theirs = _q(quantus.IROF, net, x, y, a.copy(), return_aggregate=False)
    _close(ours, theirs)


@needs_quantus
@pytest.mark.parametrize("name,cls", [("max_sensitivity", "MaxSensitivity"), ("avg_sensitivity", "AvgSensitivity")])
def test_robustness_equals_quantus_with_the_same_noise(case, name, cls):
    model, net, x, y, s, maps = case
    import attribution as attr

    def ours_explain(m, xs, ys):
        return attr.vanilla_gradient(model, xs, ys).sum(axis=1, keepdims=True)

    def their_explain(model, inputs, targets, **kwargs):
        return ours_explain(None, np.asarray(inputs), np.asarray(targets))
    a = ours_explain(None, x, y)
    np.random.seed(9)
    theirs = _q(getattr(quantus, cls), net, x, y, a.copy(), nr_samples=6, explain_func=their_explain)
    ours = getattr(M, name)(model, x, y, a, ours_explain, nr_samples=6, seed=9)
    _close(ours, theirs)
    noise = np.random.RandomState(9).uniform(-0.2, 0.2, size=(6,) + x.shape)
    _close(getattr(M, name)(model, x, y, a, ours_explain, noise=noise), theirs)


# --- hand-worked examples (no reference needed) ---

def test_sparseness_and_complexity_by_hand():
    one_hot = np.zeros((1, 1, 2, 2))
    one_hot[0, 0, 0, 0] = 1.0
    flat = np.ones((1, 1, 2, 2))
    flat[0, 0, 0, 0] = 2.0                                      # not constant: Quantus refuses constant maps
    # Gini of (1, 0, 0, 0) (+1e-7 each): close to 1 - 1/n = 0.75
    assert abs(M.sparseness(one_hot)[0] - 0.75) < 1e-6
    # entropy of (1, 0, 0, 0) is 0; of (2, 1, 1, 1)/5: -sum p log p
    assert abs(M.complexity(one_hot)[0]) < 1e-9
    p = np.array([0.4, 0.2, 0.2, 0.2])
    assert abs(M.complexity(flat)[0] - -(p * np.log(p + 1e-12)).sum()) < 1e-12
    assert M.effective_complexity(flat, eps=0.6)[0] == 1            # 2/2 = 1 > 0.6, 1/2 = 0.5 is not


def test_localisation_by_hand():
    a = np.array([[[[0.1, 0.9], [0.3, 0.2]]]])
    s = np.array([[[[0, 1], [1, 0]]]])
    assert M.pointing_game(a, s)[0]
    assert abs(M.relevance_mass_accuracy(a, s)[0] - 1.2 / 1.5) < 1e-12
    assert M.relevance_rank_accuracy(a, s)[0] == 1.0               # the two highest are the two object pixels
    assert M.auc(a, s)[0] == 1.0


def test_refusals_name_the_problem(case):
    model, net, x, y, s, maps = case
    with pytest.raises(ValueError, match="all 0"):
        M.sparseness(np.zeros((2, 1, 4, 4)))
    with pytest.raises(ValueError, match="constant"):
        M.sparseness(np.full((2, 1, 4, 4), 0.5))
    with pytest.raises(ValueError, match="one channel"):
        M.pointing_game(maps["rgb"], s)
    with pytest.raises(ValueError, match="masks"):
        M.auc(maps["signed"], s[:, :, :8])
    with pytest.raises(ValueError, match="below the image's 256 pixels"):
        M.top_k_intersection(maps["signed"], s)                      # the default k=1000 on 16x16 images
    with pytest.raises(ValueError, match="perturb_baseline"):
        M.pixel_flipping(model, x, y, maps["signed"], perturb_baseline="grey")
    with pytest.raises(ValueError, match="class indices"):
        M.pixel_flipping(model, x, y[:2], maps["signed"])
    with pytest.raises(ValueError, match="NaN"):
        M.complexity(np.full((1, 1, 2, 2), np.nan))
    with pytest.raises(ValueError, match="pass x="):
        M.attribution_localisation(maps["signed"], s, weighted=True)
