"""Layer-wise Relevance Propagation (Bach et al. 2015) and Deep Taylor decomposition
(Montavon et al. 2017), on minicnn layers.

Relevance starts as the target's logit and flows back layer by layer. For a
layer with parameters (or a pooling layer), every rule is the same four
steps (Montavon et al., "Layer-wise relevance propagation: an overview",
2019) on the layer's *own* forward and input-backward, run with modified
inputs and weights ``rho(W)``:

    z = forward(a, rho(W)) + eps     # 1. how much each output received
    s = R / z                        # 2. relevance per unit received
    c = backward(s, rho(W))          # 3. sent back along the same (modified) weights
    R_in = a * c                     # 4. each input's share

``four_steps`` below is those four lines, once; every rule is a choice of
``(a, rho(W))`` terms and ``eps``. ReLU, Dropout and Normalize pass relevance
through unchanged; max-pooling, flattening and padding pass it like their
gradient.

Networks with batch norm and skip connections (ResNet) take two more steps,
Zennit's ResNet canonizer, both visible below: ``canonize`` folds every batch
norm into the convolution before it (on a copy of the model, whose logits stay
equal), and ``split_sum`` gives each residual sum its own rule, relevance
split in proportion to each summand's share. Without the split, each sum
copies its relevance to both branches, and it doubles at every block.

The rules are Zennit's *generalized* forms (``zennit/rules.py``), which agree
with the textbook forms on non-negative inputs and stay defined for negative
ones, so that each composite equals Zennit's composite of the same name:

=========================  ================================================================
rule                       what it computes
=========================  ================================================================
``Zero()``                 LRP-0: z = W a + b (equals Gradient x Input on ReLU nets)
``Epsilon(eps)``           z = W a + b, stabilized by eps * sign(z) (sign(0) taken as +1)
``Gamma(gamma)``           favours positive contributions: W + gamma * W+ (Montavon 2019)
``ZPlus()``                z = W+ a+ + W- a- + b+: alpha1-beta0, the Deep Taylor rule
``AlphaBeta(alpha, beta)`` alpha * positive part - beta * negative part, alpha - beta = 1
``Flat()``                 all weights 1, inputs 1, no bias: spreads relevance uniformly
``WSquare()``              weights W**2 (and bias b**2), inputs 1
``ZBox(low, high)``        the bounded input layer: z = W a - W+ low - W- high
``Norm()``                 Epsilon with the stabilizer only, for average pooling
``Pass()``                 relevance passes unchanged (activations)
``Gradient()``             relevance passes like the gradient (max-pool, flatten)
=========================  ================================================================
"""
import copy
import functools

import numpy as np

from minicnn.blocks import Block
from minicnn.layers import (AdaptiveAvgPool2d, AvgPool2d, BatchNorm2d, ConstantPad2d, Conv2d, Dropout, Flatten,
                            Identity, Linear, MaxPool2d, Normalize, ReLU)

from .methods import check_images, check_result, one_hot, resolve_targets

STABILIZER = 1e-6               # Zennit's default epsilon and stabilizer


