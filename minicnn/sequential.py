"""Sequential: named layers applied one after the other, the simplest block.

A CNN like VGG is a straight chain, so its backward pass is a plain reversed
loop over the children: no graph engine, no hooks. Each child gets the pass's
one ``BackwardContext``, and each ReLU reads the attribution rule from it:
that single setting is what turns a gradient into a DeconvNet or a Guided
Backprop map. (Blocks in general, residual ones included: ``minicnn.blocks``.)
"""
import numpy as np

from .blocks import Block


class Sequential(Block):
    """Layers applied one after the other, each under a name.

    ``Sequential(Conv2d(...), ReLU())`` names its children "0", "1", ...;
    ``Sequential({"features": Sequential(...), "classifier": ...})`` uses the
    given names. Layers inside nested blocks are reached by dotted names as in
    torchvision: ``model["features.29"]``, ``model.features``.

    After ``forward``, ``self.outputs[name]`` holds the output of every layer
    and block below (the arrays themselves, no copies), a block's after its
    children's.
    """

    def __init__(self, *layers):
        if len(layers) == 1 and isinstance(layers[0], dict):
            children = dict(layers[0])
        else:
            children = {str(i): layer for i, layer in enumerate(layers)}
        super().__init__(children)

    def forward(self, x):
        """x: the first layer's input -> the last layer's output."""
        if self.is_root:                     # checked once, where the data comes in
            if not isinstance(x, np.ndarray):
                raise TypeError(f"{self.name}: expected a NumPy array, got {type(x).__name__}")
            if x.dtype.kind == "f" and not np.isfinite(x).all():
                raise ValueError(f"{self.name}: the input contains NaN or infinity; only finite values are accepted")
            self.outputs, self.inputs = {}, {}
        return self.chain(self.children, x)

    def backprop(self, dout, ctx):
        """The gradient at the last layer's output -> at the first layer's input: the children in reverse."""
        return self.chain_back(list(self.children), dout, ctx)
