"""Issue 11: DeepLIFT as the fourth ReLU rule, and LRP / Deep Taylor as four steps on each layer.

Three levels: hand-worked numbers, properties (summation-to-delta, conservation,
LRP-0 = Gradient x Input), and the reference libraries in float64 (Captum's
DeepLift and LRP, Zennit's composites)."""
import numpy as np
import pytest

import attribution as attr
import minicnn as mc
from attribution.lrp import (AlphaBeta, Epsilon, Flat, Gamma, Zero, ZBox, ZPlus, composite_rules, four_steps, lrp)

from conftest import needs_captum, needs_zennit, torch
from nets import small_vgg

TARGETS = [1, 3]


def avg_net(seed=0):
    """A small VGG-like net with average pooling only: Captum's DeepLift is exact there."""
    r = np.random.default_rng(seed)
    return mc.Sequential({
        "features": mc.Sequential(mc.Conv2d(3, 6, 3, padding=1, rng=r), mc.ReLU(), mc.AvgPool2d(2),
                                  mc.Conv2d(6, 8, 3, padding=1, rng=r), mc.ReLU(), mc.AvgPool2d(3, 2, 1)),
        "avgpool": mc.AdaptiveAvgPool2d(3), "flatten": mc.Flatten(),
        "classifier": mc.Sequential(mc.Linear(72, 16, rng=r), mc.ReLU(), mc.Dropout(0.5), mc.Linear(16, 5, rng=r)),
    }).to(np.float64)


@pytest.fixture
def images():
    return np.random.default_rng(1).uniform(0, 1, (2, 3, 16, 16))


def _logit_change(model, x, baseline, targets):
    rows = np.arange(len(x))
    return model.forward(x)[rows, targets] - model.forward(baseline)[rows, targets]


# --------------------------------------------------------------------------
# DeepLIFT
# --------------------------------------------------------------------------

def test_rescale_rule_by_hand():
    relu = mc.ReLU()
    x = np.array([2.0, -1.0, 0.5, -2.0])
    x_ref = np.array([1.0, 1.0, 0.5, -3.0])
    relu.forward(x)
    # secants: (2-1)/(2-1) = 1; (0-1)/(-1-1) = 0.5; equal inputs -> the gradient (0.5 > 0): 1; both off: 0
    np.testing.assert_allclose(relu.backward(np.ones(4), rule="rescale", reference=x_ref), [1, 0.5, 1, 0])
    with pytest.raises(ValueError, match="'rescale' rule needs reference"):
        relu.backward(np.ones(4), rule="rescale")


def test_maxpool_rescale_by_hand():
    pool = mc.MaxPool2d(2)
    x = np.array([[[[1.0, 3.0], [2.0, 0.0]]]])          # y = 3 at (0, 1)
    x_ref = np.array([[[[4.0, 0.0], [0.0, 0.0]]]])      # y' = 4 at (0, 0)
    pool.forward(x_ref)
    reference = pool.cache
    pool.forward(x)
    m = pool.backward(np.ones((1, 1, 1, 1)), reference=reference)
    # max(y, y') = 4: p = (0, 1) receives 4 - 4 = 0, q = (0, 0) receives 3 - 4 = -1, over dx = 1 - 4 = -3
    np.testing.assert_allclose(m, [[[[1 / 3, 0], [0, 0]]]])
    assert np.sum(m * (x - x_ref)) == pytest.approx(3 - 4)                   # summation-to-delta


@pytest.mark.parametrize("net", ["small_vgg", "shapes_net"])
@pytest.mark.parametrize("baseline", ["zero", "random"])
def test_deeplift_sums_to_delta_with_max_pooling(net, baseline, images):
    if net == "shapes_net":
        from minicnn.models import shapes_net
        model = shapes_net(pretrained=True).to(np.float64)
        images = np.random.default_rng(2).uniform(0, 1, (2, 3, 64, 64))
    else:
        model = small_vgg()
    base = np.zeros_like(images) if baseline == "zero" else np.random.default_rng(3).uniform(0, 1, images.shape)
    a, delta = attr.deeplift(model, images, TARGETS, baseline=base, return_delta=True)
    change = _logit_change(model, images, base, TARGETS)
    np.testing.assert_allclose(a.reshape(2, -1).sum(axis=1), change, rtol=1e-10, atol=1e-12)
    assert np.abs(delta).max() <= 1e-10 * np.abs(change).max()