def positive(value, rule, what="stabilizer", hint=""):
    """``value`` as a float if it is a finite number > 0, else ValueError naming ``rule`` and ``what``:
    a stabilizer of 0 divides by z = 0 and gives NaN, an infinite one gives 0 everywhere."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not (np.isfinite(value) and value > 0):
        raise ValueError(f"{rule}: {what} must be a finite number > 0 (it keeps the denominator z + {what} * "
                         f"sign(z) away from 0), got {value!r}{hint}")
    return float(value)


def stabilize(z, eps):
    """z + eps * sign(z), with sign(0) taken as +1 (Zennit's and Captum's convention)."""
    return z + eps * np.where(z >= 0, 1.0, -1.0).astype(z.dtype)


def four_steps(layer, R, terms, eps):
    """Relevance R at the layer's output -> relevance at its input, for ``terms`` = [(a_k, params_k)]:
    z = sum_k forward(a_k; params_k) + eps*sign; s = R / z; c_k = backward(s; params_k); R_in = sum_k a_k * c_k.
    One term is the epsilon rule on the modified layer; several are that rule on the terms stacked as one
    layer (``StackedTerms``), summed over the terms."""
    modified = [layer.with_params(**params) for _, params in terms]
    if len(terms) == 1:
        return epsilon_steps(modified[0], terms[0][0], R, eps)
    return epsilon_steps(StackedTerms(modified), np.stack([a for a, _ in terms]), R, eps).sum(axis=0)


def epsilon_steps(layer, a, R, eps):
    """The epsilon rule's four steps through one layer (assignment D's ``lrp_epsilon``)."""
    # BEGIN SOLUTION deeplift_lrp.lrp_epsilon(layer, a, R, eps)
    z = layer.forward(a)                                                  # 1. forward
    s = R / stabilize(z, eps)                                             # 2. divide
    c = layer.backward(s)                                                 # 3. backward
    return a * c                                                          # 4. multiply by the input
    # END SOLUTION


class StackedTerms:
    """Several layers as one, for an LRP rule with several terms (a_k, rho_k(W)): ``forward`` of the stacked
    inputs (K, N, ...) is the sum of each layer's forward of its a_k, and ``backward(s)`` stacks each layer's
    backward of s. ``epsilon_steps`` on it, summed over the first axis, is the rule
    sum_k a_k * backward_k(R / (sum_k z_k + eps*sign)): ``four_steps``."""

    def __init__(self, layers):
        self.layers = list(layers)

    def forward(self, a):
        return sum(layer.forward(a_k) for layer, a_k in zip(self.layers, a))

    def backward(self, s):
        return np.stack([layer.backward(s) for layer in self.layers])


def _pos(v):
    return np.maximum(v, 0)


def _neg(v):
    return np.minimum(v, 0)


def _params(layer, weight_fn, bias_fn):
    """{"weight": weight_fn(W), "bias": bias_fn(b)} for the parameters the layer has."""
    p = {}
    if "weight" in layer.params:
        p["weight"] = weight_fn(layer.params["weight"])
    if "bias" in layer.params:
        p["bias"] = bias_fn(layer.params["bias"])
    return p


def _zero(v):
    return np.zeros_like(v)


class Rule:
    """A relevance rule: ``rule(layer, a, R) -> R_in`` with a the layer's input, R the relevance at its output."""

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({args})"


class Epsilon(Rule):
    """z = W a + b + eps * sign(z); R_in = a * W^T (R / z)."""

    def __init__(self, epsilon=STABILIZER):
        self.epsilon = positive(epsilon, "Epsilon", "epsilon", "; for LRP-0 (no stabilizer) use the 'zero' rule")

    def __call__(self, layer, a, R):
        return four_steps(layer, R, [(a, {})], self.epsilon)


class Zero(Rule):
    """LRP-0: Epsilon without a stabilizer; outputs with z = 0 pass no relevance."""

    def __call__(self, layer, a, R):
        modified = layer.with_params()
        z = modified.forward(a)                                               # 1.
        s = np.where(z == 0, 0, R / np.where(z == 0, 1, z))                   # 2. (0 where nothing was received)
        return a * modified.backward(s)                                       # 3. and 4.


class Norm(Epsilon):
    """Epsilon with the stabilizer only, for layers without weights (average pooling)."""


