"""Issue 25: the Winograd route (minicnn.winograd) computes the same convolutions as the direct route: every
tile size against the loop reference in float64, odd sizes, batch > 1, forward and input gradient, inside a
model with the route on, and the transformed weights follow the weights they came from."""
import os

import numpy as np
import pytest

import minicnn as mc
from minicnn import conv_ops, winograd
from minicnn.naive import conv2d_backward_naive, conv2d_forward_naive
from minicnn.winograd import conv3x3, conv3x3_input_grad


def _rel(a, b):
    return np.abs(a - b).max() / np.abs(b).max()


@pytest.mark.parametrize("block", [winograd.BLOCK, 1])
@pytest.mark.parametrize("m", [2, 4])
@pytest.mark.parametrize("shape", [(1, 3, 2, 8, 8), (2, 5, 3, 9, 11), (3, 2, 4, 13, 7), (1, 4, 4, 5, 6),
                                   (2, 3, 2, 1, 2)])
def test_every_tile_size_equals_the_loops_in_float64(m, shape, block, monkeypatch):
    """block 1: one band of tile rows (or channels) at a time, so that the input gradient's overlapping tiles
    meet across bands."""
    monkeypatch.setattr(winograd, "BLOCK", block)
    N, C, F, H, W = shape
    rng = np.random.default_rng(sum(shape) + m)
    x, w, b = rng.standard_normal((N, C, H, W)), rng.standard_normal((F, C, 3, 3)), rng.standard_normal(F)
    out = conv2d_forward_naive(x, w, b, 1, 1)
    assert _rel(winograd.conv3x3(x, w, b, m=m), out) < 1e-13
    dout = rng.standard_normal(out.shape)
    dx, _, _ = conv2d_backward_naive(dout, x, w, 1, 1)
    assert _rel(winograd.conv3x3_input_grad(dout, w, m=m), dx) < 1e-13


def test_the_input_gradient_is_the_transpose_and_shares_the_forward_weights():
    """<conv(x), y> = <x, conv^T(y)> for the transposed steps, and the two directions use one transformed copy
    of the weights (one cache entry per layer and tile size)."""
    rng = np.random.default_rng(7)
    x, w, y = (rng.standard_normal(shape) for shape in [(2, 6, 11, 9), (5, 6, 3, 3), (2, 5, 11, 9)])
    winograd.forget()
    for m in (2, 4):
        left = np.vdot(winograd.conv3x3(x, w, m=m), y)
        right = np.vdot(x, winograd.conv3x3_input_grad(y, w, m=m))
        assert abs(left - right) < 1e-12 * abs(left)
    assert sorted(key[1] for key in winograd._cache if key[0] == id(w)) == [2, 4]
    winograd.forget(w)
    assert not winograd._cache


def test_the_1d_algorithm_on_numbers():
    """F(2, 3) as the module's docstring writes it: four multiplications for two outputs."""
    d, g = np.array([1.0, 2.0, 3.0, 4.0]), np.array([0.5, -1.0, 2.0])
    BT, G, AT = winograd.TRANSFORMS[2]
    y = AT @ ((G @ g) * (BT @ d))
    np.testing.assert_allclose(y, [d[0:3] @ g, d[1:4] @ g], rtol=1e-15)


def test_the_route_is_taken_where_it_pays_and_the_switches_work():
    """On by default (MINICNN_WINOGRAD=0 turns it off) for the wide layers on small images where it was
    measured to win; the switches force either route."""
    assert winograd._enabled == (os.environ.get("MINICNN_WINOGRAD", "1") != "0")
    with winograd.enabled():
        assert winograd.pays(256, 256, (3, 3), (1, 1), (1, 1), 28, 28)
        assert winograd.pays(512, 512, (3, 3), (1, 1), (1, 1), 8, 8) and winograd.pays(256, 512, (3, 3), (1, 1),
                                                                                        (1, 1), 56, 60)
        assert not winograd.pays(255, 512, (3, 3), (1, 1), (1, 1), 28, 28)          # too few input channels
        assert not winograd.pays(512, 128, (3, 3), (1, 1), (1, 1), 28, 28)          # ... or output channels
        assert not winograd.pays(256, 256, (3, 3), (2, 1), (1, 1), 28, 28)          # stride 2
        assert not winograd.pays(256, 256, (3, 3), (1, 1), (0, 0), 28, 28)          # no padding
        assert not winograd.pays(256, 256, (5, 5), (1, 1), (1, 1), 28, 28)
        assert not winograd.pays(256, 256, (3, 3), (1, 1), (1, 1), 7, 32)           # too small
        assert not winograd.pays(256, 256, (3, 3), (1, 1), (1, 1), 112, 112)        # too large
        with winograd.disabled():
            assert not winograd.pays(256, 256, (3, 3), (1, 1), (1, 1), 28, 28)
        assert winograd.pays(256, 256, (3, 3), (1, 1), (1, 1), 28, 28)
    assert winograd.tile_size(14, 14) == 2 and winograd.tile_size(28, 28) == 4


@pytest.fixture
def everywhere(monkeypatch):
    """The route for every 3x3 convolution of 8 px or more, whatever its width: small nets, fast tests."""
    monkeypatch.setattr(winograd, "MIN_CHANNELS", 1)
    monkeypatch.setattr(winograd, "MAX_SIZE", 10 ** 6)


