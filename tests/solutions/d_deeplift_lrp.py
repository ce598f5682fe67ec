"""Reference solution of assignment D (kept out of the student files)."""
import numpy as np


def relu_backward_rescale(dout, x, x_ref):
    delta = x - x_ref
    small = np.abs(delta) < 1e-10
    secant = (np.maximum(x, 0) - np.maximum(x_ref, 0)) / np.where(small, 1, delta)
    return dout * np.where(small, x > 0, secant)


def lrp_epsilon(layer, a, R, eps):
    z = layer.forward(a)
    z = z + eps * np.where(z >= 0, 1, -1)
    z = z.astype(a.dtype, copy=False)                  # np.where's integers would make float32 into float64
    s = R / z
    c = layer.backward(s)
    return a * c


def lrp_zplus(layer, a, R, eps=1e-9):
    params = {"weight": np.maximum(layer.params["weight"], 0)}
    if "bias" in layer.params:
        params["bias"] = np.zeros_like(layer.params["bias"])
    plus = layer.with_params(**params)
    z = plus.forward(a) + eps
    s = R / z
    c = plus.backward(s)
    return a * c