class Gamma(Rule):
    """Generalized gamma rule: positive outputs are explained by W + gamma*W+ on a+ and W + gamma*W- on a-,
    negative outputs the other way round (Zennit's ``Gamma``; Montavon 2019 on ReLU inputs)."""

    def __init__(self, gamma=0.25, stabilizer=STABILIZER):
        if isinstance(gamma, bool) or not isinstance(gamma, (int, float, np.integer, np.floating)) \
                or not (np.isfinite(gamma) and gamma >= 0):
            raise ValueError(f"Gamma: gamma must be a finite number >= 0 (0 is LRP-epsilon; large values approach "
                             f"z+), got {gamma!r}")
        self.gamma, self.stabilizer = float(gamma), positive(stabilizer, "Gamma")

    def __call__(self, layer, a, R):
        def up(v):                                # more weight on the positive part
            return v + self.gamma * _pos(v)

        def down(v):                              # more weight on the negative part
            return v + self.gamma * _neg(v)
        out = layer.with_params().forward(a)     # which outputs are positive, which negative
        positive = four_steps(layer, R * (out > 0), [(_pos(a), _params(layer, up, up)),
                                                     (_neg(a), _params(layer, down, _zero))], self.stabilizer)
        negative = four_steps(layer, R * (out < 0), [(_pos(a), _params(layer, down, down)),
                                                     (_neg(a), _params(layer, up, _zero))], self.stabilizer)
        return positive + negative


class AlphaBeta(Rule):
    """alpha * (the positive contributions' share) - beta * (the negative ones'), alpha - beta = 1."""

    def __init__(self, alpha=2.0, beta=1.0, stabilizer=STABILIZER):
        if not (np.isfinite(alpha) and np.isfinite(beta)) or alpha < 0 or beta < 0 or abs(alpha - beta - 1) > 1e-12:
            raise ValueError(f"AlphaBeta: need finite alpha, beta >= 0 and alpha - beta = 1, got {alpha!r}, {beta!r}")
        self.alpha, self.beta, self.stabilizer = float(alpha), float(beta), positive(stabilizer, "AlphaBeta")

    def __call__(self, layer, a, R):
        positive = four_steps(layer, R, [(_pos(a), _params(layer, _pos, _pos)), (_neg(a), _params(layer, _neg, _zero))],
                              self.stabilizer)
        if self.beta == 0:
            return self.alpha * positive
        negative = four_steps(layer, R, [(_pos(a), _params(layer, _neg, _neg)), (_neg(a), _params(layer, _pos, _zero))],
                              self.stabilizer)
        return self.alpha * positive - self.beta * negative


class ZPlus(AlphaBeta):
    """The z+ rule, alpha1-beta0: z = W+ a+ + W- a- + b+ (the Deep Taylor rule for ReLU inputs)."""

    def __init__(self, stabilizer=STABILIZER):
        super().__init__(1.0, 0.0, stabilizer)

    def __repr__(self):
        return f"ZPlus(stabilizer={self.stabilizer!r})"


class Flat(Rule):
    """Weights and inputs all 1, no bias: each input gets an equal share of every output it feeds."""

    def __init__(self, stabilizer=STABILIZER):
        self.stabilizer = positive(stabilizer, "Flat")

    def __call__(self, layer, a, R):
        ones = np.ones_like(a)
        return four_steps(layer, R, [(ones, _params(layer, np.ones_like, _zero))], self.stabilizer)


class WSquare(Rule):
    """Weights W**2 (bias b**2, as Zennit), inputs 1: for unbounded real-valued inputs (Montavon 2017)."""

    def __init__(self, stabilizer=STABILIZER):
        self.stabilizer = positive(stabilizer, "WSquare")

    def __call__(self, layer, a, R):
        ones = np.ones_like(a)
        return four_steps(layer, R, [(ones, _params(layer, np.square, np.square))], self.stabilizer)


class ZBox(Rule):
    """The bounded-input rule (Montavon 2017): z = W a - W+ low - W- high, for inputs in [low, high].

    low, high: numbers or arrays broadcastable to the layer's input (per channel: shape (C, 1, 1)).
    """

    def __init__(self, low, high, stabilizer=STABILIZER):
        self.low, self.high, self.stabilizer = low, high, positive(stabilizer, "ZBox")

    def __call__(self, layer, a, R):
        low = np.broadcast_to(np.asarray(self.low, dtype=a.dtype), a.shape)
        high = np.broadcast_to(np.asarray(self.high, dtype=a.dtype), a.shape)
        if not (low <= high).all():
            raise ValueError("ZBox: low must not exceed high")
        # the bias cancels: b - b+ - b- = 0, written as Zennit writes it
        return four_steps(layer, R, [(a, {}), (-low, _params(layer, _pos, lambda b: -_pos(b))),
                                     (-high, _params(layer, _neg, lambda b: -_neg(b)))], self.stabilizer)