def test_deeplift_is_the_gradient_times_input_on_a_linear_model():
    # no ReLU or pool: every multiplier is the weight, so DeepLIFT = (x - x') * w
    r = np.random.default_rng(0)
    model = mc.Sequential(mc.Flatten(), mc.Linear(12, 3, rng=r)).to(np.float64)
    x, base = r.standard_normal((2, 3, 2, 2)), r.standard_normal((2, 3, 2, 2))
    w = model["1"].params["weight"]
    np.testing.assert_allclose(attr.deeplift(model, x, [0, 2], baseline=base),
                               (x - base) * w[[0, 2]].reshape(2, 3, 2, 2), rtol=1e-13)


@needs_captum
@pytest.mark.parametrize("baseline", ["zero", "random"])
def test_deeplift_equals_captum_without_max_pooling(baseline, images):
    from captum.attr import DeepLift
    from torch_reference import to_torch
    model = avg_net()
    base = np.zeros_like(images) if baseline == "zero" else np.random.default_rng(2).uniform(-.5, .5, images.shape)
    theirs = DeepLift(to_torch(model)).attribute(torch.tensor(images), baselines=torch.tensor(base), target=TARGETS)
    ours = attr.deeplift(model, images, TARGETS, baseline=base)
    assert mc.rel_error(ours, theirs.detach().numpy()) <= 1e-8


@needs_captum
def test_with_max_pooling_captum_loses_what_deeplift_must_conserve(images):
    """Captum 0.9's max-pool rule is not a reference (REFERENCE.md): its own convergence delta is a large share of
    the output change on a small VGG-like net, where ours is rounding. Both numbers are printed and compared."""
    from captum.attr import DeepLift
    from torch_reference import to_torch
    model = small_vgg()
    base = np.random.default_rng(2).uniform(0, 1, images.shape)
    _, theirs = DeepLift(to_torch(model)).attribute(torch.tensor(images), baselines=torch.tensor(base),
                                                    target=TARGETS, return_convergence_delta=True)
    _, ours = attr.deeplift(model, images, TARGETS, baseline=base, return_delta=True)
    change = np.abs(_logit_change(model, images, base, TARGETS))
    theirs_share, ours_share = np.abs(theirs.numpy()) / change, np.abs(ours) / change
    print(f"summation-to-delta error / output change: Captum {theirs_share}, minicnn {ours_share}")
    assert ours_share.max() <= 1e-10
    assert theirs_share.max() >= 1e-3


def test_rescale_needs_the_reference_and_only_with_rescale(images):
    model = small_vgg()
    logits = model.forward(images)
    with pytest.raises(ValueError, match="relu_rule='rescale' \\(DeepLIFT\\) goes with reference"):
        model.backward(np.ones_like(logits), relu_rule="rescale")
    with pytest.raises(ValueError, match="goes with reference"):
        model.backward(np.ones_like(logits), reference=model.caches())
    with pytest.raises(ValueError, match="baseline must be a number or an array broadcastable"):
        attr.deeplift(model, images, 0, baseline=np.zeros((5, 5)))


# --------------------------------------------------------------------------
# LRP
# --------------------------------------------------------------------------

def _linear(weight, bias=None):
    layer = mc.Linear(len(weight[0]), len(weight), bias=bias is not None, dtype=np.float64)
    layer.params["weight"] = np.array(weight, dtype=np.float64)
    if bias is not None:
        layer.params["bias"] = np.array(bias, dtype=np.float64)
    return layer


