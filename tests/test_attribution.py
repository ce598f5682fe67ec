"""Issue 4: the attribution methods on hand-worked examples and their properties."""
import numpy as np
import pytest

import attribution as attr
import minicnn as mc


X_N = np.array([[1.0, 0.0], [-1.0, -10.0]])
G = np.array([[0.4, 1.1], [-0.5, -0.1]])


def textbook_net():
    """score = sum(G * ReLU(x)): the gradient arriving at the ReLU's output is exactly G."""
    lin = mc.Linear(4, 1, bias=False, dtype=np.float64)
    lin.params["weight"] = G.reshape(1, 4).copy()
    return mc.Sequential(mc.ReLU(), mc.Flatten(), lin)


@pytest.mark.parametrize("method,expected", [
    (attr.vanilla_gradient, [[0.4, 0.0], [0.0, 0.0]]),
    (attr.deconvnet, [[0.4, 1.1], [0.0, 0.0]]),
    (attr.guided_backprop, [[0.4, 0.0], [0.0, 0.0]]),
])
def test_textbook_example_through_the_methods(method, expected):
    a = method(textbook_net(), X_N.reshape(1, 1, 2, 2), target=0)
    np.testing.assert_array_equal(a[0, 0], expected)


def hand_net():
    """x (1, 1, 2, 2) -> 1x1 conv with weights [+1, -1] -> ReLU -> Flatten -> Linear(8, 2).

    Channel 0 is relu(x), channel 1 is relu(-x).
    logit 0 = sum(relu(x)) - sum(relu(-x)) = sum(x); logit 1 = sum(relu(-x)).
    """
    conv = mc.Conv2d(1, 2, 1, bias=False, dtype=np.float64)
    conv.params["weight"] = np.array([1.0, -1.0]).reshape(2, 1, 1, 1)
    lin = mc.Linear(8, 2, bias=False, dtype=np.float64)
    lin.params["weight"] = np.array([[1, 1, 1, 1, -1, -1, -1, -1], [0, 0, 0, 0, 1, 1, 1, 1]], dtype=np.float64)
    return mc.Sequential(conv, mc.ReLU(), mc.Flatten(), lin)


X = np.array([[1.0, -2.0], [3.0, 4.0]]).reshape(1, 1, 2, 2)


def test_hand_worked_net_all_gradient_methods():
    net = hand_net()
    # Target 0. The gradient at the ReLU output is +1 on channel 0, -1 on channel 1.
    # Vanilla: ch0 passes where x > 0, ch1 where -x > 0; through the conv: 1*ch0 - 1*ch1
    #   = [[1,0],[1,1]] - [[0,-1],[0,0]] = all ones (logit 0 is sum(x)).
    np.testing.assert_array_equal(attr.vanilla_gradient(net, X, 0)[0, 0], [[1, 1], [1, 1]])
    # DeconvNet: ch0's +1 passes everywhere, ch1's -1 nowhere: all ones.
    np.testing.assert_array_equal(attr.deconvnet(net, X, 0)[0, 0], [[1, 1], [1, 1]])
    # Guided: ch0's +1 where x > 0, ch1 nothing: [[1, 0], [1, 1]] -- the negative pixel drops out.
    np.testing.assert_array_equal(attr.guided_backprop(net, X, 0)[0, 0], [[1, 0], [1, 1]])
    np.testing.assert_array_equal(attr.gradient_x_input(net, X, 0), X)
    # Target 1: the gradient is +1 on channel 1 only.
    # Vanilla: ch1 passes where -x > 0 (the -2); the conv multiplies by -1.
    np.testing.assert_array_equal(attr.vanilla_gradient(net, X, 1)[0, 0], [[0, -1], [0, 0]])
    # DeconvNet ignores the forward mask: every pixel gets -1.
    np.testing.assert_array_equal(attr.deconvnet(net, X, 1)[0, 0], [[-1, -1], [-1, -1]])
    np.testing.assert_array_equal(attr.guided_backprop(net, X, 1)[0, 0], [[0, -1], [0, 0]])


