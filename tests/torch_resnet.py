"""A PyTorch ResNet with torchvision's module names and forward (torchvision itself cannot be installed here:
its only build on the index pulls a multi-GB GPU torch). Imported only when torch is installed.

``BasicBlock`` and ``Bottleneck`` follow torchvision/models/resnet.py: one ReLU module per block, used two or
three times (why Captum's DeepLift refuses torchvision's ResNet); ``untie_relus`` gives each use its own, as
users who copy resnet.py do. ``install_torchvision_stub`` binds these two classes to the names Zennit's ResNet
canonizer looks for, so that its Sum step really runs (a stub with dummy classes silently skips it).
"""
import sys
import types

import numpy as np
import torch
import torch.nn as nn


def conv3x3(cin, cout, stride=1):
    return nn.Conv2d(cin, cout, 3, stride, 1, bias=False)


def conv1x1(cin, cout, stride=1):
    return nn.Conv2d(cin, cout, 1, stride, bias=False)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1, self.bn1 = conv3x3(inplanes, planes, stride), nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2, self.bn2 = conv3x3(planes, planes), nn.BatchNorm2d(planes)
        self.downsample, self.stride = downsample, stride

    def forward(self, x):
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        return self.relu(out)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1, self.bn1 = conv1x1(inplanes, planes), nn.BatchNorm2d(planes)
        self.conv2, self.bn2 = conv3x3(planes, planes, stride), nn.BatchNorm2d(planes)
        self.conv3, self.bn3 = conv1x1(planes, planes * 4), nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample, self.stride = downsample, stride

    def forward(self, x):
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        return self.relu(out)


class ResNet(nn.Module):
    def __init__(self, block, layers, num_classes=1000, width=1.0):
        super().__init__()
        planes = [max(1, int(round(p * width))) for p in (64, 128, 256, 512)]
        self.inplanes = planes[0]
        self.conv1 = nn.Conv2d(3, self.inplanes, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(self.inplanes)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.layer1 = self._make_layer(block, planes[0], layers[0])
        self.layer2 = self._make_layer(block, planes[1], layers[1], 2)
        self.layer3 = self._make_layer(block, planes[2], layers[2], 2)
        self.layer4 = self._make_layer(block, planes[3], layers[3], 2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(planes[3] * block.expansion, num_classes)

    def _make_layer(self, block, planes, blocks, stride=1):
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(conv1x1(self.inplanes, planes * block.expansion, stride),
                                       nn.BatchNorm2d(planes * block.expansion))
        layers = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


class Normalized(nn.Module):
    """(x - mean) / std, then the network: the twin of a minicnn model with normalize=True."""

    def __init__(self, net, mean, std):
        super().__init__()
        self.net = net
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1))

    def forward(self, x):
        return self.net((x - self.mean) / self.std)


def random_statistics(net, seed=0):
    """Batch-norm weights and running statistics far from their defaults (mean 0, var 1, gamma 1, beta 0),
    so that a layer that ignored them, or applied them wrongly, shows."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.weight.copy_(torch.rand(n, generator=g) * 1.5 + 0.25)
                m.bias.copy_(torch.randn(n, generator=g) * 0.5)
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.8)
                m.running_var.copy_(torch.rand(n, generator=g) * 3 + 0.2)
                m.num_batches_tracked.fill_(17)
    return net


def torch_resnet(block, layers, width=0.125, num_classes=7, seed=0, dtype=torch.float64):
    """A small torch ResNet (torchvision's names) with random weights and batch-norm statistics, in eval mode."""
    torch.manual_seed(seed)
    net = ResNet(BasicBlock if block == "basic" else Bottleneck, layers, num_classes, width)
    return random_statistics(net, seed).to(dtype).eval()


def to_minicnn(net, block, layers, width, num_classes, normalize=False):
    """The minicnn ResNet with ``net``'s weights, loaded by name from its state dict."""
    from minicnn import models
    model = models.resnet(block, layers, num_classes, normalize=normalize, width=width, dtype=np.float64)
    return model.load_state_dict({k: v.detach().cpu().numpy() for k, v in net.state_dict().items()})


def untie_relus(net):
    """Give every use of a block's ReLU its own module (what Captum's DeepLift needs): the block's forward
    is replaced by one that calls relu, relu_b, relu_c in turn."""
    for m in net.modules():
        if isinstance(m, (BasicBlock, Bottleneck)):
            m.relu_b, m.relu_c = nn.ReLU(), nn.ReLU()
            m.relu = nn.ReLU()
            m.forward = types.MethodType(_untied_forward, m)
    net.relu = nn.ReLU()
    return net


def _untied_forward(self, x):
    identity = x if self.downsample is None else self.downsample(x)
    out = self.relu(self.bn1(self.conv1(x)))
    if isinstance(self, Bottleneck):
        out = self.relu_b(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
    else:
        out = self.bn2(self.conv2(out))
    return self.relu_c(out + identity)


def install_torchvision_stub():
    """torchvision.models.resnet.BasicBlock/Bottleneck as these classes, before Zennit is imported; and the
    names pytorch-grad-cam imports at module level (transforms, transforms.functional.resize, ops), which
    the CAM computations compared in the tests never call."""
    names = ("torchvision", "torchvision.models", "torchvision.models.resnet", "torchvision.transforms",
             "torchvision.transforms.functional", "torchvision.ops")
    tv, models, resnet, transforms, functional, ops = (types.ModuleType(n) for n in names)
    resnet.BasicBlock, resnet.Bottleneck, resnet.ResNet = BasicBlock, Bottleneck, ResNet
    tv.models, models.resnet = models, resnet

    def unused(*args, **kwargs):
        raise NotImplementedError("a torchvision stub (tests/torch_resnet.py): not used by the compared code")
    transforms.Compose = transforms.Normalize = transforms.ToTensor = functional.resize = ops.box_iou = unused
    tv.transforms, transforms.functional, tv.ops = transforms, functional, ops
    sys.modules.update(dict(zip(names, (tv, models, resnet, transforms, functional, ops))))
