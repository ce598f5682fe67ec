"""VGG-16 against PyTorch: a torchvision-layout net built by hand in torch with
random weights, saved in both formats, read by minicnn, compared.

minicnn's VGG takes images in [0, 1] and normalizes in its first layer; the
torch twin does the same normalization (torchvision's transform) in its
forward, so the compared models are the same function of the image."""
import numpy as np
import pytest

import minicnn as mc
import minicnn.models as models
from minicnn.imagenet import MEAN as IMAGENET_MEAN, STD as IMAGENET_STD
from minicnn.hub import convert
from minicnn.weights import load_weights

from conftest import needs_torch, torch

pytestmark = needs_torch


def torch_vgg(cfg, width=1.0, hidden=4096, num_classes=1000, pool=7, normalize=True):
    """torchvision's VGG layout, written out with torch.nn (no torchvision needed); with normalize, the
    ImageNet normalization first, as minicnn's vgg does."""
    nn = torch.nn
    layers, c = [], 3
    for v in models.VGG_CONFIGS[cfg]:
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            out = max(1, int(round(v * width)))
            layers += [nn.Conv2d(c, out, 3, padding=1), nn.ReLU(inplace=True)]
            c = out

    class VGG(nn.Module):
        def __init__(self):
            super().__init__()
            self.features = nn.Sequential(*layers)
            self.avgpool = nn.AdaptiveAvgPool2d((pool, pool))
            self.classifier = nn.Sequential(nn.Linear(c * pool * pool, hidden), nn.ReLU(True), nn.Dropout(),
                                            nn.Linear(hidden, hidden), nn.ReLU(True), nn.Dropout(),
                                            nn.Linear(hidden, num_classes))

        def forward(self, x):
            if normalize:                                 # transforms.Normalize, here inside the model
                mean = torch.tensor(IMAGENET_MEAN, dtype=x.dtype).reshape(1, 3, 1, 1)
                std = torch.tensor(IMAGENET_STD, dtype=x.dtype).reshape(1, 3, 1, 1)
                x = (x - mean) / std
            return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))

    torch.manual_seed(0)
    return VGG().eval()


def _compare(model, net, x, target):
    """logits and the input gradient of one logit, minicnn vs torch."""
    logits = model.forward(x)
    dout = np.zeros_like(logits)
    dout[:, target] = 1
    dx = model.backward(dout)
    tx = torch.tensor(x, requires_grad=True)
    tlogits = net(tx)
    tlogits[:, target].sum().backward()
    return logits, dx, tlogits.detach().numpy(), tx.grad.numpy()


@pytest.mark.parametrize("fmt", ["zip", "legacy"])
def test_reduced_vgg16_both_formats_float64(tmp_path, fmt):
    net = torch_vgg("vgg16", width=1 / 8, hidden=64, num_classes=20).double()
    path = tmp_path / "w.pth"
    torch.save(net.state_dict(), path, _use_new_zipfile_serialization=(fmt == "zip"))
    model = load_weights(models.vgg("vgg16", width=1 / 8, hidden=64, num_classes=20, dtype=np.float64), path)
    x = np.random.default_rng(0).uniform(0, 1, (2, 3, 64, 64))          # images in [0, 1]
    logits, dx, tlogits, tdx = _compare(model, net, x, target=7)
    assert mc.rel_error(logits, tlogits) <= 1e-10
    assert mc.rel_error(dx, tdx) <= 1e-10


@pytest.mark.slow
def test_full_vgg16_from_torch_files(tmp_path):
    net = torch_vgg("vgg16")
    assert sum(p.numel() for p in net.parameters()) == 138_357_544
    pth = tmp_path / "vgg16-test.pth"
    torch.save(net.state_dict(), pth, _use_new_zipfile_serialization=False)    # torchvision's (legacy) format
    npz = convert("vgg16", pth, tmp_path / "vgg16-test.npz")
    x = np.random.default_rng(1).uniform(0, 1, (1, 3, 224, 224)).astype(np.float32)
    model = models.vgg16(weights=npz)
    logits, _, tlogits, _ = _compare(model, net, x, target=3)
    assert np.linalg.norm(logits - tlogits) <= 1e-5 * np.linalg.norm(tlogits)
    model.to(np.float64)                               # the same weights, now in float64 on both sides
    net.double()
    from minicnn import winograd
    with winograd.disabled():                          # the direct route everywhere
        logits, dx, tlogits, tdx = _compare(model, net, x.astype(np.float64), target=3)
    assert mc.rel_error(logits, tlogits) <= 1e-10
    assert mc.rel_error(dx, tdx) <= 1e-10
    with winograd.enabled():                           # issue 25: the Winograd route where it pays, as exact
        assert winograd.pays(512, 512, (3, 3), (1, 1), (1, 1), 28, 28)
        logits = model.forward(x.astype(np.float64))
        dx = model.backward(np.eye(logits.shape[1])[[3]])
    assert mc.rel_error(logits, tlogits) <= 1e-10
    assert mc.rel_error(dx, tdx) <= 1e-10
