"""Level 2 for attribution: every method against Captum in float64 on a small
VGG-like random net, 2 images with 2 different targets."""
import numpy as np
import pytest

import attribution as attr
import minicnn as mc

from conftest import needs_captum, torch

pytestmark = needs_captum

TOL = 1e-8
TARGETS = [1, 3]


@pytest.fixture(scope="module")
def setup():
    from nets import small_vgg
    from torch_reference import to_torch
    model = small_vgg()
    net = to_torch(model)
    x = np.random.default_rng(7).standard_normal((2, 3, 16, 16))
    return model, net, x, torch.tensor(x)


def _check(ours, theirs, tol=TOL):
    theirs = theirs.detach().numpy()
    assert ours.shape == theirs.shape
    assert np.abs(theirs).max() > 0
    assert mc.rel_error(ours, theirs) <= tol, mc.rel_error(ours, theirs)


@pytest.mark.parametrize("ours,captum_name", [
    (attr.vanilla_gradient, "Saliency"), (attr.gradient_x_input, "InputXGradient"),
    (attr.deconvnet, "Deconvolution"), (attr.guided_backprop, "GuidedBackprop"),
])
def test_gradient_methods(setup, ours, captum_name):
    import captum.attr as ca
    model, net, x, tx = setup
    kwargs = {"abs": False} if captum_name == "Saliency" else {}
    _check(ours(model, x, TARGETS), getattr(ca, captum_name)(net).attribute(tx, target=TARGETS, **kwargs))


def test_grad_cam(setup):
    from captum.attr import LayerGradCam
    model, net, x, tx = setup
    assert attr.default_cam_layer(model) == "features.9"
    theirs = LayerGradCam(net, net.features[9]).attribute(tx, target=TARGETS, relu_attributions=True)
    _check(attr.grad_cam(model, x, TARGETS)[:, None], theirs)
    # another layer: the conv before the last pool (signed maps are not rectified by Captum by default)
    theirs = LayerGradCam(net, net.features[5]).attribute(tx, target=TARGETS, relu_attributions=True)
    _check(attr.grad_cam(model, x, TARGETS, layer="features.5")[:, None], theirs)


def test_guided_grad_cam_nearest(setup):
    from captum.attr import GuidedGradCam
    model, net, x, tx = setup
    theirs = GuidedGradCam(net, net.features[9]).attribute(tx, target=TARGETS)
    _check(attr.guided_grad_cam(model, x, TARGETS, mode="nearest"), theirs)


def test_bilinear_upsampling_matches_interpolate():
    maps = np.random.default_rng(0).standard_normal((2, 5, 7))
    for size, mode in [((16, 16), "bilinear"), ((11, 23), "bilinear"), ((16, 16), "nearest"), ((9, 30), "nearest")]:
        kwargs = {"align_corners": False} if mode == "bilinear" else {}
        theirs = torch.nn.functional.interpolate(torch.tensor(maps)[:, None], size=size, mode=mode, **kwargs)
        _check(attr.upsample(maps, size, mode), theirs[:, 0], tol=1e-12)


# The zero baseline makes every early feature map constant: max-pool windows tie exactly, in both
# libraries, and the first-maximum rule decides. (A constant non-zero baseline would not do: there the
# "equal" values differ by rounding, which each library breaks its own way.)
@pytest.mark.parametrize("method,steps,baseline", [
    ("riemann_trapezoid", 32, "zero"), ("riemann_left", 16, "zero"), ("riemann_trapezoid", 16, "random"),
    ("riemann_middle", 8, "random"), ("gausslegendre", 16, "zero")])
def test_integrated_gradients(setup, method, steps, baseline):
    from captum.attr import IntegratedGradients
    model, net, x, tx = setup
    baseline = np.zeros_like(x) if baseline == "zero" else np.random.default_rng(1).uniform(-0.5, 0.5, x.shape)
    ours, delta = attr.integrated_gradients(model, x, TARGETS, baseline=baseline, steps=steps, method=method,
                                            batch_size=7, return_delta=True)
    theirs, their_delta = IntegratedGradients(net).attribute(
        tx, baselines=torch.tensor(baseline), target=TARGETS, n_steps=steps, method=method,
        return_convergence_delta=True)
    # Captum casts the step weights to float32: exact only where they are powers of two
    exact = method.startswith("riemann") and steps & (steps - 1) == 0
    _check(ours, theirs, TOL if exact else 1e-6)
    np.testing.assert_allclose(delta, their_delta.numpy(), atol=1e-6 * np.abs(delta).max() + 1e-12)


@pytest.mark.parametrize("window,stride", [(4, 4), (5, 3), ((3, 6), (2, 4))])
def test_occlusion(setup, window, stride):
    from captum.attr import Occlusion
    model, net, x, tx = setup
    wh, ww = (window, window) if np.isscalar(window) else window
    sh, sw = (stride, stride) if np.isscalar(stride) else stride
    theirs = Occlusion(net).attribute(tx, sliding_window_shapes=(3, wh, ww), strides=(3, sh, sw), target=TARGETS,
                                      baselines=0.0)
    # Captum divides by the window counts after a float32 cast: compare at 1e-6
    _check(attr.occlusion(model, x, TARGETS, window=window, stride=stride, batch_size=5), theirs, tol=1e-6)


@pytest.mark.parametrize("variant,nt_type", [("mean", "smoothgrad"), ("squared", "smoothgrad_sq"),
                                             ("var", "vargrad")])
@pytest.mark.parametrize("method,captum_name", [(attr.vanilla_gradient, "Saliency"),
                                                (attr.guided_backprop, "GuidedBackprop")])
def test_smoothgrad_equals_noise_tunnel_with_the_same_noise(setup, monkeypatch, variant, nt_type, method,
                                                            captum_name):
    import captum.attr as ca
    model, net, x, tx = setup
    n = 6
    noise = np.random.default_rng(11).standard_normal((2, n) + x.shape[1:]) * 0.3
    # Captum draws torch.normal(0, stdev) once, image-major (input.repeat_interleave(n)): hand it ours
    monkeypatch.setattr(torch, "normal", lambda mean, std: torch.tensor(noise.reshape((2 * n,) + x.shape[1:])))
    kwargs = {"abs": False} if captum_name == "Saliency" else {}
    theirs = ca.NoiseTunnel(getattr(ca, captum_name)(net)).attribute(
        tx, nt_type=nt_type, nt_samples=n, stdevs=0.3, target=TARGETS, **kwargs)
    ours = attr.smoothgrad(method, model, x, TARGETS, n_samples=n, noise=noise, variant=variant, batch_size=4)
    _check(ours, theirs)