class Pass(Rule):
    """Relevance passes through unchanged (ReLU, Dropout, Normalize: one output per input)."""

    def __call__(self, layer, a, R):
        return R


class Gradient(Rule):
    """Relevance passes like the layer's gradient (max-pool: to the argmax; flatten: reshaped)."""

    def __call__(self, layer, a, R):
        return layer.backward(R)


RULES = {"zero": Zero, "epsilon": Epsilon, "gamma": Gamma, "zplus": ZPlus, "alpha_beta": AlphaBeta, "flat": Flat,
         "wsquare": WSquare, "zbox": ZBox, "norm": Norm, "pass": Pass, "gradient": Gradient}

LINEAR_LAYERS = (Conv2d, Linear)            # layers with weights: the rules with rho(W) act here
AVERAGE_POOLS = (AvgPool2d, AdaptiveAvgPool2d)


def _default_rule(layer, epsilon=STABILIZER, stabilizer=STABILIZER):
    """What every composite does with a layer it does not name: activations pass, average pools Norm,
    max-pool, flatten, padding and unfolded batch norms like their gradient, and (in a dict composite)
    conv/linear layers Epsilon."""
    if isinstance(layer, (ReLU, Dropout, Normalize, Identity)):
        return Pass()
    if isinstance(layer, AVERAGE_POOLS):
        return Norm(stabilizer)
    if isinstance(layer, (MaxPool2d, Flatten, ConstantPad2d, BatchNorm2d)):   # a batch norm `canonize` could not
        return Gradient()                                                    # fold: its gradient (Zennit's too)
    if isinstance(layer, LINEAR_LAYERS):
        return Epsilon(epsilon)
    raise ValueError(f"LRP: no rule for {layer.name} ({type(layer).__name__}); name one in a dict composite")


def _first_linear(model):
    names = [name for name, layer in model.named_layers() if isinstance(layer, LINEAR_LAYERS)]
    if not names:
        raise ValueError("LRP needs a model with at least one Conv2d or Linear layer")
    return names[0]


def _input_bounds(model, first, low, high):
    """The image-space bounds [low, high] mapped through the layers before ``first`` (Normalize), per channel."""
    low, high = np.asarray(low, dtype=np.float64), np.asarray(high, dtype=np.float64)
    for name, layer in model.named_layers():
        if name == first:
            break
        if isinstance(layer, Normalize):
            mean, std = layer.mean[:, None, None], layer.std[:, None, None]
            low, high = (low - mean) / std, (high - mean) / std
        elif not isinstance(layer, (ConstantPad2d, Dropout)):
            raise ValueError(f"LRP z-box: cannot map the input bounds through {name} ({type(layer).__name__})")
    return low, high


COMPOSITES = ("epsilon_plus_flat", "epsilon_gamma_box", "epsilon_alpha2_beta1", "deep_taylor", "epsilon", "zero")