@pytest.mark.parametrize("size", [8, 17, 28])
def test_a_conv2d_layer_with_the_route_on_equals_the_direct_route(size, everywhere):
    rng = np.random.default_rng(size)
    conv = mc.Conv2d(64, 66, 3, padding=1, dtype=np.float64)
    x = rng.standard_normal((2, 64, size, size + 3))
    with winograd.disabled():
        out = conv.forward(x)
        dout = rng.standard_normal(out.shape)
        dx = conv.backward(dout)
    with winograd.enabled():
        assert _rel(conv.forward(x), out) < 1e-13
        assert _rel(conv.backward(dout), dx) < 1e-13


def test_a_model_with_the_route_on_gives_the_direct_gradients(monkeypatch, everywhere):
    """A small VGG-style net and two ResNets with 64-channel stages: logits and input gradients agree, and the
    route was taken (forward and input gradient of every qualifying convolution)."""
    calls = []
    monkeypatch.setattr(winograd, "conv3x3", lambda *a, **k: calls.append("forward") or conv3x3(*a, **k))
    monkeypatch.setattr(winograd, "conv3x3_input_grad",
                        lambda *a, **k: calls.append("input grad") or conv3x3_input_grad(*a, **k))
    rng = np.random.default_rng(0)
    nets = [mc.models.vgg([64, "M", 64, 64, "M"], num_classes=5, hidden=16, pool_size=1, dtype=np.float64),
            mc.models.resnet("basic", [1, 1, 1, 1], num_classes=5, dtype=np.float64),
            mc.models.resnet("bottleneck", [1, 1, 1, 1], num_classes=5, width=0.5, dtype=np.float64)]
    for net in nets:
        x = rng.random((2, 3, 67, 67))
        with winograd.disabled():
            logits = net.forward(x)
            dout = np.eye(5)[[1, 3]]
            grad = net.backward(dout)
        with winograd.enabled():
            assert _rel(net.forward(x), logits) < 1e-12
            assert _rel(net.backward(dout), grad) < 1e-12
    assert calls.count("forward") >= 5 and calls.count("input grad") >= 5


def test_transformed_weights_follow_their_array():
    """A new array is a new key; a layer's weights changed in place are caught by the sampled comparison; a
    change to a few weights needs forget(w)."""
    rng = np.random.default_rng(1)
    x, w = rng.standard_normal((1, 64, 8, 8)), rng.standard_normal((64, 64, 3, 3))
    first, first_w = winograd.conv3x3(x, w), w.copy()
    w *= 2                                                     # scaled in place, not told: caught
    assert _rel(winograd.conv3x3(x, w), 2 * first) < 1e-13
    w[5, 7, 1, 1] += 1                                         # one weight: forget(w) says so
    winograd.forget(w)
    assert _rel(winograd.conv3x3(x, w), conv2d_forward_naive(x, w, np.zeros(64), 1, 1)) < 1e-13
    w[:] = rng.standard_normal(w.shape)                        # rewritten in place, not told: caught
    assert _rel(winograd.conv3x3(x, w), conv2d_forward_naive(x, w, np.zeros(64), 1, 1)) < 1e-13
    rng.shuffle(w)                                             # shuffled in place: caught
    assert _rel(winograd.conv3x3_input_grad(x, w), conv2d_backward_naive(x, x, w, 1, 1)[0]) < 1e-13
    w[...] = 2 * first_w                                       # back to 2x the first weights
    w2 = w.copy()                                              # a new array is a new key
    w2 *= 0.5
    assert _rel(winograd.conv3x3(x, w2), first) < 1e-13
    with pytest.raises(ValueError, match="input channels"):
        winograd.conv3x3(rng.standard_normal((1, 32, 8, 8)), w)
    winograd.forget()
    winograd.conv3x3(x, w2)
    del w2                                                     # an array's entry goes with it
    assert not winograd._cache


def test_an_optimizer_step_refreshes_the_transformed_weights(everywhere):
    rng = np.random.default_rng(2)
    conv = mc.Conv2d(64, 64, 3, padding=1, dtype=np.float64)
    net = mc.Sequential(conv)
    x = rng.standard_normal((1, 64, 8, 8))
    opt = mc.SGD(net, lr=0.1)
    with winograd.enabled():
        net.forward(x)
        net.backward(np.ones((1, 64, 8, 8)), param_grads=True)
        opt.step()
        after = net.forward(x)
    with winograd.disabled():
        assert _rel(after, net.forward(x)) < 1e-13


def test_float32_error_is_bounded():
    """In float32, F(2x2) rounds about as the direct route does, F(4x4) more, both far below 1e-4, forward and
    input gradient."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((1, 128, 28, 28)).astype(np.float32)
    w = (rng.standard_normal((128, 128, 3, 3)) / 34).astype(np.float32)
    exact = conv_ops.conv2d(x.astype(np.float64), w.astype(np.float64), (1, 1), (1, 1))
    with winograd.disabled():
        direct = _rel(conv_ops.conv2d(x, w, (1, 1), (1, 1)), exact)
    f2, f4 = (_rel(winograd.conv3x3(x, w, m=m), exact) for m in (2, 4))
    assert f2 < 5 * direct + 1e-7 and f4 < 1e-4 and direct < 1e-5
    exact = conv_ops.conv2d_input_grad(x.astype(np.float64), w.astype(np.float64), x.shape, (1, 1), (1, 1))
    with winograd.disabled():
        direct = _rel(conv_ops.conv2d_input_grad(x, w, x.shape, (1, 1), (1, 1)), exact)
    f2, f4 = (_rel(winograd.conv3x3_input_grad(x, w, m=m), exact) for m in (2, 4))
    assert f2 < 5 * direct + 1e-7 and f4 < 1e-4 and direct < 1e-5
