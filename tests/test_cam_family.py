"""Issue 21: the CAM family, each variant equal to pytorch-grad-cam 1.5.7's map at the layer's resolution
before its resize and min-max scaling (``np.maximum(get_cam_image(...), 0)``), float64, on VGG-style nets and
on ResNets; Score-CAM and Ablation-CAM score in float32 in the reference (~1e-6)."""
import numpy as np
import pytest

import attribution as attr
import minicnn as mc
from attribution import cam_family as ac
from conftest import needs_grad_cam, torch
from nets import small_vgg

GRADIENT_CAMS = {"grad_cam": "GradCAM", "grad_cam_plus_plus": "GradCAMPlusPlus", "xgrad_cam": "XGradCAM",
                 "hires_cam": "HiResCAM", "grad_cam_elementwise": "GradCAMElementWise", "layer_cam": "LayerCAM"}


def _vgg(seed, in_size):
    model = small_vgg(num_classes=6, seed=seed, in_size=in_size)
    from torch_reference import to_torch
    return model, to_torch(model)


def _resnet(seed, in_size):
    from torch_resnet import to_minicnn, torch_resnet
    net = torch_resnet("basic", [1, 1, 1, 1], width=0.125, num_classes=6, seed=seed)
    return to_minicnn(net, "basic", [1, 1, 1, 1], 0.125, 6), net


NETS = {"vgg": _vgg, "resnet": _resnet}


def _reference(class_name, net, layer, x, targets, target_kind="ClassifierOutputTarget", batch_size=4):
    """pytorch-grad-cam's unscaled map: its own activations, gradients and get_cam_image, then the ReLU."""
    import pytorch_grad_cam as pgc
    from pytorch_grad_cam.utils import model_targets
    module = net.get_submodule(layer)
    method = getattr(pgc, class_name)(model=net, target_layers=[module])
    x_t = torch.from_numpy(x)
    outputs = method.activations_and_grads(x_t)
    wanted = [getattr(model_targets, target_kind)(int(t)) for t in targets]
    grads = None
    if method.uses_gradients:
        net.zero_grad()
        sum(t(o) for t, o in zip(wanted, outputs)).backward(retain_graph=True)
        grads = method.activations_and_grads.gradients[0].numpy()
    A = method.activations_and_grads.activations[0].numpy()
    if hasattr(method, "batch_size"):
        method.batch_size = batch_size                      # Ablation-CAM: channels per pass
    cam = method.get_cam_image(x_t, module, wanted, A, grads, False)
    method.activations_and_grads.release()
    return np.maximum(cam, 0)


def _case(kind, seed=0, in_size=16, n=2):
    model, net = NETS[kind](seed, in_size)
    x = np.random.default_rng(seed + 100).uniform(-1, 1, (n, 3, in_size, in_size))
    layer = attr.default_cam_layer(model)
    targets = model.forward(x).argsort(axis=1)[:, -2]        # the second class: not simply the prediction
    return model, net, x, layer, targets


@needs_grad_cam
@pytest.mark.parametrize("kind", NETS)
@pytest.mark.parametrize("name", GRADIENT_CAMS)
def test_gradient_cams_equal_pytorch_grad_cam(kind, name):
    model, net, x, layer, targets = _case(kind)
    ours = getattr(attr, name)(model, x, targets, layer)
    theirs = _reference(GRADIENT_CAMS[name], net, layer, x, targets)
    assert ours.shape == theirs.shape and ours.dtype == np.float64
    np.testing.assert_allclose(ours, theirs, rtol=1e-9, atol=1e-12 * np.abs(theirs).max())


@needs_grad_cam
@pytest.mark.parametrize("kind,seed,in_size,layer", [("vgg", 3, 20, "features.6"), ("vgg", 4, 12, "features.1"),
                                                     ("resnet", 5, 40, "layer3"), ("resnet", 6, 33, "layer2")])
