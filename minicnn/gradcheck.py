"""Numeric gradient checks: the way to know a backward pass is right.

A backward pass computes a vector-Jacobian product: given ``dout``, the
gradient of ``sum(f(x) * dout)`` with respect to ``x``. The centred difference

    (sum(f(x + h e_i) * dout) - sum(f(x - h e_i) * dout)) / (2 h)

estimates its i-th entry with an error of order h**2. Use float64: in float32
the rounding error of f swamps the difference.
"""
import numpy as np

from .blocks import Block


def numeric_vjp(f, x, dout, h=1e-6):
    """Centred-difference estimate of ``dout . df/dx``, an array shaped like x.

    f: a function of one array returning an array shaped like ``dout``.
    x: the point; it is not modified (a copy is perturbed).
    """
    x = np.array(x, copy=True)
    dout = np.asarray(dout)
    grad = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        old = x[idx]
        x[idx] = old + h
        plus = np.array(f(x), copy=True)       # copy: f may return its input (identity layers)
        x[idx] = old - h
        minus = np.array(f(x), copy=True)
        x[idx] = old
        grad[idx] = np.sum((plus - minus) * dout) / (2 * h)
    return grad


def rel_error(a, b):
    """Largest absolute difference relative to the largest magnitude:
    ``max|a - b| / max(max|a|, max|b|)``. 0 for two all-zero arrays.

    Unlike an element-wise relative error it does not explode on entries
    that are zero up to rounding. A correct float64 backward pass gives
    about 1e-9 or less against ``numeric_vjp``; a wrong one gives 1e-2 or more.
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"rel_error: shapes differ, {a.shape} vs {b.shape}")
    scale = max(np.max(np.abs(a), initial=0.0), np.max(np.abs(b), initial=0.0))
    return 0.0 if scale == 0 else float(np.max(np.abs(a - b)) / scale)


def check_layer(layer, x, dout=None, h=1e-6, seed=0):
    """Compare a layer's backward with numeric gradients, for the input and
    every parameter. Returns ``{"x": err, "weight": err, ...}`` (rel_error).

    layer: any minicnn layer or block (a whole model), with float64 parameters.
    x: a float64 input. Keep it away from kinks (ReLU at 0, max-pool ties),
        where the function has no derivative and no check can pass.
    dout: the upstream gradient; random normal by default.
    """
    x = np.asarray(x)
    if x.dtype != np.float64:
        raise TypeError(f"check_layer: use float64 inputs (got {x.dtype}); float32 rounding hides errors")
    out = layer.forward(x)
    if dout is None:
        dout = np.random.default_rng(seed).standard_normal(out.shape)
    dx = layer.backward(dout, param_grads=True)
    errors = {"x": rel_error(dx, numeric_vjp(layer.forward, x, dout, h))}
    if isinstance(layer, Block):
        owners = {f"{name}.{key}": (leaf, key) for name, leaf in layer.named_layers() for key in leaf.params}
    else:
        owners = {key: (layer, key) for key in layer.params}
    for name, (leaf, key) in owners.items():
        errors[name] = rel_error(leaf.grads[key], _numeric_param_grad(layer, leaf.params, key, x, dout, h))
    return errors


def _numeric_param_grad(layer, params, key, x, dout, h):
    original = params[key]

    def f(value):
        params[key] = value
        return layer.forward(x)

    try:
        return numeric_vjp(f, original, dout, h)
    finally:
        params[key] = original
