"""Sequential: a chain of named layers, and the only "graph" minicnn needs.

A CNN like VGG is a straight chain, so the backward pass is a plain reversed
loop over the layers: no graph engine, no hooks. The loop hands the ReLU rule
to every ReLU, and that single argument is what turns a gradient into a
DeconvNet or a Guided Backprop map.
"""
import numpy as np

from .layers import RELU_RULES, Layer, MaxPool2d, ReLU


class Sequential(Layer):
    """Layers applied one after the other, each under a name.

    ``Sequential(Conv2d(...), ReLU())`` names its children "0", "1", ...;
    ``Sequential({"features": Sequential(...), "classifier": ...})`` uses the
    given names. Nested Sequentials are allowed and their layers are reached
    by dotted names as in torchvision: ``model["features.29"]``.

    After ``forward``, ``self.outputs[name]`` holds every layer's output (the
    arrays themselves, no copies).
    """

    def __init__(self, *layers):
        super().__init__()
        if len(layers) == 1 and isinstance(layers[0], dict):
            items = list(layers[0].items())
        else:
            items = [(str(i), layer) for i, layer in enumerate(layers)]
        self.children = {}
        for name, layer in items:
            if not isinstance(layer, Layer):
                raise TypeError(f"Sequential: child {name!r} is a {type(layer).__name__}, not a minicnn layer")
            if not isinstance(name, str) or not name or "." in name:
                raise ValueError(f"Sequential: child names must be non-empty strings without dots, got {name!r}")
            self.children[name] = layer
        self.outputs = {}
        self._set_names("")
        self._check_unique()

    def _check_unique(self):
        """One layer object in two places would share one cache: the second forward overwrites what the first
        backward needs, and gradients come out silently wrong. Refuse it."""
        seen = {}
        for name, layer in self._flat:
            if id(layer) in seen:
                raise ValueError(f"the same {type(layer).__name__} object is used twice, as {seen[id(layer)]} and "
                                 f"{name}; create a new layer for each place (e.g. ReLU() twice)")
            seen[id(layer)] = name

    def _set_names(self, prefix):
        self.name = prefix.rstrip(".") or "model"
        self._flat = []                        # [(qualified name, leaf layer)] in forward order
        self._last_leaf = {}                   # container name -> the leaf whose output is its output
        for name, layer in self.children.items():
            if isinstance(layer, Sequential):
                layer._set_names(prefix + name + ".")
                self._flat += layer._flat
                self._last_leaf.update(layer._last_leaf)
                if layer._flat:
                    self._last_leaf[prefix + name] = layer._flat[-1][0]
            else:
                layer.name = prefix + name
                self._flat.append((layer.name, layer))

    # --- looking layers up by name ---

    def named_layers(self):
        """[(name, layer)] of the leaf layers in forward order, e.g. ("features.0", Conv2d)."""
        return list(self._flat)

    def layer_names(self):
        return [name for name, _ in self._flat]

    def _leaf_name(self, name):
        """The leaf whose output is ``name``'s output (a container ends with its last leaf)."""
        if any(n == name for n, _ in self._flat):
            return name
        if name in self._last_leaf:
            return self._last_leaf[name]
        raise KeyError(f"no layer named {name!r}; layers are: {', '.join(self.layer_names())}")

    def __getitem__(self, key):
        if isinstance(key, int):
            return list(self.children.values())[key]
        for name, layer in self._flat:
            if name == key:
                return layer
        node = self
        for part in str(key).split("."):
            if not isinstance(node, Sequential) or part not in node.children:
                raise KeyError(f"no layer named {key!r}; layers are: {', '.join(self.layer_names())}")
            node = node.children[part]
        return node

    def __getattr__(self, attr):
        children = self.__dict__.get("children", {})
        if attr in children:
            return children[attr]
        raise AttributeError(f"{type(self).__name__} has no attribute or child {attr!r}")

    def __len__(self):
        return len(self.children)

    def replace(self, name, layer):
        """Put ``layer`` where the layer (or block) ``name`` is, e.g.
        ``model.replace("features.0", Sequential(ConstantPad2d(1), conv))``; returns the old one.

        Call it on the whole model: every dotted name is worked out again.
        """
        if not isinstance(layer, Layer):
            raise TypeError(f"replace: {name!r} must become a minicnn layer, got {type(layer).__name__}")
        old = self[name]                                 # KeyError listing the layers if there is none
        parent_name, _, child = name.rpartition(".")
        parent = self[parent_name] if parent_name else self
        parent.children[child] = layer
        self._set_names("" if self.name == "model" else self.name + ".")
        try:
            self._check_unique()
        except ValueError:
            parent.children[child] = old               # leave the model as it was
            self._set_names("" if self.name == "model" else self.name + ".")
            raise
        return old

    def __repr__(self):
        lines = ["Sequential("]
        for name, layer in self.children.items():
            inner = repr(layer).replace("\n", "\n  ")
            lines.append(f"  ({name}): {inner}")
        return "\n".join(lines) + "\n)"

    # --- forward and backward ---

    def forward(self, x):
        """x: the first layer's input -> the last layer's output.

        Every layer's output is kept in ``self.outputs`` by name.
        """
        if not isinstance(x, np.ndarray):
            raise TypeError(f"{self.name}: expected a NumPy array, got {type(x).__name__}")
        if x.dtype.kind == "f" and not np.isfinite(x).all():
            raise ValueError(f"{self.name}: the input contains NaN or infinity; only finite values are accepted")
        self.outputs = {}
        for name, layer in self._flat:
            x = layer.forward(x)
            self.outputs[name] = x
        return x

    def backward(self, dout, relu_rule="gradient", param_grads=False, until=None, reference=None):
        """Backpropagate ``dout`` (the gradient of some score w.r.t. the output).

        relu_rule: "gradient" (Vanilla Gradient), "deconvnet", "guided" or
            "rescale" (DeepLIFT), handed to every ReLU; all other layers use
            their ordinary gradient, except that "rescale" also gives each
            max-pool its reference (DeepLIFT's rescale treatment of max-pooling).
        param_grads: also fill every layer's ``grads`` (for training).
        until: a layer name; stop there and return the gradient arriving at
            that layer's output (Grad-CAM's dy/dA). None goes to the input.
        reference: for "rescale", ``caches()`` saved after a forward pass on
            the baseline (the reference input of every ReLU and max-pool).
        Returns the gradient w.r.t. the model's input (or ``until``'s output).
        """
        if relu_rule not in RELU_RULES:
            raise ValueError(f"unknown relu_rule {relu_rule!r}; use one of {RELU_RULES}")
        if (relu_rule == "rescale") != (reference is not None):
            raise ValueError("relu_rule='rescale' (DeepLIFT) goes with reference=model.caches() from a forward pass "
                             "on the baseline, and reference with no other rule")
        stop = None if until is None else self._leaf_name(until)
        given = dout
        for name, layer in reversed(self._flat):
            if name == stop:
                return dout
            if isinstance(layer, ReLU):
                # a gradient the layers made (not the caller's array, nor a view of it) is rewritten in place
                mine = dout if not np.may_share_memory(dout, given) else None
                dout = layer.backward(dout, rule=relu_rule, reference=None if reference is None else reference[name],
                                      out=mine)
            elif isinstance(layer, MaxPool2d) and reference is not None:
                dout = layer.backward(dout, reference=reference[name])
            else:
                dout = layer.backward(dout, param_grads=param_grads)
        return dout

    def caches(self):
        """{name: layer.cache} after a forward pass: what ``backward(..., reference=...)`` needs
        from a pass on the baseline (the arrays themselves, no copies)."""
        return {name: layer.cache for name, layer in self._flat}

    # --- modes, dtypes, parameters ---

    def train(self, mode=True):
        """Training mode (Dropout active) for every layer; returns self."""
        self.training = mode
        for _, layer in self._flat:
            layer.training = mode
        return self

    def eval(self):
        return self.train(False)

    def to(self, dtype):
        """Convert every parameter to ``dtype`` (np.float32 or np.float64); returns self."""
        dtype = np.dtype(dtype)
        if dtype.kind != "f":
            raise TypeError(f"model.to: expected a floating-point dtype (np.float32, np.float64), got {dtype}")
        for _, layer in self._flat:
            for key, value in layer.params.items():
                layer.params[key] = value.astype(dtype)
            layer.grads = {}
        return self

    @property
    def dtype(self):
        for _, layer in self._flat:
            for value in layer.params.values():
                return value.dtype
        return None

    def parameters(self):
        """[(name, value, grad)] for every parameter, e.g. ("features.0.weight", array, array).

        grad is None until ``backward(..., param_grads=True)`` has run.
        """
        return [(f"{name}.{key}", value, layer.grads.get(key))
                for name, layer in self._flat for key, value in layer.params.items()]

    def num_parameters(self):
        return sum(value.size for _, value, _ in self.parameters())

    def state_dict(self):
        """{name: copy of the parameter}, with PyTorch's key names."""
        return {name: value.copy() for name, value, _ in self.parameters()}

    def load_state_dict(self, state, strict=True):
        """Copy arrays from ``state`` into the parameters (cast to the model's dtype).

        Raises ValueError listing every missing, unexpected and mis-shaped
        entry. With strict=False, missing and unexpected keys are allowed but
        shapes must still agree.
        """
        own = {f"{name}.{key}": (layer, key) for name, layer in self._flat for key in layer.params}
        missing = [k for k in own if k not in state]
        unexpected = [k for k in state if k not in own]
        mis_shaped = [f"{k}: expected {own[k][0].params[own[k][1]].shape}, got {np.shape(state[k])}"
                      for k in own if k in state and np.shape(state[k]) != own[k][0].params[own[k][1]].shape]
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
        for k, (layer, key) in own.items():
            if k in state:
                converted[k] = np.array(state[k], dtype=layer.params[key].dtype)
                if not np.isfinite(converted[k]).all():
                    raise ValueError(f"load_state_dict: {k} contains NaN or infinity")
        for k, value in converted.items():
            layer, key = own[k]
            layer.params[key] = value
        return self