def test_gradient_cams_on_other_nets_and_layers(kind, seed, in_size, layer):
    model, net, x, _, targets = _case(kind, seed, in_size, n=3)
    for name, class_name in GRADIENT_CAMS.items():
        ours = getattr(attr, name)(model, x, targets, layer)
        theirs = _reference(class_name, net, layer, x, targets)
        np.testing.assert_allclose(ours, theirs, rtol=1e-9, atol=1e-12 * max(np.abs(theirs).max(), 1e-300),
                                   err_msg=name)


@needs_grad_cam
@pytest.mark.parametrize("kind", NETS)
@pytest.mark.parametrize("name,class_name", [("score_cam", "ScoreCAM"), ("ablation_cam", "AblationCAM")])
def test_forward_pass_cams_equal_pytorch_grad_cam_in_float32(kind, name, class_name):
    model, net, x, layer, targets = _case(kind)
    ours = getattr(attr, name)(model, x, targets, layer, batch_size=5)
    theirs = _reference(class_name, net, layer, x, targets)
    np.testing.assert_allclose(ours, theirs, rtol=2e-6, atol=2e-6 * np.abs(theirs).max())


@needs_grad_cam
@pytest.mark.parametrize("kind", NETS)
def test_score_cam_on_probabilities_equals_the_softmax_target(kind):
    """score="probability" (the paper's score) is pytorch-grad-cam's Score-CAM with ClassifierOutputSoftmaxTarget."""
    model, net, x, layer, targets = _case(kind, seed=8)
    ours = attr.score_cam(model, x, targets, layer, score="probability")
    theirs = _reference("ScoreCAM", net, layer, x, targets, "ClassifierOutputSoftmaxTarget")
    np.testing.assert_allclose(ours, theirs, rtol=2e-6, atol=2e-6 * np.abs(theirs).max())
    with pytest.raises(ValueError, match="score must be one of"):
        attr.score_cam(model, x, targets, layer, score="softmax")


@needs_grad_cam
@pytest.mark.parametrize("kind", NETS)
def test_eigen_cams_equal_the_reference_up_to_the_svd_sign(kind):
    from pytorch_grad_cam.utils.svd_on_activations import get_2d_projection
    model, net, x, layer, targets = _case(kind)
    A, G, _, _, _ = ac.activations_and_gradients(model, x, targets, layer)
    for ours, values in ((ac.eigen_cam_map(A), A), (ac.eigen_grad_cam_map(A, G), G * A)):
        theirs = get_2d_projection(values)
        for o, t in zip(ours, theirs):
            sign = 1 if o.ravel() @ t.ravel() >= 0 else -1
            np.testing.assert_allclose(o, sign * t, rtol=1e-4, atol=1e-5 * np.abs(t).max())
    # the fixed sign: the projection correlates positively with the channel sum
    for o, a in zip(ac.eigen_cam_map(A), A):
        total = a.sum(axis=0)
        assert (o - o.mean()).ravel() @ (total - total.mean()).ravel() >= 0


def test_grad_cam_is_one_weighting_of_the_mechanism():
    model = small_vgg()
    x = np.random.default_rng(1).uniform(0, 1, (2, 3, 16, 16))
    np.testing.assert_array_equal(attr.grad_cam(model, x, [1, 2]), ac.cam(model, x, [1, 2]))


def test_a_weighting_of_your_own():
    model = small_vgg()
    x = np.random.default_rng(2).uniform(0, 1, (2, 3, 16, 16))

    def max_gradient(A, G):                             # each channel weighted by its largest gradient
        return np.einsum("nk,nkhw->nhw", G.max(axis=(2, 3)), A)
    maps = ac.cam(model, x, 0, weighting=max_gradient)
    A, G, _, _, _ = ac.activations_and_gradients(model, x, 0)
    np.testing.assert_allclose(maps, np.maximum(max_gradient(A, G), 0))