def test_the_four_steps_by_hand():
    layer = _linear([[1.0, -1.0]])
    a, R = np.array([[1.0, 2.0]]), np.array([[1.0]])
    # LRP-0: z = 1 - 2 = -1, s = R / z = -1, c = W^T s = [-1, 1], R_in = a * c = [-1, 2] (sums to R)
    np.testing.assert_allclose(Zero()(layer, a, R), [[-1, 2]])
    # z+: only the positive weight on positive inputs: z = 1, c = [1, 0], R_in = [1, 0]
    # (a stabilizer of 1e-300 changes none of these numbers; 0 is refused: it would divide by z = 0 elsewhere)
    np.testing.assert_allclose(ZPlus(stabilizer=1e-300)(layer, a, R), [[1, 0]])
    # epsilon: z = -1 - 0.5 (eps with the sign of z), s = -1/1.5
    np.testing.assert_allclose(Epsilon(0.5)(layer, a, R), [[-1 / 1.5, 2 / 1.5]])
    # flat: every input an equal share, whatever a and W
    np.testing.assert_allclose(Flat(stabilizer=1e-300)(layer, a, R), [[0.5, 0.5]])
    # alpha2-beta1: positive part a1*w1 = 1 gets 2 * 1; negative part a2*w2 = -2 gets -1 * 1
    np.testing.assert_allclose(AlphaBeta(2, 1, stabilizer=1e-300)(layer, a, R), [[2, -1]])
    # four_steps is the one place the arithmetic lives
    np.testing.assert_allclose(four_steps(layer, R, [(a, {})], 0.0), Zero()(layer, a, R))


def test_lrp_zero_equals_gradient_x_input(images):
    model = small_vgg()
    np.testing.assert_allclose(lrp(model, images, TARGETS, composite="zero"),
                               attr.gradient_x_input(model, images, TARGETS), rtol=1e-10, atol=1e-14)


def test_relevance_is_conserved_without_biases(images):
    model = small_vgg()
    for _, layer in model.named_layers():
        if "bias" in layer.params:
            layer.params["bias"] = np.zeros_like(layer.params["bias"])
    logits = model.forward(images)[[0, 1], TARGETS]
    for composite in ("epsilon_plus_flat", "epsilon_alpha2_beta1", "deep_taylor", "zero"):
        # the stabilizers absorb relevance in proportion to eps / z: make them tiny to see the rest is exact
        total = lrp(model, images, TARGETS, composite=composite, epsilon=1e-13, stabilizer=1e-13, low=0.0, high=1.0)
        np.testing.assert_allclose(total.reshape(2, -1).sum(axis=1), logits, rtol=1e-8, err_msg=composite)


def test_composites_map_layers_to_rules_as_zennit_does():
    model = small_vgg()
    rules = composite_rules(model, "epsilon_plus_flat")
    assert isinstance(rules["features.0"], Flat) and isinstance(rules["features.2"], ZPlus)
    assert isinstance(rules["classifier.0"], Epsilon) and type(rules["avgpool"]).__name__ == "Norm"
    assert type(rules["features.1"]).__name__ == "Pass" and type(rules["features.4"]).__name__ == "Gradient"
    rules = composite_rules(model, "epsilon_gamma_box", low=-1, high=2)
    assert isinstance(rules["features.0"], ZBox) and isinstance(rules["features.2"], Gamma)
    rules = composite_rules(model, "deep_taylor")
    assert isinstance(rules["features.0"], ZBox) and isinstance(rules["classifier.3"], ZPlus)
    rules = composite_rules(model, {"features.0": "flat", "classifier.3": Epsilon(0.1)})
    assert isinstance(rules["features.0"], Flat) and rules["classifier.3"].epsilon == 0.1
    assert isinstance(rules["features.2"], Epsilon) and type(rules["features.4"]).__name__ == "Gradient"


def test_deep_taylor_box_bounds_are_the_image_range_through_normalize():
    from minicnn.models import shapes_net
    model = shapes_net(pretrained=True)
    x = np.random.default_rng(0).uniform(0, 1, (1, 3, 64, 64)).astype(np.float32)
    R, rules = lrp(model, x, composite="deep_taylor", return_rules=True)
    box = rules["features.0"]
    np.testing.assert_allclose(np.ravel(box.low), [-2, -2, -2])           # (0 - 0.5) / 0.25
    np.testing.assert_allclose(np.ravel(box.high), [2, 2, 2])             # (1 - 0.5) / 0.25
    assert R.shape == x.shape and np.isfinite(R).all()