def composite_rules(model, composite="epsilon_plus_flat", epsilon=STABILIZER, gamma=0.25, low=0.0, high=1.0,
                    stabilizer=STABILIZER):
    """{layer name: rule} for every leaf layer of ``model``.

    Named composites mean what Zennit's composites of the same name mean:

    - "epsilon_plus_flat": the first conv/linear layer Flat, other convs ZPlus, linear layers Epsilon;
    - "epsilon_gamma_box": the first conv ZBox(low, high), other convs Gamma(gamma), linear layers Epsilon;
    - "epsilon_alpha2_beta1": convs AlphaBeta(2, 1), linear layers Epsilon;
    - "deep_taylor": ZPlus at every conv/linear layer, ZBox(low, high) at the first (Montavon et al. 2017);
    - "epsilon": Epsilon(epsilon) at every conv, linear and pooling layer (Captum's ``LRP`` default);
    - "zero": LRP-0 at every conv, linear and average-pooling layer (equals Gradient x Input on ReLU nets).

    In all of them activations pass relevance unchanged, average pools take
    Norm, and max-pools pass it like their gradient (except "epsilon"). low
    and high bound the *image* (default [0, 1]); they are mapped through a
    Normalize layer before the first convolution. A dict {layer name: rule
    or rule name} names rules for some layers; the others get the defaults
    above, and conv/linear layers it does not name get Epsilon(epsilon).
    """
    layers = model.named_layers()
    if isinstance(composite, dict):
        unknown = [n for n in composite if n not in dict(layers)]
        if unknown:
            raise ValueError(f"LRP: no layer named {', '.join(unknown)}; layers: {', '.join(n for n, _ in layers)}")
        rules = {name: composite[name] if name in composite else _default_rule(layer, epsilon, stabilizer)
                 for name, layer in layers}
        for name, rule in rules.items():
            if isinstance(rule, str):
                if rule not in RULES:
                    raise ValueError(f"LRP: unknown rule {rule!r} for {name}; use one of {', '.join(RULES)} "
                                     f"or a rule object such as attribution.lrp.Gamma(0.5)")
                rules[name] = ZBox(low, high, stabilizer) if rule == "zbox" else RULES[rule]()
            elif not callable(rule):
                raise ValueError(f"LRP: the rule for {name} must be a rule name or object, got {rule!r}")
        return rules
    if composite not in COMPOSITES:
        raise ValueError(f"unknown LRP composite {composite!r}; use one of {', '.join(COMPOSITES)}, "
                         f"or a dict {{layer name: rule}}")
    first = _first_linear(model)
    first_conv = next((n for n, layer in layers if isinstance(layer, Conv2d)), None)
    box_layer = first if composite == "deep_taylor" else first_conv
    box = ZBox(*_input_bounds(model, box_layer, low, high), stabilizer) if box_layer else None
    rules = {}
    for name, layer in layers:
        if composite == "epsilon" and isinstance(layer, LINEAR_LAYERS + AVERAGE_POOLS + (MaxPool2d,)):
            rule = Epsilon(epsilon)
        elif composite == "zero" and isinstance(layer, LINEAR_LAYERS + AVERAGE_POOLS):
            rule = Zero()
        elif composite == "epsilon_plus_flat" and name == first:
            rule = Flat(stabilizer)
        elif (composite, name) in (("epsilon_gamma_box", first_conv), ("deep_taylor", first)):
            rule = box
        elif composite == "deep_taylor" and isinstance(layer, LINEAR_LAYERS):
            rule = ZPlus(stabilizer)
        elif isinstance(layer, Conv2d) and composite in ("epsilon_plus_flat", "epsilon_gamma_box",
                                                          "epsilon_alpha2_beta1"):
            rule = {"epsilon_plus_flat": ZPlus(stabilizer), "epsilon_gamma_box": Gamma(gamma, stabilizer),
                    "epsilon_alpha2_beta1": AlphaBeta(2, 1, stabilizer)}[composite]
        else:
            rule = _default_rule(layer, epsilon, stabilizer)
        rules[name] = rule
    return rules


# --------------------------------------------------------------------------
# Batch norm and skip connections: Zennit's ResNet canonizer, as two visible steps
# --------------------------------------------------------------------------

