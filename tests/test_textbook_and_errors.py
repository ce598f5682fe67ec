"""The textbook's worked example for the three ReLU rules, and the errors a user meets."""
import numpy as np
import pytest

import minicnn as mc

# Molnar, Interpretable Machine Learning, "Pixel Attribution": a 2x2 layer.
X_N = np.array([[1.0, 0.0], [-1.0, -10.0]])
G = np.array([[0.4, 1.1], [-0.5, -0.1]])


@pytest.mark.parametrize("rule,expected", [
    ("gradient", [[0.4, 0.0], [0.0, 0.0]]),    # forward mask: only x = 1 is > 0 (x = 0 is not: strict)
    ("deconvnet", [[0.4, 1.1], [0.0, 0.0]]),   # backward mask: the positive gradients pass
    ("guided", [[0.4, 0.0], [0.0, 0.0]]),      # both masks
])
def test_textbook_2x2_example(rule, expected):
    relu = mc.ReLU()
    relu.forward(X_N)
    np.testing.assert_array_equal(relu.backward(G, rule=rule), expected)


def test_unknown_relu_rule_lists_the_three():
    relu = mc.ReLU()
    relu.forward(X_N)
    with pytest.raises(ValueError, match="'gradient', 'deconvnet', 'guided'"):
        relu.backward(G, rule="guided_backprop")
    net = mc.Sequential(mc.ReLU())
    net.forward(X_N)
    with pytest.raises(ValueError, match="relu_rule"):
        net.backward(G, relu_rule="deconv")


def test_wrong_ndim_and_channels_name_the_layer_and_shape():
    net = mc.Sequential({"features": mc.Sequential(mc.Conv2d(3, 4, 3))})
    with pytest.raises(ValueError, match=r"features\.0.*4-D input \(N, C, H, W\).*\(3, 8, 8\)"):
        net.forward(np.zeros((3, 8, 8), np.float32))
    with pytest.raises(ValueError, match=r"features\.0: expected 3 channels.*\(1, 1, 8, 8\)"):
        net.forward(np.zeros((1, 1, 8, 8), np.float32))
    with pytest.raises(ValueError, match=r"Linear: expected \(N, 5\)"):
        mc.Linear(5, 2).forward(np.zeros((2, 4), np.float32))


def test_dtype_mismatch_and_integers_are_refused():
    with pytest.raises(TypeError, match="float32 or float64"):
        mc.Conv2d(1, 1, 3).forward(np.zeros((1, 1, 4, 4), np.uint8))
    with pytest.raises(TypeError, match="input is float64 but weight is float32"):
        mc.Conv2d(1, 1, 3).forward(np.zeros((1, 1, 4, 4)))


def test_backward_before_forward():
    for layer in [mc.Conv2d(1, 1, 3), mc.ReLU(), mc.MaxPool2d(2), mc.Linear(2, 2), mc.Flatten()]:
        with pytest.raises(RuntimeError, match="backward\\(\\) called before forward\\(\\)"):
            layer.backward(np.zeros((1, 1, 1, 1), np.float32))


def test_dout_of_the_wrong_shape():
    conv = mc.Conv2d(1, 2, 3)
    conv.forward(np.zeros((1, 1, 5, 5), np.float32))
    with pytest.raises(ValueError, match=r"dout must have the shape .*\(1, 2, 3, 3\)"):
        conv.backward(np.zeros((1, 2, 5, 5), np.float32))


def test_non_finite_input_rejected():
    net = mc.Sequential(mc.Conv2d(1, 1, 3))
    x = np.zeros((1, 1, 4, 4), np.float32)
    x[0, 0, 1, 1] = np.nan
    with pytest.raises(ValueError, match="NaN or infinity"):
        net.forward(x)


def test_input_smaller_than_kernel():
    with pytest.raises(ValueError, match="smaller than the kernel"):
        mc.Conv2d(1, 1, 5).forward(np.zeros((1, 1, 3, 3), np.float32))
    with pytest.raises(ValueError, match="smaller than the pooling window"):
        mc.MaxPool2d(4).forward(np.zeros((1, 1, 3, 3), np.float32))


def test_bad_hyperparameters():
    with pytest.raises(ValueError, match="padding"):
        mc.MaxPool2d(2, padding=2)
    with pytest.raises(ValueError, match="Dropout: p"):
        mc.Dropout(1.5)
    with pytest.raises(ValueError, match="kernel_size"):
        mc.Conv2d(1, 1, 0)


