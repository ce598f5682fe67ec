"""Every method through skip connections, on ResNets with batch-norm statistics far from their defaults, in
float64: equal to Captum (gradients, Grad-CAM at any block, IG, DeepLIFT) and to Zennit with its ResNet
canonizer (LRP); DeepLIFT conserving on the real network; the perturbation methods running."""
import numpy as np
import pytest
from conftest import needs_captum, needs_zennit, torch

import attribution as attr
import minicnn as mc
from attribution.lrp import canonize, lrp, split_sum
from minicnn import models

TARGETS = [2, 5]
NETS = {"basic": ("basic", [1, 1, 1, 1], 0.125, (2, 3, 37, 45)),
        "bottleneck": ("bottleneck", [1, 2, 1, 1], 0.0625, (2, 3, 33, 40))}


def resnet_pair(kind, seed=3):
    """(minicnn ResNet, its torch twin with torchvision's names, images in [0, 1])."""
    from torch_resnet import to_minicnn, torch_resnet
    block, layers, width, shape = NETS[kind]
    net = torch_resnet(block, layers, width, num_classes=7, seed=seed)
    model = to_minicnn(net, block, layers, width, 7)
    x = np.random.default_rng(seed).random(shape)
    return model, net, x


def close(ours, theirs, tol=1e-9, nonzero=True):
    theirs = theirs.detach().numpy() if hasattr(theirs, "detach") else theirs
    assert ours.shape == theirs.shape and (np.abs(theirs).max() > 0 or not nonzero)
    assert mc.rel_error(ours, theirs) <= tol, mc.rel_error(ours, theirs)
    return np.abs(theirs).max() > 0


def random_resnet(kind="basic", seed=0):
    """A minicnn ResNet with random batch-norm statistics (no torch needed)."""
    block, layers, width, shape = NETS[kind]
    model = models.resnet(block, layers, 7, width=width, dtype=np.float64, seed=seed)
    rng = np.random.default_rng(seed)
    for _, layer in model.named_layers():
        if isinstance(layer, mc.BatchNorm2d):
            n = layer.num_features
            layer.params["weight"] = rng.uniform(0.25, 1.75, n)
            layer.params["bias"] = rng.standard_normal(n) * 0.5
            layer.buffers["running_mean"] = rng.standard_normal(n) * 0.8
            layer.buffers["running_var"] = rng.uniform(0.2, 3.2, n)
    return model, rng.random(shape)


# --------------------------------------------------------------------------
# Captum
# --------------------------------------------------------------------------

@needs_captum
@pytest.mark.parametrize("kind", sorted(NETS))
@pytest.mark.parametrize("ours,captum_name", [(attr.vanilla_gradient, "Saliency"), (attr.deconvnet, "Deconvolution"),
                                              (attr.guided_backprop, "GuidedBackprop"),
                                              (attr.gradient_x_input, "InputXGradient")])
def test_gradient_methods_equal_captum(kind, ours, captum_name):
    import captum.attr as ca
    model, net, x = resnet_pair(kind)
    kwargs = {"abs": False} if captum_name == "Saliency" else {}
    close(ours(model, x, TARGETS), getattr(ca, captum_name)(net).attribute(torch.tensor(x), target=TARGETS,
                                                                           **kwargs))


