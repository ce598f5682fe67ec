"""Blocks: a network is a tree of them. A block is a layer made of named children.

Every block (``Sequential``, ``Residual``, one you write) does two things:

    forward(x)            runs its children with ``self.run(name, x)``
    backprop(dout, ctx)   sends the gradient back through them with ``self.back(name, dout, ctx)``

``run`` keeps each child's input and output (``outputs`` holds every layer's
output by its dotted name, ``"layer3.1.conv2"``); ``back`` hands the child the
one ``BackwardContext`` of the pass unchanged. So a ReLU anywhere in any block
gets the attribution rule, and no container ever asks what kind of layer its
children are: each layer reads, in its own ``backprop``, the setting it uses.

Everything else is one recursion over the children, as in ``torch.nn.Module``:
``named_layers``, ``parameters``, ``state_dict``, ``load_state_dict``,
``to``, ``train``/``eval``, ``replace``, and ``backward(until=...)``.

A residual block (He et al. 2016) is its equation:

    forward:   out = relu(body(x) + shortcut(x))
    backward:  the sum passes its gradient to both branches unchanged;
               the fork at x adds what the two branches send back.
"""
import dataclasses
from typing import Callable, Optional

import numpy as np

from .layers import RELU_RULES, Layer


@dataclasses.dataclass(frozen=True)
class BackwardContext:
    """The settings of one backward pass, handed unchanged to every layer in the tree.

    relu_rule: what every ReLU does ("gradient", "deconvnet", "guided", "rescale").
    param_grads: also fill each layer's ``grads`` (training).
    reference: for "rescale" (DeepLIFT), {layer name: cache} from a forward
        pass on the baseline (``model.caches()``).
    rules: for LRP, {layer name: rule}: the named layers pass relevance by
        their rule ``rule(layer, a, R)`` instead of their backward.
    sum_rule: for LRP, how relevance splits at a residual sum,
        ``sum_rule(R, summands) -> one R per summand``; None: the gradient's
        way, each summand gets all of it.
    until: stop at this layer and return the gradient arriving at its output.
    keep: {layer name: None}, filled in as the pass goes with the gradient
        arriving at each named layer's output (FullGrad reads every bias's).
    """
    relu_rule: str = "gradient"
    param_grads: bool = False
    reference: Optional[dict] = None
    rules: Optional[dict] = None
    sum_rule: Optional[Callable] = None
    until: Optional[str] = None
    keep: Optional[dict] = None

    def __post_init__(self):
        if self.relu_rule not in RELU_RULES:
            raise ValueError(f"unknown relu_rule {self.relu_rule!r}; use one of {RELU_RULES}")
        if (self.relu_rule == "rescale") != (self.reference is not None):
            raise ValueError("relu_rule='rescale' (DeepLIFT) goes with reference=model.caches() from a forward pass "
                             "on the baseline, and reference with no other rule")

    def reference_for(self, layer):
        """The layer's cache on the baseline (DeepLIFT), or None when this pass has no reference."""
        if self.reference is None:
            return None
        if layer.name not in self.reference:
            raise ValueError(f"{layer.name}: the reference has no entry for this layer; pass "
                             f"reference=model.caches() right after a forward pass on the baseline")
        return self.reference[layer.name]


class Reached(Exception):
    """Raised by ``Block.back`` at ``ctx.until``, carrying the gradient there to ``Block.backward``."""

    def __init__(self, gradient):
        super().__init__("the backward pass reached its 'until' layer")
        self.gradient = gradient