def test_state_dict_roundtrip_and_errors():
    net = mc.Sequential({"features": mc.Sequential(mc.Conv2d(1, 2, 3, rng=0)), "fc": mc.Linear(2, 3, rng=0)})
    state = net.state_dict()
    assert list(state) == ["features.0.weight", "features.0.bias", "fc.weight", "fc.bias"]
    other = mc.Sequential({"features": mc.Sequential(mc.Conv2d(1, 2, 3, rng=1)), "fc": mc.Linear(2, 3, rng=1)})
    other.load_state_dict(state)
    for k, v in other.state_dict().items():
        np.testing.assert_array_equal(v, state[k])
    bad = dict(state)
    del bad["fc.bias"]
    bad["extra.weight"] = np.zeros(1)
    bad["fc.weight"] = np.zeros((3, 3))
    before = other.state_dict()
    with pytest.raises(ValueError) as info:
        other.load_state_dict(bad)
    message = str(info.value)
    assert "missing: fc.bias" in message and "unexpected: extra.weight" in message
    assert "fc.weight: expected (3, 2), got (3, 3)" in message
    for k, v in other.state_dict().items():                # nothing half-loaded
        np.testing.assert_array_equal(v, before[k])
    partial = {"fc.weight": state["fc.weight"]}
    other.load_state_dict(partial, strict=False)


def test_lookup_by_name_and_outputs(rng):
    net = mc.Sequential({"features": mc.Sequential(mc.Conv2d(1, 2, 3, rng=0), mc.ReLU()),
                         "flatten": mc.Flatten(), "fc": mc.Linear(2 * 2 * 2, 3, rng=0)})
    assert isinstance(net["features.1"], mc.ReLU) and net["features.1"].name == "features.1"
    assert isinstance(net["features"], mc.Sequential) and net.features is net["features"]
    with pytest.raises(KeyError, match="features, features.0, features.1, flatten, fc"):
        net["features.7"]
    x = rng.standard_normal((2, 1, 4, 4)).astype(np.float32)
    out = net.forward(x)
    assert list(net.outputs) == ["features.0", "features.1", "features", "flatten", "fc"]   # a block after its children
    assert net.outputs["features"] is net.outputs["features.1"]
    assert net.outputs["fc"] is out
    np.testing.assert_array_equal(net.outputs["features.1"], np.maximum(net.outputs["features.0"], 0))
    # the gradient arriving at a layer's output, as Grad-CAM needs it
    dout = np.ones_like(out)
    g = net.backward(dout, until="features.1")
    np.testing.assert_allclose(g.reshape(2, -1), dout @ net.fc.params["weight"], rtol=1e-6)
    assert net.backward(dout, until="features").shape == g.shape


def test_training_loss_falls_on_a_toy_problem():
    rng = np.random.default_rng(0)
    # two classes: a bright blob in the left or the right half
    X = rng.normal(0, 0.3, (200, 1, 8, 8)).astype(np.float32)
    y = rng.integers(0, 2, 200)
    for i, label in enumerate(y):
        X[i, 0, 2:6, (0 if label == 0 else 4):(4 if label == 0 else 8)] += 1.5
    for make_opt in [lambda m: mc.SGD(m, lr=0.1, momentum=0.9), lambda m: mc.Adam(m, lr=0.01)]:
        net = mc.Sequential(mc.Conv2d(1, 4, 3, padding=1, rng=1), mc.ReLU(), mc.MaxPool2d(2), mc.Flatten(),
                            mc.Linear(64, 8, rng=2), mc.ReLU(), mc.Dropout(0.2, rng=3), mc.Linear(8, 2, rng=4))
        history = mc.fit(net, make_opt(net), X, y, epochs=5, batch_size=20, log=None)
        assert history[-1] < 0.5 * history[0], history
        assert mc.evaluate_accuracy(net, X, y) > 0.95
        assert not net.training


def test_softmax_cross_entropy_gradient():
    rng = np.random.default_rng(0)
    logits, labels = rng.standard_normal((4, 5)), np.array([0, 3, 4, 1])
    _, d = mc.softmax_cross_entropy(logits, labels)
    numeric = mc.numeric_vjp(lambda z: np.array(mc.softmax_cross_entropy(z, labels)[0]), logits, np.array(1.0))
    assert mc.rel_error(d, numeric) < 1e-8
    with pytest.raises(ValueError, match="labels must be integers"):
        mc.softmax_cross_entropy(logits, np.array([0, 1, 2, 9]))