def test_hand_worked_grad_cam_and_occlusion():
    net = hand_net()
    assert attr.default_cam_layer(net) == "1"          # the ReLU after the last conv
    # target 0: alpha = mean gradient per channel = [+1, -1]; cam = relu(relu(x) - relu(-x)) = relu(x)
    np.testing.assert_array_equal(attr.grad_cam(net, X, 0)[0], [[1, 0], [3, 4]])
    # target 1: alpha = [0, 1]; cam = relu(-x)
    np.testing.assert_array_equal(attr.grad_cam(net, X, 1)[0], [[0, 2], [0, 0]])
    # occluding one pixel (to 0) drops logit 0 = sum(x) by exactly that pixel
    np.testing.assert_allclose(attr.occlusion(net, X, 0, window=1, stride=1), X)
    # a 2x2 window with stride 1 covers everything at once: each pixel gets the full drop
    np.testing.assert_allclose(attr.occlusion(net, X, 0, window=2, stride=1), np.full_like(X, X.sum()))


def test_integrated_gradients_on_a_linear_score():
    # logit 0 = sum(x) = sum(relu(x)) - sum(relu(-x)): the path gradient is 1 wherever the
    # path point is non-zero, so IG = (x - x') * (sum of the weights of those points).
    net = hand_net()
    # Captum's trapezoid, 8 steps: weights 1/16, 1/8 x 6, 1/16 (sum 7/8). With the zero baseline the
    # first point IS the zero image: every ReLU sits at its kink and (x > 0 strictly) passes
    # nothing, so that point adds 0 and IG = x * (7/8 - 1/16) = x * 13/16.
    a, delta = attr.integrated_gradients(net, X, 0, steps=8, method="riemann_trapezoid", return_delta=True)
    np.testing.assert_allclose(a, X * 13 / 16)
    np.testing.assert_allclose(delta, [X.sum() * 13 / 16 - X.sum()])
    # baseline -x/2 keeps the path off zero (x' + a(x - x') = (1.5a - 0.5)x, zero only at a = 1/3,
    # not a grid point): IG = 1.5x * 7/8, and delta = -1.5 sum(x) / 8, Captum's trapezoid bias
    a, delta = attr.integrated_gradients(net, X, 0, baseline=-X / 2, steps=8, method="riemann_trapezoid",
                                         return_delta=True)
    np.testing.assert_allclose(a, 1.5 * X * 7 / 8)
    np.testing.assert_allclose(delta, [-1.5 * X.sum() / 8])
    # Gauss-Legendre has no node at 0 and weights summing to 1: exact for a linear score
    a, delta = attr.integrated_gradients(net, X, 0, steps=4, method="gausslegendre", return_delta=True)
    np.testing.assert_allclose(a, X, rtol=1e-12)
    assert abs(delta[0]) < 1e-12


def test_vanilla_gradient_equals_numeric_gradient():
    from nets import small_vgg
    model = small_vgg()
    x = np.random.default_rng(3).standard_normal((2, 3, 16, 16))
    grads = attr.vanilla_gradient(model, x, [1, 4])
    for n, t in enumerate([1, 4]):
        def score(xn):
            return model.forward(xn[None])[0, t]
        numeric = mc.numeric_vjp(score, x[n], np.array(1.0))
        assert mc.rel_error(grads[n], numeric) < 1e-7


def test_integrated_gradients_completeness_shrinks_with_steps():
    from nets import small_vgg
    model = small_vgg()
    x = np.random.default_rng(4).standard_normal((2, 3, 16, 16))
    deltas = [np.abs(attr.integrated_gradients(model, x, [0, 2], steps=n, method="riemann_trapezoid",
                                                       return_delta=True)[1]).max()
              for n in (8, 32, 128)]
    assert deltas[0] > deltas[1] > deltas[2]
    _, delta = attr.integrated_gradients(model, x, [0, 2], steps=64, method="gausslegendre", return_delta=True)
    logits = model.forward(x)
    assert np.abs(delta).max() < 0.02 * np.abs(logits).max()