class Block(Layer):
    """A layer made of named child layers (which may be blocks themselves).

    Subclasses write ``forward(x)`` with ``self.run(name, x)`` and
    ``backprop(dout, ctx)`` with ``self.back(name, dout, ctx)``. A block you
    write works with every method: see the README ("A block of your own").

    children: {name: layer}; names are non-empty and dot-free. The names of
    all layers below are dotted paths, torchvision's (``layer1.0.downsample.1``).
    """

    def __init__(self, children):
        super().__init__()
        self.children = {}
        for name, layer in children.items():
            if not isinstance(layer, Layer):
                raise TypeError(f"{type(self).__name__}: child {name!r} is a {type(layer).__name__}, "
                                f"not a minicnn layer")
            if not isinstance(name, str) or not name or "." in name:
                raise ValueError(f"{type(self).__name__}: child names must be non-empty strings without dots, "
                                 f"got {name!r}")
            self.children[name] = layer
        self.inputs = {}                       # child name -> its input in the last forward
        self.outputs = {}                      # dotted name -> output in the last forward, for every layer below
        self._set_names("")
        self._check_unique()

    # --- the two steps a block is written with ---

    def run(self, name, x):
        """Child ``name`` on x; its input and output (and those of every layer inside it) are kept."""
        child = self.children[name]
        out = child.forward(x)
        self.inputs[name] = x
        if isinstance(child, Block):
            self.outputs.update(child.outputs)
        self.outputs[child.name] = out
        return out

    def back(self, name, dout, ctx):
        """Child ``name``'s step of the backward pass: the gradient (or relevance) at its output -> at its input."""
        child = self.children[name]
        if ctx.keep is not None and child.name in ctx.keep:
            ctx.keep[child.name] = dout
        if child.name == ctx.until:
            raise Reached(dout)
        if ctx.rules is not None and child.name in ctx.rules:          # LRP: this layer's relevance rule
            return ctx.rules[child.name](child, self.inputs[name], dout)
        return child.backprop(dout, ctx)

    def chain(self, names, x):
        """The children ``names`` one after the other on x."""
        for name in names:
            x = self.run(name, x)
        return x

    def chain_back(self, names, dout, ctx):
        """The backward of ``chain(names, x)``: the same children in reverse order."""
        for name in reversed(names):
            dout = self.back(name, dout, ctx)
        return dout

    def forward(self, x):
        raise NotImplementedError(f"{type(self).__name__} must define forward(x) with self.run(name, x)")

    def backprop(self, dout, ctx):
        raise NotImplementedError(f"{type(self).__name__} must define backprop(dout, ctx) with "
                                  f"self.back(name, dout, ctx)")

    # --- the backward pass of a whole model ---

    def backward(self, dout, relu_rule="gradient", param_grads=False, until=None, reference=None, rules=None,
                 sum_rule=None, keep=None):
        """Backpropagate ``dout`` (the gradient of some score w.r.t. the output) through every layer.

        relu_rule: "gradient" (Vanilla Gradient), "deconvnet", "guided" or
            "rescale" (DeepLIFT); every ReLU in the tree applies it. All other
            layers use their ordinary gradient, except that "rescale" also
            gives each max-pool its reference (DeepLIFT's max-pool rule).
        param_grads: also fill every layer's ``grads`` (for training).
        until: a layer or block name; stop there and return the gradient
            arriving at its output (Grad-CAM's dy/dA). None goes to the input.
        reference: for "rescale", ``caches()`` saved after a forward pass on
            the baseline (the reference input of every ReLU and max-pool).
        rules, sum_rule: LRP's (``attribution.lrp``), see ``BackwardContext``.
        keep: a dict whose keys are layer names; the pass stores the gradient
            arriving at each one's output there (``keep = dict.fromkeys(names)``).
        Returns the gradient w.r.t. the model's input (or ``until``'s output).
        """
        ctx = BackwardContext(relu_rule, bool(param_grads), reference, rules, sum_rule, until, keep)
        for name in ([until] if until is not None else []) + list(keep or []):
            if name not in self.outputs:
                raise KeyError(f"no layer named {name!r} has an output from the last forward pass; layers are: "
                               f"{', '.join(self.outputs) or '(none: run forward first)'}")
        try:
            return self.backprop(dout, ctx)
        except Reached as stop:
            return stop.gradient

    def caches(self):
        """{name: layer.cache} of every layer after a forward pass: what ``backward(..., reference=...)``
        needs from a pass on the baseline (the arrays themselves, no copies)."""
        return {name: layer.cache for name, layer in self.named_layers()}

    # --- names ---

    def _set_names(self, prefix):
        """Give every layer below its dotted name (the root is "model")."""
        self.name = prefix.rstrip(".") or "model"
        self.is_root = prefix == ""
        for name, child in self.children.items():
            if isinstance(child, Block):
                child._set_names(prefix + name + ".")
            else:
                child.name = prefix + name

    def _check_unique(self):
        """One layer object in two places would share one cache: the second forward overwrites what the first
        backward needs, and gradients come out silently wrong. Refuse it (torchvision's ResNet reuses one
        ReLU per block; here each use is its own ReLU)."""
        seen = {}

        def paths(block, prefix):              # dotted paths worked out here: a shared layer has one .name only
            for key, child in block.children.items():
                yield prefix + key, child
                if isinstance(child, Block):
                    yield from paths(child, prefix + key + ".")
        for name, layer in paths(self, "" if self.is_root else self.name + "."):
            if id(layer) in seen:
                raise ValueError(f"the same {type(layer).__name__} object is used twice, as {seen[id(layer)]} and "
                                 f"{name}; create a new layer for each place (e.g. ReLU() twice)")
            seen[id(layer)] = name

    def named_modules(self):
        """[(name, layer)] of every layer and block below, parents before their children, in forward order."""
        found = []
        for child in self.children.values():
            found.append((child.name, child))
            if isinstance(child, Block):
                found += child.named_modules()
        return found

    def blocks(self):
        """This block and every block below it (containers only), parents first."""
        return [self] + [layer for _, layer in self.named_modules() if isinstance(layer, Block)]

    def named_layers(self):
        """[(name, layer)] of the leaf layers (no blocks) in forward order, e.g. ("layer1.0.conv1", Conv2d)."""
        return [(name, layer) for name, layer in self.named_modules() if not isinstance(layer, Block)]

    def layer_names(self):
        return [name for name, _ in self.named_layers()]

    def __getitem__(self, key):
        """A child by position (``model[0]``) or any layer or block by dotted name (``model["layer1.0.conv1"]``)."""
        if isinstance(key, int):
            return list(self.children.values())[key]
        node = self
        for part in str(key).split("."):
            if not isinstance(node, Block) or part not in node.children:
                raise KeyError(f"no layer named {key!r}; layers are: {', '.join(n for n, _ in self.named_modules())}")
            node = node.children[part]
        return node

    def __getattr__(self, attr):
        children = self.__dict__.get("children", {})
        if attr in children:
            return children[attr]
        raise AttributeError(f"{type(self).__name__} has no attribute or child {attr!r}")

    def __len__(self):
        return len(self.children)

    def __iter__(self):
        return iter(self.children.values())

    def replace(self, name, layer):
        """Put ``layer`` where the layer (or block) ``name`` is, e.g.
        ``model.replace("maxpool", Identity())``; returns the old one.

        Call it on the whole model: every dotted name is worked out again.
        """
        if not isinstance(layer, Layer):
            raise TypeError(f"replace: {name!r} must become a minicnn layer, got {type(layer).__name__}")
        old = self[name]                                 # KeyError listing the layers if there is none
        parent_name, _, child = name.rpartition(".")
        parent = self[parent_name] if parent_name else self
        prefix = "" if self.is_root else self.name + "."
        parent.children[child] = layer
        self._set_names(prefix)
        try:
            self._check_unique()
        except ValueError:
            parent.children[child] = old               # leave the model as it was
            self._set_names(prefix)
            raise
        for block in self.blocks():
            block.outputs, block.inputs = {}, {}         # the last forward's outputs no longer fit the tree
        return old

    def __repr__(self):
        lines = [f"{type(self).__name__}("]
        for name, layer in self.children.items():
            inner = repr(layer).replace("\n", "\n  ")
            lines.append(f"  ({name}): {inner}")
        return "\n".join(lines) + "\n)"

    # --- modes, dtypes, parameters: one recursion each ---

    def train(self, mode=True):
        """Training mode (Dropout active, batch norm on batch statistics) for every layer; returns self."""
        self.training = mode
        for _, layer in self.named_modules():
            layer.training = mode
        return self

    def eval(self):
        return self.train(False)

    def to(self, dtype):
        """Convert every parameter and floating-point buffer to ``dtype`` (np.float32 or np.float64); returns self."""
        dtype = np.dtype(dtype)
        if dtype.kind != "f":
            raise TypeError(f"model.to: expected a floating-point dtype (np.float32, np.float64), got {dtype}")
        for _, layer in self.named_layers():
            for store in (layer.params, layer.buffers):
                for key, value in store.items():
                    if value.dtype.kind == "f":
                        store[key] = value.astype(dtype)
            layer.grads = {}
        return self

    @property
    def dtype(self):
        for _, layer in self.named_layers():
            for value in layer.params.values():
                return value.dtype
        return None

    def parameters(self):
        """[(name, value, grad)] for every trainable parameter, e.g. ("layer1.0.conv1.weight", array, array).

        grad is None until ``backward(..., param_grads=True)`` has run. Buffers
        (batch norm's running statistics) are not parameters: see ``state_dict``.
        """
        return [(f"{name}.{key}", value, layer.grads.get(key))
                for name, layer in self.named_layers() for key, value in layer.params.items()]

    def num_parameters(self):
        return sum(value.size for _, value, _ in self.parameters())

    def _entries(self):
        """{state-dict key: (layer, store, key in the store)} for every parameter and buffer, PyTorch's order."""
        return {f"{name}.{key}": (layer, store, key) for name, layer in self.named_layers()
                for store in (layer.params, layer.buffers) for key in store}

    def state_dict(self):
        """{name: copy} of every parameter and buffer, with PyTorch's key names."""
        return {k: store[key].copy() for k, (_, store, key) in self._entries().items()}

    def load_state_dict(self, state, strict=True):
        """Copy arrays from ``state`` into the parameters and buffers (cast to their dtype).

        Raises ValueError listing every missing, unexpected and mis-shaped
        entry. A layer's optional buffers (batch norm's
        ``num_batches_tracked``) may be missing. With strict=False, missing and
        unexpected keys are allowed but shapes must still agree.
        """
        own = self._entries()
        missing = [k for k, (layer, _, key) in own.items()
                   if k not in state and key not in getattr(layer, "optional_buffers", ())]
        unexpected = [k for k in state if k not in own]
        mis_shaped = [f"{k}: expected {store[key].shape}, got {np.shape(state[k])}"
                      for k, (_, store, key) in own.items() if k in state and np.shape(state[k]) != store[key].shape]
        problems = []
        if mis_shaped:
            problems.append("mis-shaped: " + "; ".join(mis_shaped))
        if strict and missing:
            problems.append("missing: " + ", ".join(missing))
        if strict and unexpected:
            problems.append("unexpected: " + ", ".join(unexpected))
        if problems:
            raise ValueError("load_state_dict: the weights do not fit this model; " + " | ".join(problems))
        converted = {}                         # convert and check everything before changing anything
        for k, (_, store, key) in own.items():
            if k in state:
                converted[k] = np.array(state[k], dtype=store[key].dtype)
                if not np.isfinite(converted[k]).all():
                    raise ValueError(f"load_state_dict: {k} contains NaN or infinity")
        for k, value in converted.items():
            _, store, key = own[k]
            store[key] = value
        return self


