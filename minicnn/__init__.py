"""minicnn: a small CNN engine in NumPy, with forward and backward side by side.

    from minicnn import Conv2d, ReLU, MaxPool2d, Sequential
    model = Sequential(Conv2d(3, 8, 3, padding=1), ReLU(), MaxPool2d(2))
    out = model.forward(x)                              # x: (N, 3, H, W)
    dx = model.backward(dout, relu_rule="guided")       # the Guided Backprop rule at every ReLU
"""
from .layers import (RELU_RULES, AdaptiveAvgPool2d, AvgPool2d, BatchNorm2d, ConstantPad2d, Conv2d, Dropout, Flatten,
                     Identity, Layer, Linear, MaxPool2d, Normalize, ReLU)
from .blocks import BackwardContext, Block, Residual
from .sequential import Sequential
from .losses import softmax, softmax_cross_entropy
from .optim import SGD, Adam
from .train import evaluate_accuracy, fit
from .gradcheck import check_layer, numeric_vjp, rel_error
from .checkpoint import CheckpointError, load_torch_checkpoint
from .weights import load_weights, save_weights
from . import hub, models

__version__ = "0.1.0"

__all__ = [
    "RELU_RULES", "AdaptiveAvgPool2d", "AvgPool2d", "BatchNorm2d", "ConstantPad2d", "Conv2d", "Dropout", "Flatten",
    "Identity", "Layer", "Linear", "MaxPool2d", "Normalize", "ReLU", "BackwardContext", "Block", "Residual", "Sequential", "softmax", "softmax_cross_entropy", "SGD", "Adam", "evaluate_accuracy",
    "fit", "check_layer", "numeric_vjp", "rel_error", "CheckpointError", "load_torch_checkpoint", "load_weights",
    "save_weights", "hub", "models",
]