def canonize(model):
    """Step 1: a copy of ``model`` with every eval-mode batch norm folded into the convolution right before it.

    ``BN(conv(x)) = scale * (W x + b - mean) / ... + ...`` is one convolution:
    ``W' = W * scale``, ``b' = b * scale + shift`` per output channel (with
    ``scale, shift = bn.affine()``); the batch norm becomes ``Identity`` (same
    name, no parameters). The logits do not change (up to rounding); the
    relevance does, since the rules now see the batch norm's shift as the
    conv's bias. The model itself is not touched. A batch norm that does not
    follow a convolution stays, and passes relevance like its gradient.
    """
    clone = _copy_without_activations(model)
    for block in clone.blocks():
        names = list(block.children)
        for before, name in zip(names, names[1:]):
            conv, bn = block.children[before], block.children[name]
            if isinstance(conv, Conv2d) and isinstance(bn, BatchNorm2d) and not bn.training:
                block.children[before] = _fold(conv, bn)
                block.children[name] = Identity()
    clone._set_names("")
    return clone


def _fold(conv, bn):
    """The convolution that computes ``bn(conv(x))`` in eval mode."""
    scale, shift = bn.affine()
    folded = Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, bias=True,
                    dtype=conv.params["weight"].dtype, init=False)
    folded.params["weight"] = conv.params["weight"] * scale[:, None, None, None]
    folded.params["bias"] = conv.params.get("bias", 0) * scale + shift
    return folded


def _copy_without_activations(model):
    """A deep copy of the model's layers and weights, leaving out the last forward's caches and outputs."""
    memo = {}
    for _, layer in [("", model)] + model.named_modules():
        memo[id(layer.cache)] = None
        if isinstance(layer, Block):
            memo[id(layer.outputs)], memo[id(layer.inputs)] = {}, {}
    return copy.deepcopy(model, memo)


def split_sum(R, summands, stabilizer=STABILIZER):
    """Step 2: the rule of a residual sum ``z = a + b``: each summand gets the share it contributed,
    ``R_a = a * R / z``, ``R_b = b * R / z`` (z stabilized; Zennit's ``Norm`` rule on its ``Sum``).
    The two add up to R, so relevance is conserved at every block instead of copied to both branches."""
    a, b = summands
    s = R / stabilize(a + b, stabilizer)
    return a * s, b * s


def lrp(model, x, target=None, composite="epsilon_plus_flat", epsilon=STABILIZER, gamma=0.25, low=0.0, high=1.0,
        stabilizer=STABILIZER, canonized=True, return_rules=False):
    """Layer-wise Relevance Propagation: relevance at the input, (N, C, H, W).

    Relevance starts as the target's logit (one-hot times the logit) and is
    propagated back layer by layer with the rules of ``composite`` (a name
    in COMPOSITES or a dict {layer name: rule}; see ``composite_rules``).
    Conservation: with Epsilon/ZPlus/Flat rules and no biases the input
    relevance sums to the logit; biases and stabilizers absorb some (a test
    shows how much).
    canonized: fold batch norms into their convolutions (``canonize``) and
        split relevance at residual sums (``split_sum``), as Zennit's ResNet
        canonizer; False propagates through the model as it is, each
        residual sum copying its relevance to both branches (shown in the
        "Skip connections" tutorial: it doubles at every block).
    return_rules: also return the {layer name: rule} map that was used.
    """
    check_images(x)
    positive(stabilizer, "LRP")
    net = canonize(model) if canonized and _has_batch_norm(model) else model
    rules = composite_rules(net, composite, epsilon, gamma, low, high, stabilizer)
    logits = net.forward(x)
    targets = resolve_targets(target, logits)
    R = one_hot(targets, logits) * logits                                  # relevance starts as the logit
    sum_rule = functools.partial(split_sum, stabilizer=stabilizer) if canonized else None
    R = net.backward(R, rules=rules, sum_rule=sum_rule)                    # every layer by its rule
    check_result(R, "LRP", "a relevance overflowed or divided by a zero z (the 'zero' rule passes none there; "
                           "did a custom rule divide without a stabilizer?)")
    return (R, rules) if return_rules else R


def _has_batch_norm(model):
    return any(isinstance(layer, BatchNorm2d) for _, layer in model.named_layers())