def test_grad_cam_upsample_and_scale():
    cam = np.array([[[0.0, 1.0], [2.0, 3.0]]])
    up = attr.upsample(cam, (4, 4), mode="nearest")
    np.testing.assert_array_equal(up[0], np.kron(cam[0], np.ones((2, 2))))
    bil = attr.upsample(cam, (4, 4), mode="bilinear")
    # align_corners=False: output 1 samples source 0.25 -> 0.75*0 + 0.25*1
    np.testing.assert_allclose(bil[0, 0], [0, 0.25, 0.75, 1.0])
    np.testing.assert_allclose(attr.scale_01(cam)[0], cam[0] / 3)
    assert attr.scale_01(np.ones((1, 2, 2))).max() == 0


def test_smoothgrad_wraps_any_method_and_is_seeded():
    net = hand_net()
    x = np.repeat(X, 2, axis=0)
    a = attr.smoothgrad(attr.vanilla_gradient, net, x, target=0, n_samples=8, seed=1, batch_size=3)
    np.testing.assert_allclose(a, np.ones_like(x))      # logit 0 = sum(x): the gradient ignores noise
    b = attr.smoothgrad(attr.grad_cam, net, x, target=1, n_samples=6, seed=2, batch_size=4)
    assert b.shape == (2, 2, 2)
    np.testing.assert_array_equal(b, attr.smoothgrad(attr.grad_cam, net, x, target=1, n_samples=6, seed=2,
                                                  batch_size=4))
    # zero noise: every variant reduces to the method itself (var: zero)
    zero = np.zeros((2, 5) + X.shape[1:])
    g = attr.guided_backprop(net, x, 1)
    np.testing.assert_allclose(attr.smoothgrad(attr.guided_backprop, net, x, 1, n_samples=5, noise=zero), g)
    np.testing.assert_allclose(attr.smoothgrad(attr.guided_backprop, net, x, 1, n_samples=5, noise=zero,
                                               variant="squared"), g ** 2)
    np.testing.assert_allclose(attr.smoothgrad(attr.guided_backprop, net, x, 1, n_samples=5, noise=zero,
                                               variant="var"), 0 * g)


def test_smoothgrad_noise_scale_follows_the_input_range():
    net = hand_net()
    x = X * 10                                           # range 60: sigma = 0.15 * 60 = 9
    rng = np.random.default_rng(0)
    expected = 0.15 * (x.max() - x.min()) * rng.standard_normal((1, 200) + x.shape[1:])
    a = attr.smoothgrad(attr.gradient_x_input, net, x, 0, n_samples=200, seed=0)
    np.testing.assert_allclose(a, (x[:, None] + expected).mean(axis=1))


def test_smoothgrad_draws_noise_batch_by_batch_as_one_draw():
    """The noise is drawn per batch (memory), in the order of one (N, n_samples, ...) draw: batches that cut
    across images give the same numbers as passing that one draw, each image scaled by its own range."""
    net = hand_net()
    x = np.concatenate([X, 3 * X, -X + 1])                  # three images, three ranges
    sigma = 0.15 * (x.reshape(3, -1).max(axis=1) - x.reshape(3, -1).min(axis=1))
    one_draw = np.random.default_rng(4).standard_normal((3, 7) + X.shape[1:]) * sigma[:, None, None, None, None]
    for batch_size in (1, 4, 21, 50):
        a = attr.smoothgrad(attr.gradient_x_input, net, x, 0, n_samples=7, seed=4, batch_size=batch_size)
        np.testing.assert_allclose(a, attr.smoothgrad(attr.gradient_x_input, net, x, 0, n_samples=7,
                                                      noise=one_draw), rtol=1e-12, atol=1e-12)


def test_integrated_gradients_same_for_every_batch_size():
    """Path points are built batch by batch; batches that cut across images change nothing."""
    from nets import small_vgg
    model = small_vgg()
    x = np.random.default_rng(6).random((3, 3, 16, 16))
    reference = attr.integrated_gradients(model, x, [0, 1, 2], steps=7, batch_size=21)
    for batch_size in (1, 4, 10):
        np.testing.assert_allclose(attr.integrated_gradients(model, x, [0, 1, 2], steps=7, batch_size=batch_size),
                                   reference, rtol=1e-10, atol=1e-12)