def test_hand_worked_weightings():
    A = np.array([[[[1.0, 2.0], [0.0, 1.0]], [[0.0, 0.0], [3.0, 1.0]]]])          # (1, 2, 2, 2)
    G = np.array([[[[0.5, -0.5], [1.0, 0.0]], [[-1.0, 0.0], [0.0, 2.0]]]])
    # Grad-CAM: mean gradients 0.25 and 0.25 -> 0.25 * (A0 + A1)
    np.testing.assert_allclose(ac.grad_cam_map(A, G), [[[0.25, 0.5], [0.75, 0.5]]])
    # HiResCAM: G * A summed over channels
    np.testing.assert_allclose(ac.hires_cam_map(A, G), [[[0.5, -1.0], [0.0, 2.0]]])
    # LayerCAM: relu(G) * A summed over channels
    np.testing.assert_allclose(ac.layer_cam_map(A, G), [[[0.5, 0.0], [0.0, 2.0]]])
    # Grad-CAM element-wise: relu(G * A)
    np.testing.assert_allclose(ac.grad_cam_elementwise_map(A, G), [[[0.5, 0.0], [0.0, 2.0]]])


def test_guided_variant_is_guided_backprop_times_the_upsampled_map():
    model = small_vgg()
    x = np.random.default_rng(3).uniform(0, 1, (2, 3, 16, 16))
    np.testing.assert_allclose(ac.guided(attr.grad_cam, model, x, [0, 1]), attr.guided_grad_cam(model, x, [0, 1]))
    # one forward pass for a gradient CAM, the CAM's own passes otherwise: the same product either way
    for method in (ac.layer_cam, ac.score_cam):
        product = attr.guided_backprop(model, x, [0, 1]) * attr.upsample(method(model, x, [0, 1]), (16, 16))[:, None]
        np.testing.assert_allclose(ac.guided(method, model, x, [0, 1]), product, rtol=1e-12, atol=1e-15)


def test_ablation_cam_leaves_the_model_as_it_was():
    model = small_vgg()
    x = np.random.default_rng(4).uniform(0, 1, (1, 3, 16, 16))
    before = model.forward(x).copy()
    attr.ablation_cam(model, x, 0)
    np.testing.assert_array_equal(model.forward(x), before)
    assert [n for n, _ in model.named_layers()] == [n for n, _ in small_vgg().named_layers()]


def _decomposition_error(model, x, targets):
    """|f(x) - (sum(dx * x) + sum of every bias term)| / max |f|, per the full-gradient decomposition."""
    dx, terms, targets, logits = ac.full_gradients(model, x, targets)
    total = (dx * x).sum(axis=(1, 2, 3))
    for b, G in terms.values():
        per_channel = G.sum(axis=(2, 3)) if G.ndim == 4 else G           # (N, K): the gradient w.r.t. b
        total = total + per_channel @ b
    f = logits[np.arange(len(x)), targets]
    return np.abs(total - f).max() / np.abs(f).max()


@pytest.mark.parametrize("make", ["vgg", "resnet", "shapes", "shapes_resnet"])
def test_the_full_gradient_decomposition_is_exact(make):
    """Srinivas & Fleuret 2019: on a ReLU network the logit is the input term plus every bias's term, float64.
    The nets cover biased convolutions, batch norm with statistics far from their defaults, Normalize, average-
    and max-pools, residual sums and linear layers."""
    from minicnn import models
    rng = np.random.default_rng(7)
    if make == "vgg":
        model, size = small_vgg(seed=3, in_size=20), 20
    elif make == "resnet":
        model, size = models.resnet("bottleneck", [1, 2, 1, 1], 5, width=0.125, dtype=np.float64, seed=2), 37
        for name, layer in model.named_layers():
            if isinstance(layer, mc.BatchNorm2d):
                k = layer.num_features
                layer.params["weight"], layer.params["bias"] = rng.uniform(0.3, 2, k), rng.normal(0, 0.5, k)
                layer.buffers["running_mean"], layer.buffers["running_var"] = rng.normal(0, 1, k), rng.uniform(.2, 3, k)
    else:
        model = getattr(models, "shapes_net" if make == "shapes" else "shapes_resnet")(pretrained=True)
        model, size = model.to(np.float64), 64
    x = rng.uniform(0, 1, (3, 3, size, size))
    assert _decomposition_error(model, x, [0, 1, 2]) < 1e-12


