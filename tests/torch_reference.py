"""PyTorch twins of minicnn models, for the reference tests (imported only when torch is installed).

The DeconvNet and Guided Backprop rules are built as custom autograd
functions, the way a PyTorch user would write them by hand.
"""
import numpy as np
import torch
import torch.nn as nn

import minicnn as mc
from nets import small_vgg  # noqa: F401  (re-exported for the reference tests)


class _RuleReLU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, rule):
        ctx.save_for_backward(x)
        ctx.rule = rule
        return x.clamp(min=0)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        if ctx.rule == "gradient":
            return g * (x > 0), None
        if ctx.rule == "deconvnet":
            return g * (g > 0), None
        return g * (x > 0) * (g > 0), None


class RuleReLU(nn.Module):
    def __init__(self):
        super().__init__()
        self.rule = "gradient"

    def forward(self, x):
        return _RuleReLU.apply(x, self.rule)


def to_torch(model, relu=nn.ReLU):
    """Build the torch.nn twin of a minicnn Sequential, weights copied, same names."""
    def convert(layer):
        if isinstance(layer, mc.Sequential):
            seq = nn.Sequential()
            for name, child in layer.children.items():
                seq.add_module(name, convert(child))
            return seq
        if isinstance(layer, mc.Conv2d):
            t = nn.Conv2d(layer.in_channels, layer.out_channels, layer.kernel_size, layer.stride, layer.padding,
                          bias="bias" in layer.params)
        elif isinstance(layer, mc.Linear):
            t = nn.Linear(layer.in_features, layer.out_features, bias="bias" in layer.params)
        elif isinstance(layer, mc.ReLU):
            return relu()
        elif isinstance(layer, mc.MaxPool2d):
            return nn.MaxPool2d(layer.kernel_size, layer.stride, layer.padding)
        elif isinstance(layer, mc.AvgPool2d):
            return nn.AvgPool2d(layer.kernel_size, layer.stride, layer.padding)
        elif isinstance(layer, mc.AdaptiveAvgPool2d):
            return nn.AdaptiveAvgPool2d(layer.output_size)
        elif isinstance(layer, mc.Flatten):
            return nn.Flatten()
        elif isinstance(layer, mc.Dropout):
            return nn.Dropout(layer.p)
        else:
            raise TypeError(type(layer))
        with torch.no_grad():
            for key, value in layer.params.items():
                getattr(t, key).copy_(torch.from_numpy(value.copy()))
        return t

    net = convert(model)
    return net.to(torch.float64 if model.dtype == np.float64 else torch.float32).eval()


def set_rule(net, rule):
    for m in net.modules():
        if isinstance(m, RuleReLU):
            m.rule = rule