class Residual(Block):
    """A residual block (He et al. 2016): ``out = after(body(x) + shortcut(x))``.

    body, shortcut, after: {name: layer}, each applied in order; an empty
    shortcut is the identity. All become children of the block under their
    names, so torchvision's ResNet blocks keep torchvision's names (``conv1``,
    ``bn1``, ..., ``downsample``): see ``minicnn.models.basic_block``.
    """

    def __init__(self, body, shortcut=None, after=None):
        shortcut, after = shortcut or {}, after or {}
        self.body, self.shortcut, self.after = list(body), list(shortcut), list(after)
        super().__init__({**body, **shortcut, **after})
        if len(self.children) != len(self.body) + len(self.shortcut) + len(self.after):
            raise ValueError("Residual: body, shortcut and after must not share a child name")

    def forward(self, x):
        """x: (N, C, H, W) -> out: (N, C', H', W'). Cache: the two summands (LRP splits relevance by them)."""
        body, shortcut = self.chain(self.body, x), self.chain(self.shortcut, x)
        if body.shape != shortcut.shape:
            raise ValueError(f"{self.name}: the body gives {body.shape} but the shortcut {shortcut.shape}; "
                             f"a shortcut that changes channels or stride needs a downsample")
        self.cache = (body, shortcut)
        return self.chain(self.after, body + shortcut)                     # out = relu(body(x) + shortcut(x))

    def backprop(self, dout, ctx):
        """dout: the gradient at the block's output -> at its input."""
        g = self.chain_back(self.after, dout, ctx)                          # back through the ReLU after the sum

        def share(g, k):                    # what summand k receives: all of g (a sum's gradient), or LRP's share
            return g if ctx.sum_rule is None else ctx.sum_rule(g, self._cached())[k]

        def body_backward(g):
            return self.chain_back(self.body, share(g, 0), ctx)

        def shortcut_backward(g):
            return self.chain_back(self.shortcut, share(g, 1), ctx)

        # Assignment E's residual_backward(dout, s, ...) with s = 1: the ReLU after the sum is done above,
        # by ctx's rule.
        # BEGIN SOLUTION residual.residual_backward(g, np.ones_like(g), body_backward, shortcut_backward)
        return body_backward(g) + shortcut_backward(g)                      # the fork: what comes back adds up
        # END SOLUTION
