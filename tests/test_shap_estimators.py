"""Issue 21: DeepLIFT-SHAP and GradientSHAP, equal to Captum's DeepLiftShap and GradientShap in float64."""
import numpy as np
import pytest

import attribution as attr
import minicnn as mc
from conftest import needs_captum, torch
from nets import small_vgg


def avgpool_net(seed=0, width=6):
    """A VGG-style net with average pooling (where Captum's DeepLIFT and ours agree to the last digit)."""
    r = np.random.default_rng(seed)
    return mc.Sequential({
        "features": mc.Sequential(mc.Conv2d(3, width, 3, padding=1, rng=r), mc.ReLU(), mc.AvgPool2d(2),
                                  mc.Conv2d(width, 8, 3, padding=1, rng=r), mc.ReLU(), mc.AvgPool2d(2)),
        "flatten": mc.Flatten(),
        "classifier": mc.Sequential(mc.Linear(8 * 16, 12, rng=r), mc.ReLU(), mc.Linear(12, 5, rng=r))}
    ).to(np.float64)


@pytest.fixture
def data():
    rng = np.random.default_rng(11)
    return rng.uniform(0, 1, (2, 3, 16, 16)), rng.uniform(0, 1, (4, 3, 16, 16))


@needs_captum
@pytest.mark.parametrize("seed,width", [(0, 6), (3, 9)])
def test_deeplift_shap_equals_captum(data, seed, width):
    from captum.attr import DeepLiftShap
    from torch_reference import to_torch
    model = avgpool_net(seed, width)
    x, baselines = data
    theirs = DeepLiftShap(to_torch(model)).attribute(torch.tensor(x), baselines=torch.tensor(baselines),
                                                     target=[1, 3]).detach().numpy()
    np.testing.assert_allclose(attr.deeplift_shap(model, x, [1, 3], baselines), theirs, rtol=1e-9,
                               atol=1e-12 * np.abs(theirs).max())


def test_deeplift_shap_sums_to_the_output_minus_the_mean_baseline_output(data):
    model = small_vgg()                                          # max-pools too: conservation holds everywhere
    x, baselines = data
    a = attr.deeplift_shap(model, x, [1, 3], baselines)
    expected = model.forward(x)[[0, 1], [1, 3]] - model.forward(baselines)[:, [1, 3]].mean(axis=0)
    np.testing.assert_allclose(a.reshape(2, -1).sum(axis=1), expected, rtol=1e-9)


def captum_gradient_shap(model, x, targets, baselines, n_samples):
    """Captum's GradientShap of a minicnn model (through its torch twin), and the draws it made, as
    ``attr.gradient_shap(draws=...)`` takes them: it draws with np.random.choice and np.random.uniform,
    which are wrapped here to record what they return."""
    from captum.attr import GradientShap
    from torch_reference import to_torch
    draws = {}
    real_choice, real_uniform = np.random.choice, np.random.uniform

    def choice(*args, **kwargs):
        draws["index"] = real_choice(*args, **kwargs)
        return draws["index"]

    def uniform(*args, **kwargs):
        draws["alphas"] = real_uniform(*args, **kwargs)
        return draws["alphas"]
    np.random.choice, np.random.uniform = choice, uniform
    try:
        theirs = GradientShap(to_torch(model)).attribute(torch.tensor(x), baselines=torch.tensor(baselines),
                                                         target=targets, n_samples=n_samples,
                                                         stdevs=0.0).detach().numpy()
    finally:
        np.random.choice, np.random.uniform = real_choice, real_uniform
    return theirs, (np.asarray(draws["index"]).ravel(), np.asarray(draws["alphas"]), None)


@needs_captum
def test_gradient_shap_equals_captum_with_the_same_draws(data):
    model = small_vgg()
    x, baselines = data
    np.random.seed(0)
    theirs, draws = captum_gradient_shap(model, x, [1, 3], baselines, n_samples=7)
    ours = attr.gradient_shap(model, x, [1, 3], baselines, n_samples=7, draws=draws)
    np.testing.assert_allclose(ours, theirs, rtol=1e-9, atol=1e-12 * np.abs(theirs).max())


def test_gradient_shap_approaches_integrated_gradients_for_one_baseline():
    model = small_vgg()
    x = np.random.default_rng(5).uniform(0, 1, (1, 3, 16, 16))
    baseline = np.zeros((1, 3, 16, 16))
    ig = attr.integrated_gradients(model, x, 2, baseline=baseline[0], steps=256, method="riemann_middle")
    shap = attr.gradient_shap(model, x, 2, baseline, n_samples=4000, seed=1)
    # a Monte Carlo estimate of the same path integral: close, and closer with more samples
    err = np.abs(shap - ig).sum() / np.abs(ig).sum()
    err_few = np.abs(attr.gradient_shap(model, x, 2, baseline, n_samples=100, seed=1) - ig).sum() / np.abs(ig).sum()
    assert err < 0.1 and err < err_few, (err, err_few)


def test_gradient_shap_is_seeded_and_refuses_bad_settings(data):
    model = small_vgg()
    x, baselines = data
    a = attr.gradient_shap(model, x, [1, 3], baselines, n_samples=5, stdevs=0.1, seed=4)
    np.testing.assert_array_equal(a, attr.gradient_shap(model, x, [1, 3], baselines, n_samples=5, stdevs=0.1, seed=4))
    with pytest.raises(ValueError, match="stdevs must be a finite number >= 0"):
        attr.gradient_shap(model, x, 0, baselines, stdevs=-1)
    with pytest.raises(ValueError, match="baselines must be an array of images"):
        attr.deeplift_shap(model, x, 0, baselines[0])
