"""How far each method of issue 21 is from its reference library, on nets the tests never saw.

    python benchmarks/parity_cams.py [--nets 12] [--seed 1000]

Draws ``--nets`` random networks (small VGG-style nets and torchvision-layout ResNets, basic and bottleneck
blocks, one or two blocks per stage, two widths, batch-norm statistics far from their defaults, odd image
sizes from 13 to 41 pixels), a random spatial layer of each, and compares, in float64:

- the gradient CAMs and Score-/Ablation-CAM with pytorch-grad-cam 1.5.7's map before its resize and scaling;
- Eigen-CAM and EigenGrad-CAM with pytorch-grad-cam's projection, up to the SVD's sign;
- FullGrad with pytorch-grad-cam's after the same final min-max scaling;
- DeepLIFT-SHAP (average-pooling nets) and GradientSHAP (with Captum's own draws) with Captum.

It prints, per method, the largest error over all nets: max |ours - theirs| / max |theirs|. Needs the test
extras and the references (torch 2.13.0 CPU, captum, grad-cam 1.5.7 --no-deps); it uses the tests' helpers.
"""
import argparse
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("TQDM_DISABLE", "1")                    # pytorch-grad-cam's progress bars

from torch_resnet import install_torchvision_stub  # noqa: E402

install_torchvision_stub()

import torch  # noqa: E402

import attribution as attr  # noqa: E402
from common import report_worst_errors  # noqa: E402
from attribution import cam_family as ac  # noqa: E402
from nets import small_vgg  # noqa: E402
from test_cam_family import GRADIENT_CAMS, _reference  # noqa: E402
from test_shap_estimators import avgpool_net, captum_gradient_shap  # noqa: E402
from torch_reference import to_torch  # noqa: E402
from torch_resnet import to_minicnn, torch_resnet  # noqa: E402

torch.set_default_dtype(torch.float64)


def error(ours, theirs):
    return float(np.abs(np.asarray(ours) - theirs).max() / max(np.abs(theirs).max(), 1e-300))


def random_net(rng, k):
    """(minicnn model, torch twin, image size, spatial layer names, description) for net k."""
    size = int(rng.integers(13, 42))
    if k % 3 == 0:
        size = max(size, 16)
        model = small_vgg(num_classes=int(rng.integers(3, 9)), seed=int(rng.integers(1 << 30)), in_size=size)
        layers = [f"features.{i}" for i in (1, 3, 6, 9)]
        return model, to_torch(model), size, layers, f"VGG-style {size}px"
    block = "basic" if k % 3 == 1 else "bottleneck"
    blocks = [int(rng.integers(1, 3)), 1, int(rng.integers(1, 3)), 1]
    width = float(rng.choice([0.125, 0.25]))
    classes = int(rng.integers(3, 9))
    net = torch_resnet(block, blocks, width, classes, seed=int(rng.integers(1 << 30)))
    model = to_minicnn(net, block, blocks, width, classes)
    return model, net, size, ["layer1", "layer2", "layer3", "layer4"], f"ResNet {block} {blocks} x{width} {size}px"


def cam_errors(model, net, x, layer, targets):
    out = {}
    for name, class_name in GRADIENT_CAMS.items():
        out[name] = error(getattr(attr, name)(model, x, targets, layer), _reference(class_name, net, layer, x, targets))
    out["score_cam"] = error(attr.score_cam(model, x, targets, layer), _reference("ScoreCAM", net, layer, x, targets))
    out["score_cam (probability)"] = error(attr.score_cam(model, x, targets, layer, score="probability"),
                                           _reference("ScoreCAM", net, layer, x, targets,
                                                      "ClassifierOutputSoftmaxTarget"))
    out["ablation_cam"] = error(attr.ablation_cam(model, x, targets, layer),
                                _reference("AblationCAM", net, layer, x, targets))
    from pytorch_grad_cam.utils.svd_on_activations import get_2d_projection
    A, G, _, _, _ = ac.activations_and_gradients(model, x, targets, layer)
    for name, ours, values in (("eigen_cam", ac.eigen_cam_map(A), A), ("eigen_grad_cam", ac.eigen_grad_cam_map(A, G),
                                                                       G * A)):
        theirs = get_2d_projection(values)
        out[name + " (up to sign)"] = max(error(o, t if o.ravel() @ t.ravel() >= 0 else -t)
                                          for o, t in zip(ours, theirs))
    return out


def fullgrad_error(model, net, x, targets):
    import pytorch_grad_cam as pgc
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
    ours = attr.fullgrad(model, x, targets)
    ours = ours - ours.min(axis=(1, 2), keepdims=True)
    ours = ours / (ours.max(axis=(1, 2), keepdims=True) + 1e-7)
    theirs = pgc.FullGrad(model=net, target_layers=[])(input_tensor=torch.from_numpy(x),
                                                        targets=[ClassifierOutputTarget(int(t)) for t in targets])
    return error(ours, theirs)


def shap_errors(rng):
    from captum.attr import DeepLiftShap
    model = avgpool_net(int(rng.integers(1 << 30)), int(rng.integers(4, 10)))
    x, baselines = rng.uniform(0, 1, (2, 3, 16, 16)), rng.uniform(0, 1, (int(rng.integers(2, 6)), 3, 16, 16))
    targets = [int(t) for t in rng.integers(0, 5, 2)]
    theirs = DeepLiftShap(to_torch(model)).attribute(torch.tensor(x), baselines=torch.tensor(baselines),
                                                     target=targets).detach().numpy()
    out = {"deeplift_shap": error(attr.deeplift_shap(model, x, targets, baselines), theirs)}
    theirs, draws = captum_gradient_shap(model, x, targets, baselines, n_samples=9)
    ours = attr.gradient_shap(model, x, targets, baselines, n_samples=9, draws=draws)
    out["gradient_shap"] = error(ours, theirs)
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nets", type=int, default=12, help="how many random nets (default 12)")
    parser.add_argument("--seed", type=int, default=1000, help="the draw of nets (default 1000)")
    args = parser.parse_args(argv)
    if args.nets < 1:
        parser.error("--nets must be at least 1")
    rng = np.random.default_rng(args.seed)

    def one_net(k):
        model, net, size, layers, what = random_net(rng, k)
        layer = layers[int(rng.integers(len(layers)))]
        x = rng.uniform(-1, 1, (3, 3, size, size))
        targets = model.forward(x).argsort(axis=1)[:, -2]
        errors = cam_errors(model, net, x, layer, targets)
        errors["fullgrad (after scaling)"] = fullgrad_error(model, net, x, targets)
        errors.update(shap_errors(rng))
        return f"{what}, layer {layer}", errors
    report_worst_errors(args.nets, args.seed, one_net, "max |ours - reference| / max |reference|")

if __name__ == "__main__":
    main()
