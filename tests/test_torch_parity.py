"""Level 2: minicnn against torch.nn in float64, forward and input gradient,
for the three ReLU rules (max rel. error <= 1e-10)."""
import numpy as np
import pytest

import minicnn as mc

from conftest import needs_torch, torch

pytestmark = needs_torch

TOL = 1e-10


def _compare_layer(layer, x, rng):
    from torch_reference import to_torch
    model = mc.Sequential(layer).to(np.float64)
    net = to_torch(model)
    out = model.forward(x)
    tx = torch.tensor(x, requires_grad=True)
    tout = net(tx)
    assert mc.rel_error(out, tout.detach().numpy()) <= TOL
    dout = rng.standard_normal(out.shape)
    dx = model.backward(dout)
    tout.backward(torch.tensor(dout))
    assert mc.rel_error(dx, tx.grad.numpy()) <= TOL


@pytest.mark.parametrize("layer", [
    lambda: mc.Conv2d(3, 5, 3, padding=1), lambda: mc.Conv2d(3, 4, 5, stride=2, padding=2),
    lambda: mc.Conv2d(3, 2, (1, 3), stride=(2, 1)), lambda: mc.ReLU(), lambda: mc.MaxPool2d(2),
    lambda: mc.MaxPool2d(3, 2), lambda: mc.MaxPool2d(3, 2, 1), lambda: mc.AvgPool2d(3, 2, 1),
    lambda: mc.AdaptiveAvgPool2d((3, 4)), lambda: mc.AdaptiveAvgPool2d(9), lambda: mc.Flatten(),
], ids=["conv3p1", "conv5s2p2", "conv1x3", "relu", "pool2", "pool3s2", "pool3s2p1", "avg3s2p1", "adaptive34",
        "adaptive_up9", "flatten"])
def test_each_layer_matches_torch(rng, layer):
    _compare_layer(layer(), rng.standard_normal((2, 3, 11, 10)), rng)


def test_maxpool_ties_match_torch(rng):
    x = rng.integers(0, 2, (2, 3, 8, 8)).astype(np.float64)    # ties everywhere
    _compare_layer(mc.MaxPool2d(3, 2), x, rng)
    _compare_layer(mc.MaxPool2d(2), np.zeros((1, 2, 4, 4)), rng)


def test_linear_matches_torch(rng):
    _compare_layer(mc.Linear(7, 3), rng.standard_normal((4, 7)), rng)


@pytest.mark.parametrize("rule", ["gradient", "deconvnet", "guided"])
def test_small_vgg_all_rules_match_torch(rng, rule):
    from torch_reference import RuleReLU, set_rule, small_vgg, to_torch
    model = small_vgg()
    net = to_torch(model, relu=RuleReLU)
    set_rule(net, rule)
    x = rng.standard_normal((2, 3, 16, 16))
    logits = model.forward(x)
    tx = torch.tensor(x, requires_grad=True)
    tlogits = net(tx)
    assert mc.rel_error(logits, tlogits.detach().numpy()) <= TOL
    dout = np.zeros_like(logits)
    dout[0, 1], dout[1, 3] = 1, 1
    dx = model.backward(dout, relu_rule=rule)
    tlogits.backward(torch.tensor(dout))
    assert np.abs(dx).max() > 0
    assert mc.rel_error(dx, tx.grad.numpy()) <= TOL


def test_parameter_gradients_match_torch(rng):
    from torch_reference import small_vgg, to_torch
    model = small_vgg()
    net = to_torch(model)
    x = rng.standard_normal((2, 3, 16, 16))
    loss, dlogits = mc.softmax_cross_entropy(model.forward(x), np.array([1, 4]))
    model.backward(dlogits, param_grads=True)
    tloss = torch.nn.functional.cross_entropy(net(torch.tensor(x)), torch.tensor([1, 4]))
    tloss.backward()
    assert abs(loss - tloss.item()) < 1e-12
    tgrads = dict(net.named_parameters())
    for name, _, grad in model.parameters():
        assert mc.rel_error(grad, tgrads[name].grad.numpy()) <= TOL, name
