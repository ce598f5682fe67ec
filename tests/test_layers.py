"""Level 1: every layer's backward against numeric gradients, in float64,
and the fast layers against the naive loops."""
import numpy as np
import pytest

import minicnn as mc
from minicnn.naive import (conv2d_backward_naive, conv2d_forward_naive, maxpool2d_backward_naive,
                           maxpool2d_forward_naive)

from conftest import away_from_kinks

F64 = np.float64


@pytest.mark.parametrize("seed", range(6))
def test_conv2d_gradcheck_random_hyperparameters(seed):
    rng = np.random.default_rng(seed)
    k = int(rng.integers(1, 4))
    stride, padding = int(rng.integers(1, 3)), int(rng.integers(0, 3))
    C, F = int(rng.integers(1, 4)), int(rng.integers(1, 4))
    H, W = int(rng.integers(k + 1, 9)), int(rng.integers(k + 1, 9))     # odd sizes included
    layer = mc.Conv2d(C, F, k, stride=stride, padding=padding, dtype=F64, rng=seed)
    errors = mc.check_layer(layer, rng.standard_normal((2, C, H, W)))
    assert set(errors) == {"x", "weight", "bias"}
    assert max(errors.values()) < 1e-8, errors


@pytest.mark.parametrize("k,stride,padding", [(3, 1, 1), (3, 2, 0), (5, 2, 2), (1, 1, 0), ((2, 3), (1, 2), (1, 0))])
def test_conv2d_fast_equals_naive(rng, k, stride, padding):
    layer = mc.Conv2d(3, 4, k, stride=stride, padding=padding, dtype=F64, rng=1)
    if isinstance(k, tuple):
        # the naive loop takes square kernels and one stride: check this case numerically
        x = rng.standard_normal((2, 3, 7, 8))
        out = layer.forward(x)
        assert out.shape == (2, 4, 1 + (7 + 2 - 2) // 1, 1 + (8 - 3) // 2)
        assert max(mc.check_layer(layer, x).values()) < 1e-8
        return
    x = rng.standard_normal((2, 3, 7, 8))
    w, b = layer.params["weight"], layer.params["bias"]
    out = layer.forward(x)
    np.testing.assert_allclose(out, conv2d_forward_naive(x, w, b, stride, padding), rtol=1e-12, atol=1e-12)
    dout = rng.standard_normal(out.shape)
    dx = layer.backward(dout, param_grads=True)
    ndx, ndw, ndb = conv2d_backward_naive(dout, x, w, stride, padding)
    np.testing.assert_allclose(dx, ndx, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(layer.grads["weight"], ndw, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(layer.grads["bias"], ndb, rtol=1e-12, atol=1e-12)


def test_conv2d_output_size_formula():
    layer = mc.Conv2d(1, 1, 3, stride=2, padding=1)
    assert layer.forward(np.zeros((1, 1, 224, 224), np.float32)).shape == (1, 1, 112, 112)
    assert layer.forward(np.zeros((1, 1, 7, 5), np.float32)).shape == (1, 1, 4, 3)


@pytest.mark.parametrize("k,stride,padding", [(2, 2, 0), (3, 2, 0), (3, 2, 1), (3, 1, 1), (2, 1, 0)])
def test_maxpool_gradcheck_including_overlapping_windows(k, stride, padding):
    rng = np.random.default_rng(k * 10 + stride)
    x = away_from_kinks(rng, (2, 3, 7, 9))
    errors = mc.check_layer(mc.MaxPool2d(k, stride, padding), x)
    assert errors["x"] < 1e-8, errors


@pytest.mark.parametrize("k,stride", [(2, 2), (3, 2), (3, 1)])
def test_maxpool_fast_equals_naive_with_ties(rng, k, stride):
    x = rng.integers(0, 3, (2, 3, 9, 8)).astype(F64)      # few values: many ties
    layer = mc.MaxPool2d(k, stride)
    out = layer.forward(x)
    nout, switches = maxpool2d_forward_naive(x, k, stride)
    np.testing.assert_array_equal(out, nout)
    dout = rng.standard_normal(out.shape)
    np.testing.assert_allclose(layer.backward(dout), maxpool2d_backward_naive(dout, x.shape, switches), atol=1e-15)


def test_maxpool_tie_goes_to_first_maximum_in_row_major_order():
    x = np.zeros((1, 1, 2, 2))                               # an all-zero window, as after a ReLU
    layer = mc.MaxPool2d(2)
    layer.forward(x)
    dx = layer.backward(np.ones((1, 1, 1, 1)))
    np.testing.assert_array_equal(dx[0, 0], [[1, 0], [0, 0]])
    x = np.array([[[[0., 5.], [5., 1.]]]])
    layer.forward(x)
    np.testing.assert_array_equal(layer.backward(np.ones((1, 1, 1, 1)))[0, 0], [[0, 1], [0, 0]])


def test_maxpool_overlapping_windows_add_their_gradients():
    x = np.array([[[[0., 0., 0.], [0., 9., 0.], [0., 0., 0.]]]])   # the 9 is the max of all four 2x2 windows
    layer = mc.MaxPool2d(2, stride=1)
    layer.forward(x)
    dx = layer.backward(np.array([[[[1., 2.], [3., 4.]]]]))
    assert dx[0, 0, 1, 1] == 1 + 2 + 3 + 4
    assert np.count_nonzero(dx) == 1


@pytest.mark.parametrize("k,stride,padding", [(2, 2, 0), (3, 2, 1), (3, 1, 0)])
def test_avgpool_gradcheck(rng, k, stride, padding):
    assert mc.check_layer(mc.AvgPool2d(k, stride, padding), rng.standard_normal((2, 2, 7, 6)))["x"] < 1e-8


@pytest.mark.parametrize("size,out", [((7, 7), 7), ((9, 11), (4, 3)), ((5, 6), (7, 7)), ((14, 14), 7)])
def test_adaptive_avgpool_gradcheck(rng, size, out):
    layer = mc.AdaptiveAvgPool2d(out)
    x = rng.standard_normal((2, 3) + size)
    assert mc.check_layer(layer, x)["x"] < 1e-8


def test_adaptive_avgpool_identity_fast_path_and_bins(rng):
    layer = mc.AdaptiveAvgPool2d(7)
    x = rng.standard_normal((1, 2, 7, 7))
    assert layer.forward(x) is x
    x = np.arange(5.0).reshape(1, 1, 1, 5)
    # bins of 5 -> 3: [0,2), [1,4), [3,5) as PyTorch's floor/ceil rule gives
    np.testing.assert_allclose(mc.AdaptiveAvgPool2d((1, 3)).forward(x)[0, 0, 0], [0.5, 2.0, 3.5])


def test_linear_flatten_gradcheck(rng):
    lin = mc.Linear(12, 5, dtype=F64, rng=0)
    assert max(mc.check_layer(lin, rng.standard_normal((3, 12))).values()) < 1e-8
    assert mc.check_layer(mc.Flatten(), rng.standard_normal((2, 3, 2, 2)))["x"] < 1e-10


def test_flatten_is_c_h_w_order():
    x = np.arange(12.0).reshape(1, 3, 2, 2)
    np.testing.assert_array_equal(mc.Flatten().forward(x)[0], np.arange(12.0))


def test_relu_gradcheck_away_from_zero(rng):
    x = away_from_kinks(rng, (2, 3, 4, 4))
    assert mc.check_layer(mc.ReLU(), x)["x"] < 1e-9


def test_dropout_train_and_eval(rng):
    layer = mc.Dropout(0.5, rng=0)
    x = rng.standard_normal((1000,)).reshape(10, 100) + 3
    assert layer.forward(x) is x                     # eval mode: the identity
    layer.training = True
    out = layer.forward(x)
    kept = out != 0
    assert 0.4 < kept.mean() < 0.6
    np.testing.assert_allclose(out[kept], 2 * x[kept])
    dout = rng.standard_normal(x.shape)
    np.testing.assert_allclose(layer.backward(dout), dout * kept * 2)


def test_sequential_gradcheck_small_net(rng):
    net = mc.Sequential(mc.Conv2d(2, 3, 3, padding=1, dtype=F64, rng=0), mc.ReLU(), mc.MaxPool2d(2),
                        mc.Flatten(), mc.Linear(3 * 3 * 3, 4, dtype=F64, rng=1))
    x = rng.standard_normal((2, 2, 6, 6))
    errors = mc.check_layer(net, x)
    assert set(errors) == {"x", "0.weight", "0.bias", "4.weight", "4.bias"}
    assert max(errors.values()) < 1e-7, errors


def test_layers_never_modify_their_arguments(rng):
    net = mc.Sequential(mc.Conv2d(2, 3, 3, padding=1, dtype=F64, rng=0), mc.ReLU(), mc.MaxPool2d(3, 2, 1),
                        mc.AvgPool2d(2), mc.AdaptiveAvgPool2d(1), mc.Flatten(), mc.Dropout(0.5, rng=0),
                        mc.Linear(3, 2, dtype=F64, rng=1))
    net.train()
    x = rng.standard_normal((2, 2, 8, 8))
    x_copy, weights = x.copy(), net.state_dict()
    net.forward(rng.standard_normal(x.shape))
    reference = {name: c if not isinstance(c, np.ndarray) else c.copy() for name, c in net.caches().items()}
    out = net.forward(x)
    for rule in mc.RELU_RULES:
        dout = rng.standard_normal(out.shape)
        dout_copy = dout.copy()
        net.backward(dout, relu_rule=rule, param_grads=True, reference=reference if rule == "rescale" else None)
        np.testing.assert_array_equal(dout, dout_copy)
    np.testing.assert_array_equal(x, x_copy)
    for k, v in net.state_dict().items():
        np.testing.assert_array_equal(v, weights[k])


def test_sequential_rewrites_only_the_gradients_it_made(rng):
    """ReLUs write in place into gradients the layers made, never into the caller's dout or a view of it:
    here the caller's array reaches a ReLU directly, through Flatten, and through an eval-mode Dropout."""
    net = mc.Sequential(mc.Conv2d(2, 3, 3, padding=1, dtype=F64, rng=0), mc.ReLU(), mc.Flatten(), mc.Dropout(0.5),
                        mc.ReLU())
    net.eval()
    x = rng.standard_normal((2, 2, 5, 5))
    net.forward(rng.standard_normal(x.shape))
    reference = net.caches()
    out = net.forward(x)
    for rule in mc.RELU_RULES:
        dout = rng.standard_normal(out.shape)
        dout_copy = dout.copy()
        dx = net.backward(dout, relu_rule=rule, reference=reference if rule == "rescale" else None)
        np.testing.assert_array_equal(dout, dout_copy)
        expected = dout_copy.copy()                      # the same chain, layer by layer, nothing in place
        for _, layer in reversed(net.named_layers()):
            if isinstance(layer, mc.ReLU):
                expected = layer.backward(expected, rule=rule,
                                          reference=reference[layer.name] if rule == "rescale" else None)
            else:
                expected = layer.backward(expected)
        np.testing.assert_array_equal(dx, expected)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtype_is_preserved(rng, dtype):
    net = mc.Sequential(mc.Conv2d(1, 2, 3, rng=0), mc.ReLU(), mc.MaxPool2d(2), mc.AdaptiveAvgPool2d(2),
                        mc.Flatten(), mc.Linear(8, 3, rng=0)).to(dtype)
    x = rng.standard_normal((2, 1, 8, 8)).astype(dtype)
    net.forward(np.zeros_like(x))
    reference = net.caches()                             # the baseline's pass, for the "rescale" rule
    out = net.forward(x)
    assert out.dtype == dtype
    assert all(o.dtype == dtype for o in net.outputs.values())
    for rule in mc.RELU_RULES:
        dx = net.backward(np.ones_like(out), relu_rule=rule, reference=reference if rule == "rescale" else None)
        assert dx.dtype == dtype, rule


def test_parameter_gradients_only_when_asked(rng):
    net = mc.Sequential(mc.Conv2d(1, 2, 3, rng=0), mc.Flatten(), mc.Linear(2 * 4 * 4, 3, rng=0))
    out = net.forward(rng.standard_normal((1, 1, 6, 6)).astype(np.float32))
    net.backward(np.ones_like(out))
    assert all(grad is None for _, _, grad in net.parameters())
    net.backward(np.ones_like(out), param_grads=True)
    assert all(grad is not None and grad.shape == value.shape for _, value, grad in net.parameters())