def test_lrp_bad_names_are_clear(images):
    model = small_vgg()
    with pytest.raises(ValueError, match="unknown LRP composite 'epsilon_plus'; use one of epsilon_plus_flat"):
        lrp(model, images, 0, composite="epsilon_plus")
    with pytest.raises(ValueError, match="unknown rule 'zplus2' for features.0; use one of zero, epsilon"):
        lrp(model, images, 0, composite={"features.0": "zplus2"})
    with pytest.raises(ValueError, match="no layer named features.99"):
        lrp(model, images, 0, composite={"features.99": "flat"})
    with pytest.raises(ValueError, match="alpha - beta = 1"):
        AlphaBeta(2, 2)
    with pytest.raises(ValueError, match="epsilon must be a finite number > 0"):
        Epsilon(-1)


@needs_zennit
@pytest.mark.parametrize("ours,theirs", [("epsilon_plus_flat", "EpsilonPlusFlat"),
                                         ("epsilon_gamma_box", "EpsilonGammaBox"),
                                         ("epsilon_alpha2_beta1", "EpsilonAlpha2Beta1")])
def test_composites_equal_zennit(ours, theirs, images):
    import zennit.composites as zc
    from torch_reference import to_torch
    from zennit.attribution import Gradient
    model = small_vgg()
    logits = model.forward(images)
    composite = getattr(zc, theirs)(**({"low": 0.0, "high": 1.0} if theirs == "EpsilonGammaBox" else {}))
    start = torch.zeros(logits.shape, dtype=torch.float64)       # relevance starts as the target's logit
    start[[0, 1], TARGETS] = torch.tensor(logits[[0, 1], TARGETS])
    with Gradient(model=to_torch(model), composite=composite) as attributor:
        _, relevance = attributor(torch.tensor(images, requires_grad=True), start)
    assert mc.rel_error(lrp(model, images, TARGETS, composite=ours), relevance.numpy()) <= 1e-8


@needs_captum
def test_epsilon_equals_captum_lrp(images):
    from captum.attr import LRP
    from torch_reference import to_torch
    model = small_vgg()
    seq = to_torch(model)

    class Net(torch.nn.Module):          # Captum's LRP has no rule for nn.Flatten: flatten inside forward
        def __init__(self):
            super().__init__()
            self.features, self.avgpool, self.classifier = seq.features, seq.avgpool, seq.classifier

        def forward(self, x):
            return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))

    theirs = LRP(Net().eval()).attribute(torch.tensor(images), target=TARGETS)      # EpsilonRule(1e-9) everywhere
    ours = lrp(model, images, TARGETS, composite="epsilon", epsilon=1e-9)
    assert mc.rel_error(ours, theirs.detach().numpy()) <= 1e-8


@needs_zennit
@pytest.mark.parametrize("seed", [0, 3])
def test_deep_taylor_equals_zennit_with_z_plus_and_a_z_box_first(seed):
    """Zennit has no Deep Taylor composite by name; built from its rules (z+ at every conv and linear layer,
    z-box at the first, its base map elsewhere) it is ours to rounding."""
    from torch_reference import to_torch
    from zennit.attribution import Gradient
    from zennit.composites import SpecialFirstLayerMapComposite, layer_map_base
    from zennit.rules import ZBox, ZPlus
    model = small_vgg(seed=seed)
    images = np.random.default_rng(seed).uniform(0, 1, (2, 3, 16, 16))
    logits = model.forward(images)
    composite = SpecialFirstLayerMapComposite(
        layer_map=layer_map_base() + [(torch.nn.Conv2d, ZPlus()), (torch.nn.Linear, ZPlus())],
        first_map=[(torch.nn.Conv2d, ZBox(low=0.0, high=1.0))])
    start = torch.zeros(logits.shape, dtype=torch.float64)
    start[[0, 1], TARGETS] = torch.tensor(logits[[0, 1], TARGETS])
    with Gradient(model=to_torch(model), composite=composite) as attributor:
        _, relevance = attributor(torch.tensor(images, requires_grad=True), start)
    assert mc.rel_error(lrp(model, images, TARGETS, composite="deep_taylor"), relevance.numpy()) <= 1e-12