def test_default_batches_are_sized_by_the_activations_kept(monkeypatch):
    """batch_size=None: as many images as keep every layer's output within the budget; given sizes are kept."""
    from nets import small_vgg
    from attribution import methods
    model = small_vgg()
    x = np.random.default_rng(7).random((2, 3, 16, 16))
    model.forward(x)
    per_image = sum(out.nbytes for out in model.outputs.values()) / 2
    assert methods.batch_for(model, 2, None) == 64                  # a small net: the cap
    monkeypatch.setattr(methods, "ACTIVATION_BUDGET", int(3.5 * per_image))
    assert methods.batch_for(model, 2, None) == 3
    monkeypatch.setattr(methods, "ACTIVATION_BUDGET", 1)
    assert methods.batch_for(model, 2, None) == 1                   # never below one image
    assert methods.batch_for(model, 2, 7) == 7
    for bad in (0, -1, 2.5, "10", True):
        with pytest.raises(ValueError, match="batch_size must be an int >= 1"):
            attr.smoothgrad(attr.vanilla_gradient, model, x, 0, n_samples=2, batch_size=bad)
    monkeypatch.setattr(methods, "ACTIVATION_BUDGET", int(3.5 * per_image))     # batches of 3 across images
    np.testing.assert_allclose(attr.smoothgrad(attr.vanilla_gradient, model, x, [0, 1], n_samples=5, seed=3),
                               attr.smoothgrad(attr.vanilla_gradient, model, x, [0, 1], n_samples=5, seed=3,
                                               batch_size=10), rtol=1e-10, atol=1e-12)


def test_methods_are_batched():
    from nets import small_vgg
    model = small_vgg()
    x = np.random.default_rng(5).standard_normal((3, 3, 16, 16))
    for name, method in attr.METHODS.items():
        if name in ("smoothgrad", "gradient_shap", "lime", "kernel_shap"):  # one random generator per batch, by design
            continue
        together = method(model, x, [0, 1, 2])
        alone = np.concatenate([method(model, x[i:i + 1], i) for i in range(3)])
        np.testing.assert_allclose(together, alone, rtol=1e-10, atol=1e-12, err_msg=name)


def test_bad_inputs_are_value_errors():
    net = hand_net()
    with pytest.raises(ValueError, match=r"out of range: the model has 2 classes \(0 to 1\)"):
        attr.vanilla_gradient(net, X, target=2)
    with pytest.raises(ValueError, match=r"target has 3 entries for 1 images"):
        attr.guided_backprop(net, X, target=[0, 1, 0])
    with pytest.raises(ValueError, match=r"must have shape \(N, C, H, W\), got \(1, 2, 2\); for one image use x\[None\]"):
        attr.deconvnet(net, X[0], target=0)
    bad = X.copy()
    bad[0, 0, 0, 0] = np.nan
    for method in [attr.vanilla_gradient, attr.grad_cam, attr.occlusion]:
        with pytest.raises(ValueError, match="NaN or infinity"):
            method(net, bad, 0)
    with pytest.raises(ValueError, match=r"'features\.9' is not a layer of this model; usable layers: 0, 1"):
        attr.grad_cam(net, X, 0, layer="features.9")
    with pytest.raises(ValueError, match=r"'2' has no spatial output; usable layers: 0, 1"):
        attr.grad_cam(net, X, 0, layer="2")
    with pytest.raises(ValueError, match="unknown integration method 'simpson'"):
        attr.integrated_gradients(net, X, 0, method="simpson")
    with pytest.raises(ValueError, match="unknown SmoothGrad variant"):
        attr.smoothgrad(attr.vanilla_gradient, net, X, 0, variant="median")
    with pytest.raises(ValueError, match="unknown upsampling mode 'cubic'"):
        attr.guided_grad_cam(net, X, 0, mode="cubic")