@needs_captum
@pytest.mark.parametrize("kind", sorted(NETS))
def test_grad_cam_at_any_block_and_guided_grad_cam_equal_captum(kind):
    from captum.attr import GuidedGradCam, LayerGradCam
    model, net, x = resnet_pair(kind)
    tx = torch.tensor(x)
    assert attr.default_cam_layer(model) == "layer4"
    shown = []                                # a rectified map may be all zero at some layer, not at all of them
    for ours_name, theirs_layer in [("layer4", net.layer4), ("layer3.0", net.layer3[0]), ("layer2", net.layer2),
                                    ("layer1.0.bn2", net.layer1[0].bn2), ("layer1.0.bn1", net.layer1[0].bn1)]:
        theirs = LayerGradCam(net, theirs_layer).attribute(tx, target=TARGETS, relu_attributions=True)
        shown.append(close(attr.grad_cam(model, x, TARGETS, layer=ours_name)[:, None], theirs, nonzero=False))
    assert sum(shown) >= 2
    close(attr.grad_cam(model, x, TARGETS)[:, None],
          LayerGradCam(net, net.layer4).attribute(tx, target=TARGETS, relu_attributions=True), nonzero=False)
    close(attr.guided_grad_cam(model, x, TARGETS, layer="layer3", mode="nearest"),
          GuidedGradCam(net, net.layer3).attribute(tx, target=TARGETS))


@needs_captum
def test_integrated_gradients_equal_captum():
    from captum.attr import IntegratedGradients
    model, net, x = resnet_pair("bottleneck")
    theirs = IntegratedGradients(net).attribute(torch.tensor(x), target=TARGETS, n_steps=16,
                                                method="riemann_trapezoid")
    close(attr.integrated_gradients(model, x, TARGETS, steps=16), theirs)


@needs_captum
@pytest.mark.parametrize("kind", sorted(NETS))
def test_deeplift_equals_captum_where_the_stem_max_pool_is_the_identity(kind):
    """Captum's DeepLift needs one ReLU module per use (untie_relus) and has two faults at the stem's
    overlapping max-pool (REFERENCE.md): compared where that pool is MaxPool2d(1), exact everywhere else,
    residual sums and batch norms included."""
    from captum.attr import DeepLift
    from torch_resnet import untie_relus
    model, net, x = resnet_pair(kind)
    net = untie_relus(net)
    net.maxpool = torch.nn.MaxPool2d(1)
    model.replace("maxpool", mc.MaxPool2d(1))
    baseline = np.full_like(x, 0.3)
    theirs = DeepLift(net).attribute(torch.tensor(x), baselines=torch.tensor(baseline), target=TARGETS)
    ours, delta = attr.deeplift(model, x, TARGETS, baseline=baseline, return_delta=True)
    close(ours, theirs, 1e-8)
    np.testing.assert_allclose(delta, 0, atol=1e-9)


@pytest.mark.parametrize("kind", sorted(NETS))
def test_deeplift_conserves_exactly_on_the_real_network(kind):
    """Through the overlapping 3x3/2 stem max-pool, the batch norms and every residual sum."""
    model, x = random_resnet(kind)
    for baseline in (None, np.full_like(x, 0.5), np.random.default_rng(1).random(x.shape)):
        ours, delta = attr.deeplift(model, x, TARGETS, baseline=baseline, return_delta=True)
        assert np.isfinite(ours).all() and np.abs(ours).sum() > 0
        np.testing.assert_allclose(delta, 0, atol=1e-9 * max(1, np.abs(ours).sum()))


# --------------------------------------------------------------------------
# Zennit with its ResNet canonizer
# --------------------------------------------------------------------------

def test_canonize_folds_batch_norm_and_leaves_the_logits_and_the_model_alone():
    model, x = random_resnet("bottleneck")
    before = model.forward(x).copy()
    weights = model.state_dict()
    folded = canonize(model)
    np.testing.assert_allclose(folded.forward(x), before, rtol=1e-12, atol=1e-12)
    assert not any(isinstance(layer, mc.BatchNorm2d) for _, layer in folded.named_layers())
    assert isinstance(folded["layer1.0.bn1"], mc.Identity) and "bias" in folded["layer1.0.conv1"].params
    assert isinstance(folded["layer1.0.downsample.1"], mc.Identity)
    assert all(np.array_equal(v, weights[k]) for k, v in model.state_dict().items())      # untouched
    np.testing.assert_array_equal(model.forward(x), before)