def test_full_gradients_refuse_batch_norm_in_training_mode():
    from minicnn import models
    model = models.resnet("basic", [1, 1, 1, 1], 4, width=0.0625, dtype=np.float64).train()
    with pytest.raises(ValueError, match="training mode.*model.eval"):
        ac.full_gradients(model, np.zeros((2, 3, 16, 16)))
    with pytest.raises(ValueError, match="every bias layer"):
        attr.fullgrad(small_vgg(), np.zeros((1, 3, 16, 16)), layer="features.1")


@needs_grad_cam
@pytest.mark.parametrize("kind,seed,in_size", [("vgg", 0, 16), ("vgg", 2, 20), ("resnet", 1, 33), ("resnet", 3, 24)])
def test_fullgrad_equals_pytorch_grad_cam(kind, seed, in_size):
    """pytorch-grad-cam's FullGrad min-max scales its final map and works in float32 after each scaling (its
    OpenCV resize): compared after the same final scaling, to float32's precision."""
    import pytorch_grad_cam as pgc
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
    model, net, x, _, targets = _case(kind, seed, in_size)
    ours = attr.fullgrad(model, x, targets)
    theirs = pgc.FullGrad(model=net, target_layers=[])(input_tensor=torch.from_numpy(x),
                                                        targets=[ClassifierOutputTarget(int(t)) for t in targets])
    ours = ours - ours.min(axis=(1, 2), keepdims=True)
    ours = ours / (ours.max(axis=(1, 2), keepdims=True) + 1e-7)
    assert ours.shape == theirs.shape == x.shape[:1] + x.shape[2:]
    np.testing.assert_allclose(ours, theirs, atol=2e-6)


@needs_grad_cam
@pytest.mark.parametrize("kind,layer,inside", [("vgg", "features.6", False), ("resnet", "layer3", False),
                                               ("resnet", "layer3.0.conv2", True), ("resnet", "layer2.0", False)])
def test_ablation_cam_runs_only_the_rest_of_the_network_where_it_can(kind, layer, inside):
    """After a layer that is not inside a residual block, Ablation-CAM sends the ablated copies through the
    layers after it only; inside a block (the sum needs the shortcut too) it runs the whole network. Both equal
    pytorch-grad-cam, which always runs the whole network."""
    model, net, x, _, targets = _case(kind, seed=9, in_size=24)
    assert (ac.rest_of(model, layer) is None) == inside
    ours = attr.ablation_cam(model, x, targets, layer, batch_size=3)
    # (not bn2: torchvision's block adds the shortcut to bn2's output in place, which changes what the
    # reference recorded as the activations.) conv2 can be negative: there the reference lowers its ablation value by 1e7 for each channel of a batch
    # (ablation_value's docstring), so it is compared one channel per pass
    theirs = _reference("AblationCAM", net, layer, x, targets, batch_size=1 if inside else 4)
    np.testing.assert_allclose(ours, theirs, rtol=2e-6, atol=2e-6 * np.abs(theirs).max())


def test_rest_of_the_network_continues_the_forward_pass():
    from minicnn import models
    model = models.resnet("basic", [1, 1, 1, 1], 4, width=0.125, dtype=np.float64, seed=1)
    x = np.random.default_rng(2).uniform(0, 1, (2, 3, 32, 32))
    logits = model.forward(x).copy()
    for name in ("conv1", "maxpool", "layer1", "layer3.0", "layer4", "avgpool"):
        np.testing.assert_array_equal(ac.rest_of(model, name)(model.outputs[name]), logits)
    assert ac.rest_of(model, "layer1.0.conv1") is None