def test_the_sum_rule_splits_relevance_by_share_and_conserves_it():
    a, b = np.array([3.0, -1.0, 0.0]), np.array([1.0, 2.0, 0.0])
    Ra, Rb = split_sum(np.array([8.0, 2.0, 5.0]), (a, b), stabilizer=0.0 + 1e-300)
    np.testing.assert_allclose(Ra, [6.0, -2.0, 0.0])
    np.testing.assert_allclose(Rb, [2.0, 4.0, 0.0])


def test_without_the_sum_rule_relevance_doubles_at_every_block():
    """LRP-0 with no biases: with split_sum, the input relevance equals the logit; copied to both branches
    instead, it grows with every residual block (8 blocks here)."""
    model, x = random_resnet("basic")
    for _, layer in model.named_layers():
        if isinstance(layer, mc.BatchNorm2d):
            layer.params["bias"][:] = 0
            layer.buffers["running_mean"][:] = 0
    del model["fc"].params["bias"]
    logit = model.forward(x)[[0, 1], TARGETS]
    split = lrp(model, x, TARGETS, composite="zero", stabilizer=1e-15).reshape(2, -1).sum(axis=1)
    copied = lrp(model, x, TARGETS, composite="zero", stabilizer=1e-15, canonized=False).reshape(2, -1).sum(axis=1)
    np.testing.assert_allclose(split, logit, rtol=1e-9)
    assert np.all(np.abs(copied) > 1.5 * np.abs(logit))


@needs_zennit
@pytest.mark.parametrize("kind", sorted(NETS))
@pytest.mark.parametrize("ours,theirs", [("epsilon_plus_flat", "EpsilonPlusFlat"),
                                         ("epsilon_gamma_box", "EpsilonGammaBox"),
                                         ("epsilon_alpha2_beta1", "EpsilonAlpha2Beta1")])
def test_lrp_composites_equal_zennit_with_its_resnet_canonizer(kind, ours, theirs, monkeypatch):
    import zennit.composites as zc
    from zennit.attribution import Gradient
    from zennit.canonizers import MergeBatchNorm
    from zennit.torchvision import ResNetCanonizer
    original = MergeBatchNorm.merge_batch_norm

    def merge_exactly(modules, batch_norm):          # Zennit 0.5.1 keeps the merged BN's eps (REFERENCE.md)
        original(modules, batch_norm)
        batch_norm.eps = 0.0
    monkeypatch.setattr(MergeBatchNorm, "merge_batch_norm", staticmethod(merge_exactly))
    model, net, x = resnet_pair(kind)
    logits = model.forward(x)
    kwargs = {"low": 0.0, "high": 1.0} if theirs == "EpsilonGammaBox" else {}
    composite = getattr(zc, theirs)(canonizers=[ResNetCanonizer()], **kwargs)
    start = torch.zeros(logits.shape, dtype=torch.float64)
    start[[0, 1], TARGETS] = torch.tensor(logits[[0, 1], TARGETS])
    with Gradient(model=net, composite=composite) as attributor:
        _, relevance = attributor(torch.tensor(x, requires_grad=True), start)
    close(lrp(model, x, TARGETS, composite=ours), relevance, 1e-8)


# --------------------------------------------------------------------------
# The perturbation methods and SmoothGrad run on ResNets
# --------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["smoothgrad", "occlusion", "lime", "kernel_shap", "shapley_values", "deep_taylor"])
def test_perturbation_methods_and_smoothgrad_run_on_a_resnet(name):
    model, x = random_resnet("basic")
    quick = {"smoothgrad": {"n_samples": 4}, "lime": {"n_samples": 40, "n_segments": 8},
             "kernel_shap": {"n_samples": 40, "n_segments": 8}, "shapley_values": {"n_segments": 4}}
    out = attr.METHODS[name](model, x, TARGETS, **quick.get(name, {}))
    assert out.shape == x.shape and np.isfinite(out).all() and np.abs(out).sum() > 0
