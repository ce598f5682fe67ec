"""Autograder for the assignments in tutorials/assignments/.

    python -m attribution.grade relu_maxpool       tutorials/assignments/a_relu_maxpool.py
    python -m attribution.grade conv_backward      tutorials/assignments/b_conv_backward.py
    python -m attribution.grade gradcam_smoothgrad tutorials/assignments/c_gradcam_smoothgrad.py
    python -m attribution.grade deeplift_lrp       tutorials/assignments/d_deeplift_lrp.py
    python -m attribution.grade residual           tutorials/assignments/e_residual.py
    python -m attribution.grade cam_weightings     tutorials/assignments/f_cam_weightings.py
    python -m attribution.grade pixel_flipping     tutorials/assignments/g_pixel_flipping.py

Each function of the student file is run on fixed cases and compared with numeric gradients and with
minicnn's own layers and attribution methods (the reference implementation). The grader prints one line per
function with its score and the first error found.

What the grader trusts stays in its own process: the cases, the expected values, the comparisons and the
report. The student's file runs in another process (attribution/sandbox.py), from a copy in a fresh
temporary folder, with limits on memory, CPU time and, on Linux, where it may write; that process receives
only each case's inputs and sends back only arrays, in NumPy's .npy format read without pickle. Deadlines
are per function (--timeout) and per submission (--submission-timeout): an exit, a crash, a hang, an import
error or a forged message costs that function its marks, never the report. Exit status: 0 for full marks,
1 otherwise, 2 if the file cannot be graded at all (no such file, unknown assignment, a bad option).
"""
import argparse
import sys

import numpy as np

from minicnn.gradcheck import numeric_vjp, rel_error
from minicnn.layers import Conv2d, Flatten, Linear, MaxPool2d, ReLU
from minicnn.sequential import Sequential

from . import methods as attr
from .cam_family import grad_cam

SEED = 0        # the cases' random seed; an instructor grades with another (--seed) for cases students never saw


def _rng(k):
    """The random generator of case k: the public cases for SEED 0, hidden ones for any other seed."""
    return np.random.default_rng([k, SEED]) if SEED else np.random.default_rng(k)


TEXTBOOK_X = np.array([[[[1.0, 0.0], [-1.0, -10.0]]]])
TEXTBOOK_G = np.array([[[[0.4, 1.1], [-0.5, -0.1]]]])


class Failed(Exception):
    """A case went wrong; the message says how."""


class Case:
    """One call of a student's function: ``args`` is all the student's process receives; ``check(got)`` runs in
    the grader's process on what came back (an array, or a tuple of arrays) and raises Failed."""

    def __init__(self, label, args, check):
        self.label, self.args, self.check = label, tuple(args), check


def single(got, what):
    """``got`` as one float64 array (a tuple of equal arrays is stacked, as np.asarray would)."""
    if isinstance(got, tuple):
        if len({a.shape for a in got}) != 1:
            raise Failed(f"{what}: returned {len(got)} arrays of different shapes; one array was asked for")
        got = np.stack(got)
    return np.asarray(got, dtype=np.float64)


def expect_close(got, expected, what, tol=1e-9):
    got = single(got, what)
    if got.shape != np.shape(expected):
        raise Failed(f"{what}: returned shape {got.shape}, expected {np.shape(expected)}")
    err = rel_error(got, expected)
    if not err <= tol:
        raise Failed(f"{what}: relative error {err:.2e} " + (f"(should be below {tol:.0e})" if tol else
                                                              "(should be exactly equal)"))


def float32_case(args, expected, what, tol=1e-5, count=None):
    """The float32 case of a function: it must return float32 and the float64 answer to float32 accuracy.
    ``args`` are the float32 inputs, ``expected`` the float64 answer for them (or a tuple, ``count`` arrays)."""
    def check(got):
        parts = got if count else (got,)
        if count and (not isinstance(got, tuple) or len(got) != count):
            raise Failed(f"{what}: returned {len(got) if isinstance(got, tuple) else 1} arrays, expected {count}")
        for part, exp in zip(parts, expected if count else (expected,)):
            if isinstance(part, tuple) or part.dtype != np.float32:
                dtype = "a tuple" if isinstance(part, tuple) else part.dtype
                raise Failed(f"returned {dtype} for float32 input; keep the input's dtype")
            expect_close(part, exp, f"{what}, float32 values", tol)
    return Case("float32 stays float32, with float32 accuracy", args, check)


def f32(*arrays):
    return tuple(np.asarray(a, dtype=np.float32) for a in arrays)


def f64(*arrays):
    return tuple(np.asarray(a, dtype=np.float64) for a in arrays)


RULE_NAMES = {"gradient": "Vanilla Gradient rule dout * (x > 0)", "deconvnet": "DeconvNet rule dout * (dout > 0)",
              "guided": "Guided Backprop rule dout * (x > 0) * (dout > 0)"}


GREATER_EQUAL = {"gradient": "dout * (x >= 0)", "guided": "dout * (x >= 0) * (dout > 0)"}


def _relu_variants(dout, x, rule):
    """What common attempts compute: the forward mask written with >= where the rules need > (it differs only
    where x is exactly 0), and the three rules themselves (an indicator on the wrong tensor, a mask forgotten).
    ``dout * (dout >= 0)`` is not a mistake to name: it equals the DeconvNet rule everywhere (0 * 1 = 0)."""
    values = {v: dout * (x >= 0) * ((dout > 0) if "dout > 0" in v else 1) for v in GREATER_EQUAL.values()}
    first = [GREATER_EQUAL[rule]] if rule in GREATER_EQUAL else []
    order = first + [v for v in values if v not in first]
    variants = {f"{v}: >= where the rule needs the strict >": values[v] for v in order}
    variants.update({RULE_NAMES["gradient"]: dout * (x > 0), RULE_NAMES["deconvnet"]: dout * (dout > 0),
                     RULE_NAMES["guided"]: dout * (x > 0) * (dout > 0)})
    return variants


def _relu_reference(dout, x, rule):
    relu = ReLU()
    relu.forward(x)
    return relu.backward(dout, rule=rule)


def _cases_relu(rule):
    def check(dout, x, what):
        def run(got):
            expected = _relu_reference(dout, x, rule)
            got = single(got, what)
            if got.shape == expected.shape and not np.array_equal(got, expected):
                matches = [name for name, value in _relu_variants(dout, x, rule).items() if np.array_equal(got, value)]
                if len(matches) == 1:
                    hint = "" if ">=" in matches[0] else " (an indicator on the wrong tensor?)"
                    raise Failed(f"{what}: the result is the {matches[0]}, not the {RULE_NAMES[rule]}{hint}")
                if matches:                  # on this input several mistakes give the same numbers: name them all
                    raise Failed(f"{what}: not the {RULE_NAMES[rule]}; on this input the result is what each of "
                                 f"these gives: " + "; or ".join(matches))
            expect_close(got, expected, what, 0)
        return run

    def cases():
        rng = _rng(1)
        x = rng.standard_normal((2, 3, 4, 5))
        x[0, 0, :2] = 0.0                                  # exact zeros: x > 0 is strict
        dout = rng.standard_normal(x.shape)
        dout[1, 2, 1] = 0.0
        d32, x32 = f32(dout, x)
        # the random input first: its exact zeros tell apart the mistakes that agree on the textbook's example
        return [Case("random input with exact zeros", (dout, x), check(dout, x, "random input with exact zeros")),
                Case("the textbook's 2x2 example", (TEXTBOOK_G, TEXTBOOK_X),
                     check(TEXTBOOK_G, TEXTBOOK_X, "textbook example")),
                float32_case((d32, x32), _relu_reference(*f64(d32, x32), rule), "the rule", tol=0)]
    return cases


def _maxpool_reference(dout, x, k, s):
    pool = MaxPool2d(k, s)
    pool.forward(x)
    return pool.backward(dout)


def _cases_maxpool():
    rng = _rng(2)
    cases = []
    for k, s, label in [(2, 2, "2x2 stride 2"), (3, 2, "3x3 stride 2 (overlapping windows)")]:
        x = rng.permutation(np.arange(2 * 3 * 7 * 9, dtype=np.float64)).reshape(2, 3, 7, 9) / 10   # no ties
        out = MaxPool2d(k, s).forward(x)
        dout = rng.standard_normal(out.shape)

        def check(got, x=x, dout=dout, k=k, s=s, label=label):
            expected, got = _maxpool_reference(dout, x, k, s), single(got, label)
            if got.shape == expected.shape and rel_error(got, expected) > 1e-9:
                _match_variant(got, {"= where overlapping windows need +=: a shared element must add up the "
                                     "gradients of every window it wins": _maxpool_assigned(dout, x, k, s)}, label)
            expect_close(got, expected, label)
        cases.append(Case(label, (dout, x, k, s), check))
    x = np.zeros((1, 2, 4, 4))
    x[0, 1, 1:3, 1:3] = 1.0                                 # windows of equal values
    dout = np.arange(1.0, 9.0).reshape(1, 2, 2, 2)
    cases.append(Case("ties go to the first maximum", (dout, x, 2, 2), lambda got, x=x, dout=dout: expect_close(
        got, _maxpool_reference(dout, x, 2, 2),
        "windows with tied values (the gradient goes to the first maximum in row-major order)")))
    x = _rng(3).permutation(np.arange(50.0)).reshape(1, 2, 5, 5)
    dout = _rng(4).standard_normal((1, 2, 2, 2))
    cases.append(Case("numeric gradient check", (dout, x, 3, 2), lambda got: expect_close(
        got, numeric_vjp(lambda xx: MaxPool2d(3, 2).forward(xx), x, dout), "numeric gradient check", 1e-7)))
    d32, x32 = f32(dout, x)
    cases.append(float32_case((d32, x32, 3, 2), _maxpool_reference(*f64(d32, x32), 3, 2), "max-pool backward"))
    return cases


def _maxpool_assigned(dout, x, k, s):
    """What a max-pool backward with ``=`` instead of ``+=`` gives: the last window wins a shared element."""
    from minicnn.naive import maxpool2d_forward_naive
    _, switches = maxpool2d_forward_naive(x, k, s)
    dx = np.zeros_like(x)
    N, C, Ho, Wo = dout.shape
    for n in range(N):
        for c in range(C):
            for i in range(Ho):
                for j in range(Wo):
                    r, q = switches[n, c, i, j]
                    dx[n, c, r, q] = dout[n, c, i, j]
    return dx


def _conv(w, b, stride, pad):
    """A float64 Conv2d with weight ``w`` and bias ``b``."""
    conv = Conv2d(w.shape[1], w.shape[0], w.shape[2], stride=stride, padding=pad, dtype=np.float64)
    conv.params["weight"], conv.params["bias"] = w, b
    return conv


def _conv_forward(xx, ww, bb, stride, pad):
    return _conv(ww, bb, stride, pad).forward(xx)


def _conv_reference(dout, x, w, stride, pad):
    conv = _conv(w, np.zeros(w.shape[0]), stride, pad)
    conv.forward(x)
    dx = conv.backward(dout, param_grads=True)
    return dx, conv.grads["weight"], conv.grads["bias"]


def _three(got, what):
    if not isinstance(got, tuple) or len(got) != 3:
        raise Failed(f"{what}: returned {len(got) if isinstance(got, tuple) else 'one array'}; "
                     f"expected three arrays (dx, dw, db)")
    return got


def _cases_conv():
    rng = _rng(5)
    x = rng.standard_normal((2, 3, 5, 6))
    w = rng.standard_normal((4, 3, 3, 3))
    b = rng.standard_normal(4)
    cases = []
    for stride, pad in [(1, 1), (2, 0)]:
        dout = rng.standard_normal(_conv_forward(x, w, b, stride, pad).shape)
        label = f"stride {stride}, pad {pad}"
        for i, part in enumerate(("dx", "dw", "db")):
            def check(got, part=part, i=i, dout=dout, stride=stride, pad=pad, label=label):
                got = _three(got, label)[i]
                numeric = {"dx": lambda: numeric_vjp(lambda xx: _conv_forward(xx, w, b, stride, pad), x, dout),
                           "dw": lambda: numeric_vjp(lambda ww: _conv_forward(x, ww, b, stride, pad), w, dout),
                           "db": lambda: numeric_vjp(lambda bb: _conv_forward(x, w, bb, stride, pad), b, dout)}[part]()
                hint = " (summed over every image of the batch?)" if part in ("dw", "db") else ""
                expect_close(got, numeric, f"{part}, {label}, numeric gradient check{hint}", 1e-7)
            cases.append(Case(f"{part} ({label})", (dout, x, w, stride, pad), check))
    d32, x32, w32 = f32(rng.standard_normal((2, 4, 5, 6)), x, w)
    cases.append(float32_case((d32, x32, w32, 1, 1), _conv_reference(*f64(d32, x32, w32), 1, 1),
                              "conv backward", count=3))
    return cases


def _small_model(seed=0):
    r = _rng(seed)
    return Sequential({
        "features": Sequential(Conv2d(3, 4, 3, padding=1, rng=r), ReLU(), MaxPool2d(2),
                               Conv2d(4, 6, 3, padding=1, rng=r), ReLU()),
        "flatten": Flatten(), "fc": Linear(6 * 4 * 4, 5, rng=r)}).to(np.float64)


def _grad_cam_parts(model, x, targets, layer, wrong_axis=False):
    """A: (N, K, h, w) and dA: the gradient of each image's target logit at ``layer`` (or, with wrong_axis,
    of the one-hot set as dout[targets, arange(N)])."""
    logits = model.forward(x)
    dout = np.zeros_like(logits)
    if wrong_axis:
        dout[targets, np.arange(len(x))] = 1
    else:
        dout[np.arange(len(x)), targets] = 1
    return model.outputs[layer], model.backward(dout, until=layer)


def _grad_cam_variants(model, x, targets, layer):
    """What common Grad-CAM mistakes compute."""
    A, dA = _grad_cam_parts(model, x, targets, layer)
    h, w = A.shape[2:]
    alpha = dA.mean(axis=(2, 3))
    weighted = np.einsum("nk,nkhw->nhw", alpha, A)
    shared = np.einsum("k,nkhw->nhw", dA.mean(axis=(0, 2, 3)), A)
    variants = {"no ReLU at the end: negative values where Grad-CAM has none": weighted,
                f"the sum of the gradient over (h, w) instead of its mean (off by h*w = {h * w})":
                    np.maximum(weighted * h * w, 0),
                "weights averaged over the images too: each image needs its own alpha (N, K)":
                    np.maximum(shared, 0),
                "the map scaled to [0, 1]: the coarse, unscaled map was asked for":
                    attr.scale_01(np.maximum(weighted, 0))}
    if targets.max() < len(x):                      # dout[targets, n] can be set: what it gives
        A2, dA2 = _grad_cam_parts(model, x, targets, layer, wrong_axis=True)
        variants["the one-hot set on the wrong axis (dout[targets, n] instead of dout[n, targets])"] = \
            np.maximum(np.einsum("nk,nkhw->nhw", dA2.mean(axis=(2, 3)), A2), 0)
    return variants


def _cases_grad_cam():
    model = _small_model()
    x = _rng(6).standard_normal((3, 3, 8, 8))
    cases = []
    for layer, targets in (("features.4", np.array([2, 0, 1])), ("features.1", np.array([0, 3, 4]))):
        def check(got, layer=layer, targets=targets):
            expected = grad_cam(model, x, targets, layer)
            got = single(got, f"Grad-CAM at {layer}")
            if got.ndim == 3 and got.shape[1:] == x.shape[2:] and expected.shape[1:] != x.shape[2:]:
                raise Failed(f"Grad-CAM at {layer}: returned {got.shape}, the image's size: the coarse map "
                             f"{expected.shape} was asked for, without upsampling")
            if got.shape == expected.shape and rel_error(got, expected) > 1e-9:
                _match_variant(got, _grad_cam_variants(model, x, targets, layer), f"Grad-CAM at {layer}")
            expect_close(got, expected, f"Grad-CAM at {layer} (mean of the gradient over (h, w), weighted sum, "
                                        f"ReLU)")
        cases.append(Case(f"layer {layer}", (model, x, targets, layer), check))
    model32, (x32,), targets = _small_model().to(np.float32), f32(x), np.array([0, 1, 2])
    cases.append(float32_case((model32, x32, targets, "features.4"),
                              grad_cam(_small_model(), *f64(x32), targets, "features.4"), "Grad-CAM", 1e-4))
    return cases


def _cases_smoothgrad():
    model = _small_model(1)
    x = _rng(7).uniform(0, 1, (2, 3, 8, 8))
    x[1] *= 3                                         # the images' ranges differ: sigma is per image
    targets = np.array([1, 2])
    level = 0.2
    noise = _rng(8).standard_normal((2, 5, 3, 8, 8))                # (N, n_samples, C, H, W), unscaled
    span = x.reshape(2, -1).max(axis=1) - x.reshape(2, -1).min(axis=1)
    sigma = (level * span)[:, None, None, None, None]

    def sg(scaled, divide=5, model=model, x=x):
        return attr.smoothgrad(attr.vanilla_gradient, model, x, targets, n_samples=5, noise=scaled) * 5 / divide

    def check(got):
        expected = sg(sigma * noise)
        variants = {"no noise added: the plain gradient": attr.vanilla_gradient(model, x, targets),
                    "a total divided by the number of images, not of samples": sg(sigma * noise, divide=2),
                    "a total divided by n_samples - 1": sg(sigma * noise, divide=4),
                    "the noise scaled twice (noise_level applied to sigma again)": sg(level * sigma * noise),
                    "the noise not scaled by the image's range (sigma = noise_level)": sg(level * noise),
                    "one sigma from the whole batch's range; each image has its own":
                        sg(level * (x.max() - x.min()) * noise)}
        got = single(got, "SmoothGrad")
        if got.shape == expected.shape and rel_error(got, expected) > 1e-9:
            _match_variant(got, variants, "SmoothGrad")
        expect_close(got, expected, "SmoothGrad (mean over samples of the vanilla gradient at x + sigma * noise)")
    zero = np.zeros((2, 3, 3, 8, 8))
    x32, noise32 = f32(x, noise)
    sigma32 = (level * np.ptp(x32.astype(np.float64).reshape(2, -1), axis=1))[:, None, None, None, None]
    return [Case("5 noisy samples, sigma from each image's range", (model, x, targets, level, noise), check),
            Case("zero noise equals the gradient", (model, x, targets, level, zero), lambda got: expect_close(
                got, attr.vanilla_gradient(model, x, targets), "SmoothGrad with zero noise")),
            float32_case((_small_model(1).to(np.float32), x32, targets, level, noise32),
                         sg(sigma32 * noise32.astype(np.float64), x=x32.astype(np.float64)), "SmoothGrad", 1e-4)]


def _match_variant(got, variants, what):
    """If ``got`` equals what a known mistake computes, fail naming the mistake."""
    got = single(got, what)
    if not np.isfinite(got).all():
        raise Failed(f"{what}: the result has NaN or infinity (a division by zero? see the docstring's fallback)")
    for mistake, value in variants.items():
        value = np.asarray(value, dtype=np.float64)
        if value.shape == got.shape and np.isfinite(value).all() and rel_error(got, value) <= 1e-9:
            raise Failed(f"{what}: the result is what {mistake} gives")


def _rescale_reference(dout, x, x_ref):
    relu = ReLU()
    relu.forward(x)
    return relu.backward(dout, rule="rescale", reference=x_ref)


def _cases_rescale():
    rng = _rng(9)
    x = rng.standard_normal((2, 3, 4, 5))
    x_ref = rng.standard_normal(x.shape)
    x_ref[0, 0] = x[0, 0]                                       # equal inputs: the gradient fallback
    x_ref[1, 1, :2] = x[1, 1, :2] + 1e-12
    dout = rng.standard_normal(x.shape)

    def check(got):
        expected = _rescale_reference(dout, x, x_ref)
        delta = x - x_ref
        small = np.abs(delta) < 1e-10
        with np.errstate(divide="ignore", invalid="ignore"):
            secant = (np.maximum(x, 0) - np.maximum(x_ref, 0)) / delta
            variants = {
                "the Vanilla Gradient rule dout * (x > 0), not the secant": dout * (x > 0),
                "(relu(x_ref) - relu(x)) / (x - x_ref): the difference of the outputs has the wrong sign":
                    dout * np.where(small, x > 0, -secant),
                "(x - x_ref) / (x - x_ref) = 1: use relu(x) - relu(x_ref) above the line":
                    dout * np.where(small, x > 0, 1.0),
                "a fallback of 0 where |x - x_ref| < 1e-10; the rule there is the gradient dout * (x > 0)":
                    dout * np.where(np.abs(delta) < 1e-10, 0, secant),
                "a fallback only where x == x_ref exactly; use |x - x_ref| < 1e-10":
                    dout * np.where(delta == 0, x > 0, secant),
            }
        got = single(got, "rescale rule")
        if not (got.shape == expected.shape and rel_error(got, expected) <= 1e-9):
            _match_variant(got, variants, "rescale rule")
        expect_close(got, expected, "rescale rule")
    d32, x32, r32 = f32(dout, x, x_ref + 1e-3 * (x_ref == x))         # float32 cannot hold 1e-12 apart
    return [Case("random input with equal and near-equal pairs", (dout, x, x_ref), check),
            float32_case((d32, x32, r32), _rescale_reference(*f64(d32, x32, r32)), "rescale rule")]


def _lrp_layers(seed):
    """A square Linear and a conv that keeps the channels and the size, so that a mistake that multiplies by
    the layer's output instead of its input still has the right shape and can be named."""
    r = _rng(seed)
    lin = Linear(6, 6, dtype=np.float64, rng=r)
    conv = Conv2d(4, 4, 3, padding=1, dtype=np.float64, rng=r)
    return [("a Linear layer", lin, r.standard_normal((3, 6))), ("a Conv2d layer", conv, r.standard_normal((2, 4, 5, 5)))]


def _epsilon_variants(layer, a, R, eps):
    z = layer.forward(a)
    sign = np.where(z >= 0, 1.0, -1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return {"no stabilizer (z without eps * sign(z))": a * layer.backward(R / z),
                "z + eps without the sign (a positive eps added to negative z too)": a * layer.backward(R / (z + eps)),
                "z - eps * sign(z): the stabilizer must push z away from 0": a * layer.backward(R / (z - eps * sign)),
                "R_in = z * c, the layer's output; step 4 multiplies by its input a":
                    z * layer.backward(R / (z + eps * sign)),
                "R_in = z * c, the layer's (stabilized) output; step 4 multiplies by its input a":
                    (z + eps * sign) * layer.backward(R / (z + eps * sign))}


def _lrp_reference(layer, a, R, rule, eps):
    from .lrp import Epsilon, ZPlus
    reference = Epsilon(eps) if rule == "epsilon" else ZPlus(stabilizer=eps)
    return reference(layer.with_params(**({"bias": np.zeros_like(layer.params["bias"])}
                                          if rule == "zplus" else {})), a, R)


def _cases_lrp(rule):
    cases = []
    for label, layer, a in _lrp_layers(10 if rule == "epsilon" else 11):
        if rule == "zplus":
            a = np.abs(a)                                         # ReLU outputs
        R = _rng(12).standard_normal(layer.forward(a).shape)
        eps = 0.1 if rule == "epsilon" else 1e-9

        def check(got, layer=layer, a=a, R=R, eps=eps, label=label):
            expected = _lrp_reference(layer, a, R, rule, eps)
            got = single(got, label)
            if not (got.shape == expected.shape and rel_error(got, expected) <= 1e-9):
                if rule == "epsilon":
                    variants = _epsilon_variants(layer, a, R, eps)
                else:
                    w, b = layer.params["weight"], layer.params["bias"]
                    variants = {"the weights W, not their positive part max(W, 0)":
                                _plain_steps(layer.with_params(bias=np.zeros_like(b)), a, R, eps),
                                "keeping the bias; z+ uses no bias here":
                                _plain_steps(layer.with_params(weight=np.maximum(w, 0)), a, R, eps),
                                "R_in = z * c, the layer's output; step 4 multiplies by its input a":
                                _plain_steps(layer.with_params(weight=np.maximum(w, 0), bias=np.zeros_like(b)),
                                             a, R, eps, by_output=True)}
                _match_variant(got, variants, label)
            expect_close(got, expected, f"{label}, {rule} rule")
        cases.append(Case(label, (layer, a, R, eps), check))
    label, layer, a = _lrp_layers(13 if rule == "epsilon" else 14)[1]          # a float32 conv layer
    a = np.abs(a) if rule == "zplus" else a
    R = _rng(15).standard_normal(layer.forward(a).shape)
    eps = 0.1 if rule == "epsilon" else 1e-6
    layer32 = _as_float32(layer)
    a32, R32 = f32(a, R)
    cases.append(float32_case((layer32, a32, R32, eps), _lrp_reference(layer, *f64(a32, R32), rule, eps),
                              f"{rule} rule", 1e-4))
    return cases


def _as_float32(layer):
    """A float32 copy of a layer (its parameters cast)."""
    import copy
    clone = copy.deepcopy(layer)
    clone.params = {k: v.astype(np.float32) for k, v in layer.params.items()}
    return clone


def _plain_steps(layer, a, R, eps, by_output=False):
    """The four steps with z + eps, as a student might write them with the wrong layer or factor."""
    z = layer.forward(a) + eps
    c = layer.backward(R / z)
    return (z if by_output else a) * c


def _zero_relu_case():
    """z exactly 0 somewhere: sign(0) must count as +1 (np.sign(0) is 0, and R / 0 is not a number)."""
    lin = Linear(2, 2, bias=False, dtype=np.float64)
    lin.params["weight"] = np.array([[1.0, -1.0], [1.0, 1.0]])
    a, R = np.array([[1.0, 1.0]]), np.array([[1.0, 1.0]])            # the first output is exactly 0
    z = np.array([[0.0, 2.0]])
    expected = a * ((R / (z + 0.1 * np.array([[1.0, 1.0]]))) @ lin.params["weight"])

    def check(got):
        if not np.isfinite(single(got, "z = 0")).all():
            raise Failed("an output with z = 0 gave NaN or infinity: np.sign(0) is 0, take sign(0) as +1")
        expect_close(got, expected, "an output with z exactly 0 (sign(0) = +1)")
    return Case("an output with z exactly 0", (lin, a, R, 0.1), check)


def _cases_lrp_epsilon():
    return _cases_lrp("epsilon") + [_zero_relu_case()]


def _cases_lrp_zplus():
    return _cases_lrp("zplus")


def _residual_case(rng, inplanes, planes, stride):
    """A minicnn basic block with random weights and batch-norm statistics, run forward on random x:
    (block, x, dout, s, body_backward, shortcut_backward); the two backwards are picklable (they go to the
    student's process)."""
    from minicnn.layers import BatchNorm2d
    from minicnn.models import basic_block

    from .sandbox import BranchBackward

    def conv(cin, cout, k, st, p):
        return Conv2d(cin, cout, k, st, p, bias=False, dtype=np.float64, rng=rng)

    def bn(c):
        layer = BatchNorm2d(c, dtype=np.float64)
        layer.params["weight"], layer.params["bias"] = rng.uniform(0.5, 2, c), rng.standard_normal(c)
        layer.buffers["running_mean"], layer.buffers["running_var"] = rng.standard_normal(c), rng.uniform(0.3, 3, c)
        return layer
    block = basic_block(inplanes, planes, stride, (conv, bn))
    x = rng.standard_normal((2, inplanes, 6, 5))
    out = block.forward(x)
    body, shortcut = block.cache
    return (block, x, rng.standard_normal(out.shape), body + shortcut,
            BranchBackward(block, "body"), BranchBackward(block, "shortcut"))


def _residual_variants(dout, s, body_backward, shortcut_backward):
    """What common mistakes in a residual backward compute, those that differ from the right answer here."""
    g = dout * (s > 0)
    right = body_backward(g) + shortcut_backward(g)
    return {mistake: value for mistake, value in _residual_mistakes(dout, s, g, body_backward, shortcut_backward)
            .items() if rel_error(value, right) > 1e-9}


def _residual_mistakes(dout, s, g, body_backward, shortcut_backward):
    return {"the body alone: the shortcut's gradient is missing (the fork adds both branches)": body_backward(g),
            "the shortcut alone: the body's gradient is missing (the fork adds both branches)": shortcut_backward(g),
            "averaging the two branches; the fork adds them (x feeds both, each path counts in full)":
                (body_backward(g) + shortcut_backward(g)) / 2,
            "no ReLU after the sum: dout goes straight into the branches (out = relu(s))":
                body_backward(dout) + shortcut_backward(dout),
            "the ReLU mask with >= where it needs the strict >":
                body_backward(dout * (s >= 0)) + shortcut_backward(dout * (s >= 0))}


def _cases_residual():
    from .sandbox import Scale
    s = np.array([[[[3.0, -6.0], [1.5, 0.0]]]])                  # body: a 1x1 conv of weight 2 (its backward
    dout = np.array([[[[1.0, 2.0], [-1.0, 4.0]]]])                # doubles), shortcut: the identity; s = 3x

    def hand(got):
        _match_variant(got, _residual_variants(dout, s, Scale(2), Scale(1)), "the worked example")
        expect_close(got, [[[[3.0, 0.0], [-3.0, 0.0]]]], "the worked example (body 2g + shortcut g where s > 0)")
    cases = [Case("worked example: a 1x1 body of weight 2, identity shortcut", (dout, s, Scale(2), Scale(1)), hand)]
    for k, (inplanes, planes, stride, label) in enumerate([(4, 4, 1, "identity shortcut"),
                                                            (3, 5, 2, "downsample shortcut, stride 2")]):
        block, x, d, summed, body_bw, shortcut_bw = _residual_case(_rng(40 + k), inplanes, planes, stride)

        def check(got, block=block, x=x, d=d, summed=summed, body_bw=body_bw, shortcut_bw=shortcut_bw, label=label):
            _match_variant(got, _residual_variants(d, summed, body_bw, shortcut_bw), f"a basic block, {label}")
            expect_close(got, numeric_vjp(block.forward, x, d), f"a basic block, {label}, numeric gradient", 1e-7)
        cases.append(Case(f"a basic block ({label})", (d, summed, body_bw, shortcut_bw), check))
    block, x, d, summed, body_bw, shortcut_bw = _residual_case(_rng(42), 4, 4, 1)
    d32, s32 = f32(d, summed)
    expected = body_bw(d32 * (s32 > 0)) + shortcut_bw(d32 * (s32 > 0))
    cases.append(float32_case((d32, s32, body_bw.as_dtype(np.float32), shortcut_bw.as_dtype(np.float32)),
                              expected, "residual backward", 1e-5))
    return cases


def _cam_inputs(seed, signed):
    """Activations A (N, K, h, w) and gradients G at a layer: after a ReLU (A >= 0), or before one
    (``signed``: negative activations too, where a forgotten ReLU on the map shows). h != w, so that a
    transposed map fails on shape; the gradients have exact zeros, as behind a ReLU."""
    r = _rng(seed)
    A = r.standard_normal((3, 5, 4, 6))
    A = A if signed else np.maximum(A, 0) * 2
    G = r.standard_normal(A.shape) * (r.uniform(size=A.shape) > 0.2)
    return A, G


def _layer_cam_variants(A, G):
    relu = lambda v: np.maximum(v, 0)                                       # noqa: E731
    return {"no ReLU on the map (LayerCAM ends with relu of the channel sum)": (relu(G) * A).sum(axis=1),
            "G instead of relu(G): that is HiResCAM, LayerCAM keeps the positive gradients only":
                relu((G * A).sum(axis=1)),
            "relu(G * A), the ReLU on the product (Grad-CAM element-wise); LayerCAM clips the gradient":
                relu(G * A).sum(axis=1),
            "the positive gradient averaged over (h, w) first, as Grad-CAM does; LayerCAM weighs each position":
                relu(np.einsum("nk,nkhw->nhw", relu(G).mean(axis=(2, 3)), A)),
            "a mean over the channels (axis 1); the map is their sum": relu((relu(G) * A).mean(axis=1))}


def _grad_cam_pp_reference(A, G, eps=1e-6, weights_from=None, spatial_axes=(2, 3), weight_axes=(2, 3),
                           reduce=np.sum, final_relu=True):
    """Grad-CAM++ as the assignment asks for it, and (through the keywords) as its common mistakes do."""
    S = A.sum(axis=spatial_axes, keepdims=True)
    a = np.where(G != 0, G ** 2 / (2 * G ** 2 + S * G ** 3 + eps), 0)
    g = np.maximum(G, 0) if weights_from is None else weights_from
    w = reduce(g * a, axis=weight_axes, keepdims=True)
    m = (w * A).sum(axis=1)
    return np.maximum(m, 0) if final_relu else m


def _grad_cam_pp_variants(A, G):
    with np.errstate(divide="ignore", invalid="ignore"):
        return {"no ReLU on the map": _grad_cam_pp_reference(A, G, final_relu=False),
                "G instead of relu(G) in the weights: Grad-CAM++ sums the positive gradients only":
                    _grad_cam_pp_reference(A, G, weights_from=G),
                "Grad-CAM's weights, the mean of G over (h, w), without the a_ij":
                    np.maximum(np.einsum("nk,nkhw->nhw", G.mean(axis=(2, 3)), A), 0),
                "a mean of relu(G) * a over (h, w); Grad-CAM++ sums it":
                    _grad_cam_pp_reference(A, G, reduce=np.mean),
                "sum(A) over the channels (axis 1); it is each channel's sum over (h, w), axes (2, 3)":
                    _grad_cam_pp_reference(A, G, spatial_axes=1),
                "sum(A) over the whole image (axes 1, 2, 3); it is each channel's own sum over (h, w)":
                    _grad_cam_pp_reference(A, G, spatial_axes=(1, 2, 3)),
                "the weights summed over the channels (axis 1), one per position; they are one per channel, "
                "summed over (h, w)": _grad_cam_pp_reference(A, G, weight_axes=1),
                "no 1e-6 in the denominator of a_ij (the docstring's formula has it)":
                    _grad_cam_pp_reference(A, G, eps=0)}


def _cases_cam_weighting(name, reference, variants, hand):
    """A hand-worked example, activations after and before a ReLU, float32."""
    label = {"layer_cam": "LayerCAM", "grad_cam_plus_plus": "Grad-CAM++"}[name]
    A0, G0, expected0 = hand

    def checker(A, G, what, expected):
        def check(got):
            got = single(got, what)
            if got.shape == A.shape:
                raise Failed(f"{what}: returned one map per channel {got.shape}; the map sums them over the "
                             f"channels (axis 1) -> {expected.shape}")
            if got.shape == A.shape[:2]:
                raise Failed(f"{what}: returned {got.shape}, one number per channel (the weights?); the map is "
                             f"the channels summed with those weights -> {expected.shape}")
            if not np.isfinite(got).all():
                raise Failed(f"{what}: the result has NaN or infinity" + (
                    "; 2 G^2 + S G^3 is 0 where G = -2/S (as in the worked example): that is what the 1e-6 "
                    "in the denominator is for" if name == "grad_cam_plus_plus" else ""))
            if got.shape == expected.shape and rel_error(got, expected) > 1e-9:
                _match_variant(got, {mistake: value for mistake, value in variants(A, G).items()
                                     if rel_error(value, expected) > 1e-9}, what)   # those that differ here
            expect_close(got, expected, what)
        return check
    cases = [Case("worked example", (A0, G0), checker(A0, G0, f"{label}, the worked example", expected0))]
    for k, (signed, where) in enumerate(((False, "activations after a ReLU"), (True, "activations before a ReLU "
                                                                                     "(negative too)"))):
        A, G = _cam_inputs(50 + k + 2 * (name == "grad_cam_plus_plus"), signed)
        cases.append(Case(where, (A, G), checker(A, G, f"{label}, {where}", reference(A, G))))
    A, G = _cam_inputs(54 + (name == "grad_cam_plus_plus"), True)
    A32, G32 = f32(A, G)
    cases.append(float32_case((A32, G32), reference(*f64(A32, G32)), label, 1e-5))
    return cases


def _cases_layer_cam():
    A = np.array([[[[1.0, 2.0], [0.0, 3.0]], [[2.0, 0.0], [1.0, -4.0]]]])
    G = np.array([[[[0.5, -1.0], [2.0, 1.0]], [[-0.5, 1.0], [0.0, 2.0]]]])
    # relu(G) * A: channel 0 [[0.5, 0], [0, 3]], channel 1 [[0, 0], [0, -8]]; sum [[0.5, 0], [0, -5]]; ReLU
    return _cases_cam_weighting("layer_cam", lambda A, G: np.maximum((np.maximum(G, 0) * A).sum(axis=1), 0),
                                _layer_cam_variants, (A, G, np.array([[[0.5, 0.0], [0.0, 0.0]]])))


def _cases_grad_cam_plus_plus():
    A = np.array([[[[1.0, 0.0], [0.0, 1.0]], [[0.0, 2.0], [0.0, 0.0]]]])
    G = np.array([[[[1.0, 0.0], [-1.0, 0.0]], [[0.0, 1.0], [0.0, 0.0]]]])
    # channel 0: sum(A) = 2, a = 1 / (2 + 2 + 1e-6) at G = 1, weight = relu(1) * a = 1 / (4 + 1e-6);
    # at G = -1, 2 G^2 + S G^3 = 2 - 2 = 0: only the 1e-6 keeps a finite (and relu(G) = 0 drops it);
    # channel 1: sum(A) = 2, the same. map = (A_0 + A_1) / (4 + 1e-6)
    return _cases_cam_weighting("grad_cam_plus_plus", _grad_cam_pp_reference, _grad_cam_pp_variants,
                                (A, G, np.array([[[1.0, 2.0], [0.0, 1.0]]]) / (4 + 1e-6)))


def _flip_curve(model, x, y, a, k, order="morf", score="probability", fill="min", cumulative=True,
                with_start=False, by="map"):
    """Pixel flipping as assignment G asks (``order``, ``score``, ... select the common mistakes instead)."""
    from minicnn.losses import softmax
    N = len(x)
    A = np.broadcast_to(a, x.shape).reshape(N, -1)
    A = np.abs(A) if by == "abs" else A
    ranking = {"morf": lambda: np.argsort(-A, axis=1), "lerf": lambda: np.argsort(A, axis=1),
               "reversed": lambda: np.argsort(A, axis=1)[:, ::-1],
               "batch": lambda: np.argsort(-A.ravel()).reshape(N, -1) % A.shape[1]}[order]()
    original = x.reshape(N, -1)
    current = original.copy()
    black = {"min": original.min(axis=1, keepdims=True), "zero": np.zeros((N, 1))}[fill]

    def scored(images):
        logits = model.forward(images.reshape(x.shape).astype(x.dtype))
        values = softmax(logits) if score == "probability" else logits
        return values[np.arange(N), y]
    curve = [scored(original)] if with_start else []
    for t in range(0, A.shape[1], k):
        if not cumulative:
            current = original.copy()
        idx = ranking[:, t:t + k]
        np.put_along_axis(current, idx, np.broadcast_to(black, idx.shape), axis=1)
        curve.append(scored(current))
    return np.stack(curve, axis=1)


def _cases_pixel_flipping():
    model = _small_model(2)
    r = _rng(60)
    x = r.uniform(0, 1, (3, 3, 8, 8))
    x[2] = x[2] * 0.5 + 0.3                                       # an image whose minimum is not 0
    y = np.array([1, 4, 2])
    a = r.standard_normal((3, 1, 8, 8))                           # one channel: its pixels tie over RGB
    a_rgb = r.standard_normal((3, 3, 8, 8))

    def variants(a, k):
        return {"the least relevant pixels flipped first (argsort(a) ascending); pixel flipping removes the most "
                "relevant first": _flip_curve(model, x, y, a, k, order="lerf"),
                "logits; the curve follows the target's softmax probability": _flip_curve(model, x, y, a, k,
                                                                                          score="logit"),
                "each step flips its pixels on the original image; the flips accumulate":
                    _flip_curve(model, x, y, a, k, cumulative=False),
                "flipping to 0; 'black' is each image's own minimum": _flip_curve(model, x, y, a, k, fill="zero"),
                "a first point for the untouched image; the curve starts after the first step":
                    _flip_curve(model, x, y, a, k, with_start=True),
                "one ranking over the whole batch; each image ranks its own features":
                    _flip_curve(model, x, y, a, k, order="batch"),
                "pixels ranked by |a|; pixel flipping ranks the signed map": _flip_curve(model, x, y, a, k, by="abs"),
                "np.argsort(a)[:, ::-1] (ties in reverse order); use np.argsort(-a) as the docstring says":
                    _flip_curve(model, x, y, a, k, order="reversed")}

    def checker(a, k, what):
        def check(got):
            expected = _flip_curve(model, x, y, a, k)
            got = single(got, what)
            if got.shape == expected.shape and rel_error(got, expected) > 1e-9:
                _match_variant(got, {m: v for m, v in variants(a, k).items()
                                     if v.shape != expected.shape or rel_error(v, expected) > 1e-9}, what)
            expect_close(got, expected, what)
        return check
    x32, a32 = f32(x, a)
    return [Case("a one-channel map, 16 features a step", (model, x, y, a, 16), checker(a, 16, "pixel flipping, "
                                                                                          "one-channel map")),
            Case("a three-channel map, 24 features a step", (model, x, y, a_rgb, 24),
                 checker(a_rgb, 24, "pixel flipping, three-channel map")),
            float32_case((_small_model(2).to(np.float32), x32, y, a32, 16),
                         _flip_curve(model, *f64(x32), y, *f64(a32), 16), "pixel flipping", 1e-5)]


ASSIGNMENTS = {     # {assignment: {function: what builds its cases}}
    "relu_maxpool": {"relu_backward_gradient": _cases_relu("gradient"),
                     "relu_backward_deconvnet": _cases_relu("deconvnet"),
                     "relu_backward_guided": _cases_relu("guided"),
                     "maxpool_backward": _cases_maxpool},
    "conv_backward": {"conv_backward": _cases_conv},
    "gradcam_smoothgrad": {"grad_cam": _cases_grad_cam, "smoothgrad": _cases_smoothgrad},
    "deeplift_lrp": {"relu_backward_rescale": _cases_rescale, "lrp_epsilon": _cases_lrp_epsilon,
                     "lrp_zplus": _cases_lrp_zplus},
    "residual": {"residual_backward": _cases_residual},
    "cam_weightings": {"layer_cam": _cases_layer_cam, "grad_cam_plus_plus": _cases_grad_cam_plus_plus},
    "pixel_flipping": {"pixel_flipping": _cases_pixel_flipping},
}


# Points per function (partial credit: the share of its cases passed). The ReLU rules are one line each and
# given away by the tutorial; the backward passes and the methods built from them carry the weight.
POINTS = {"relu_backward_gradient": 1, "relu_backward_deconvnet": 1, "relu_backward_guided": 1,
          "maxpool_backward": 4, "conv_backward": 6, "grad_cam": 5, "smoothgrad": 5,
          "relu_backward_rescale": 3, "lrp_epsilon": 4, "lrp_zplus": 3, "residual_backward": 3,
          "layer_cam": 2, "grad_cam_plus_plus": 4, "pixel_flipping": 4}

# What a submission may not call for the function it must write: the library's own answer.
ALWAYS_FORBIDDEN = ("attribution", "minicnn.naive", "solutions", "tests.solutions")
FORBIDDEN_NAMES = {"relu_maxpool": {"ReLU", "MaxPool2d", "maxpool_backward"},
                   "conv_backward": {"Conv2d", "conv_ops", "col2im", "conv2d_input_grad", "conv2d_weight_grad"},
                   "gradcam_smoothgrad": set(), "deeplift_lrp": {"ReLU", "secant", "RESCALE_EPS"},
                   "residual": {"Residual", "chain_back", "backprop"}, "cam_weightings": set(), "pixel_flipping": set()}


DYNAMIC = {"eval", "exec", "compile", "__import__", "importlib", "globals", "vars", "__builtins__", "modules"}


def library_uses(source, assignment):
    """{function: the library name it uses} for graded functions that reach the library's own answer (an
    import of attribution, minicnn.naive or the solutions, or the layer the assignment rebuilds) -- in their
    own body, in a helper function or class of the file they use, or in a module-level assignment they read
    (``R = ReLU()``). Code that builds names at run time (eval, exec, __import__, importlib, globals(),
    sys.modules) cannot be checked; a file that uses it anywhere is flagged for every graded function."""
    import ast
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return {}                                     # the student's process reports what is wrong with the file
    aliases = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                aliases[a.asname or a.name.split(".")[0]] = a.name if a.asname else a.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.module:
            for a in node.names:
                aliases[a.asname or a.name] = f"{node.module}.{a.name}"

    def dotted(node):
        parts = []
        while isinstance(node, ast.Attribute):
            parts.append(node.attr)
            node = node.value
        if isinstance(node, ast.Name) and node.id in aliases:
            return ".".join([aliases[node.id]] + parts[::-1])
        return None

    def forbidden(name):
        return name.startswith(ALWAYS_FORBIDDEN) or bool(set(name.split(".")) & FORBIDDEN_NAMES[assignment])

    def first_forbidden(node):
        for n in ast.walk(node):
            name = dotted(n) if isinstance(n, (ast.Attribute, ast.Name)) else None
            if name and forbidden(name):
                return name
        return None
    for node in ast.walk(tree):                                   # run-time names: nothing can be checked
        name = node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) else None
        if isinstance(node, ast.alias):
            name = node.name.split(".")[0]
        if name in DYNAMIC:
            return {f: f"{name} (names built at run time cannot be checked)" for f in ASSIGNMENTS[assignment]}
    definitions = {}                                 # module-level name -> the statements that define it
    for stmt in tree.body:
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            definitions.setdefault(stmt.name, []).append(stmt)
        elif not isinstance(stmt, (ast.Import, ast.ImportFrom)):
            for target in ast.walk(stmt):
                if isinstance(target, ast.Name) and isinstance(target.ctx, ast.Store):
                    definitions.setdefault(target.id, []).append(stmt)
    uses = {}
    for graded in ASSIGNMENTS[assignment]:
        seen, todo = set(), [graded]
        while todo and graded not in uses:                # the graded function and what it reaches
            name = todo.pop()
            if name in seen:
                continue
            seen.add(name)
            for stmt in definitions.get(name, []):
                found = first_forbidden(stmt)
                if found:
                    uses[graded] = found
                    break
                todo.extend(n.id for n in ast.walk(stmt) if isinstance(n, ast.Name) and n.id in definitions)
    return uses


FUNCTION_TIMEOUT = 30.0        # seconds all the cases of one function may take (--timeout)
SUBMISSION_TIMEOUT = 300.0     # seconds a whole submission may take, its imports included (--submission-timeout)
MEMORY_MB = 2048               # memory the student's process may use beyond what Python and NumPy take (--memory)
MAX_SOURCE_BYTES = 1 << 20     # a submission larger than this is not graded


def check_options(timeout=FUNCTION_TIMEOUT, seed=0, submission_timeout=SUBMISSION_TIMEOUT, memory_mb=MEMORY_MB,
                  assignment=None):
    """ValueError naming the option (or the assignment, when given) for settings that make no sense."""
    if assignment is not None and assignment not in ASSIGNMENTS:
        raise ValueError(f"unknown assignment {assignment!r}; choose from {', '.join(ASSIGNMENTS)}")
    for name, value in (("--timeout", timeout), ("--submission-timeout", submission_timeout)):
        if not (isinstance(value, (int, float)) and np.isfinite(value) and 0 < value <= 86400):
            raise ValueError(f"{name} must be a number of seconds above 0 and at most 86400, not {value!r}")
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or not 0 <= seed < 2 ** 63:
        raise ValueError(f"--seed must be a whole number from 0 (the public cases) up, not {seed!r}")
    if not (isinstance(memory_mb, (int, float)) and 64 <= memory_mb <= 1 << 20):
        raise ValueError(f"--memory must be a number of megabytes from 64 up, not {memory_mb!r}")


GRADED_SUFFIXES = (".py", ".ipynb")
INSTALL_CELL_START = "# Run this cell first"          # the first line of the notebooks' install cell


def notebook_source(data, name="the notebook"):
    """The Python source of a Jupyter notebook (bytes of its .ipynb JSON): its code cells in order, with the
    notebook's shell and magic lines (``!pip ...``, ``%matplotlib ...``) turned into comments. ValueError if it
    is not a notebook."""
    import json
    try:
        nb = json.loads(data.decode("utf-8"))
        cells = nb["cells"]
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as e:
        raise ValueError(f"{name} is not a readable Jupyter notebook ({type(e).__name__})") from None
    parts = []
    for cell in cells:
        if not isinstance(cell, dict) or cell.get("cell_type") != "code":
            continue
        text = cell.get("source", "")
        text = "".join(text) if isinstance(text, list) else str(text)
        if text.startswith(INSTALL_CELL_START):
            continue                            # the notebooks' install cell: set-up, not the student's code
        lines = ["# " + line if line.lstrip().startswith(("!", "%")) else line for line in text.splitlines()]
        parts.append("\n".join(lines))
    return ("\n\n".join(parts) + "\n").encode("utf-8")


def read_submission(path):
    """The source of a student's file as bytes (read once: what is graded is this copy): a .py file as it is,
    a .ipynb notebook as its code cells (``notebook_source``). ValueError (or FileNotFoundError) if it cannot
    be graded, saying why and what would be accepted."""
    from pathlib import Path
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no file at {path}")
    if path.suffix not in GRADED_SUFFIXES:
        raise ValueError(f"{path.name}: a {path.suffix or 'suffix-less'} file cannot be graded; submit the .py "
                         f"file or the .ipynb notebook")
    size = path.stat().st_size
    if size > MAX_SOURCE_BYTES:
        raise ValueError(f"{path.name} is {size} bytes; a submission may have at most {MAX_SOURCE_BYTES}")
    data = path.read_bytes()
    return notebook_source(data, path.name) if path.suffix == ".ipynb" else data


def grade(assignment, path, out=sys.stdout, timeout=FUNCTION_TIMEOUT, seed=0,
          submission_timeout=SUBMISSION_TIMEOUT, memory_mb=MEMORY_MB):
    """Grade one student file; returns {function: (passed, total, first error or None)} and prints the report.

    The cases, the expected values and the comparisons stay in this process. The student's file runs in a
    process of its own (``attribution.sandbox``), from a copy in a fresh temporary folder, with limits on
    memory, CPU time and (Linux) where it may write; it receives only each case's inputs and sends back only
    arrays. Whatever the code does -- sys.exit, os._exit, a crash, an endless loop, a thread, forged
    messages -- costs that function its marks with a one-line reason, and the report always prints.
    ``timeout``: seconds for all the cases of one function; ``submission_timeout``: for the whole file.
    A function that calls the library's own answer (``library_uses``) gets no marks. ``seed``: 0 for the
    cases the students have; another number gives cases they never saw (hidden grading).
    """
    from pathlib import Path
    check_options(timeout, seed, submission_timeout, memory_mb, assignment)
    source = read_submission(path)
    from .sandbox import Reaper
    with Reaper() as reaper:
        report = grade_source(assignment, Path(path).name, source, timeout, seed, submission_timeout, memory_mb,
                              reaper)
    print_report(report, out)
    return report


def build_cases(assignment, seed):
    """{function: [Case]} for ``seed`` (0: the public cases)."""
    global SEED
    previous, SEED = SEED, int(seed)
    try:
        return {name: builder() for name, builder in ASSIGNMENTS[assignment].items()}
    finally:
        SEED = previous


def grade_source(assignment, file_name, source, timeout, seed, submission_timeout, memory_mb, reaper=None):
    """The report for one submission's ``source`` (bytes), graded from a copy named ``file_name``."""
    import time

    from .sandbox import Child, child_file_name, clean_reason, make_folder, remove_folder
    cases = build_cases(assignment, seed)
    names = list(cases)
    passed = {name: 0 for name in names}
    errors = {name: None for name in names}
    end = time.monotonic() + submission_timeout
    folder = make_folder(child_file_name(file_name), source)
    child = None
    try:
        for name in names:
            if time.monotonic() >= end:
                errors[name] = f"the submission's {submission_timeout:g} s ran out before this function"
                continue
            deadline = min(end, time.monotonic() + timeout)
            if child is None:
                child = Child(folder, child_file_name(file_name), int(memory_mb) << 20, submission_timeout, deadline)
                start = child.start
                if start.kind != "ready":
                    reason = _lost(start, "loading the file", timeout)
                    for rest in names[names.index(name):]:
                        errors[rest] = reason
                    break
            for k, case in enumerate(cases[name]):
                reply = child.call(k, name, case.args, deadline)
                if reply.kind == "missing":
                    errors[name], passed[name] = "the function is missing from the file", 0
                    break
                if reply.kind in ("hang", "died", "protocol"):
                    errors[name], passed[name] = _lost(reply, case.label, timeout), 0
                    child.close()
                    child = None
                    if reaper is not None:
                        reaper.sweep()
                    break
                try:
                    if reply.kind == "error":
                        raise Failed(reply.reason)
                    if reply.modified:
                        raise Failed(f"it modifies argument {reply.modified[0] + 1} in place; compute a new "
                                     f"array instead")
                    case.check(reply.value)
                    passed[name] += 1
                except Failed as e:
                    reason = str(e) if str(e).startswith(("not implemented", case.label)) else f"{case.label}: {e}"
                    errors[name] = errors[name] or clean_reason(reason)
    finally:
        if child is not None:
            child.close()
        if reaper is not None:
            reaper.sweep()
        remove_folder(folder)
    for name, used in library_uses(source.decode("utf-8", "replace"), assignment).items():
        passed[name] = 0
        errors[name] = f"it calls the library's own answer ({used}): write the function yourself"
    return {name: (passed[name], len(cases[name]), errors[name]) for name in names}


def _lost(reply, where, timeout):
    """The reason for a function whose process hung, died or broke the protocol."""
    if reply.kind == "hang":
        return f"{where}: still running after the function's {timeout:g} s (an endless loop or a long sleep?)"
    if reply.kind == "died":
        return f"{where}: the code ended the grading process ({reply.reason}: os._exit, a crash or an abort?)"
    if reply.kind == "import_error":
        return reply.reason
    return f"{where}: the grading process sent something that is not a result ({reply.reason})"


def points(report):
    """{function: (points earned, points possible)}: POINTS times the share of the cases passed."""
    return {name: (round(POINTS[name] * p / t, 2) if t else 0.0, POINTS[name]) for name, (p, t, _) in report.items()}


def print_report(report, out=sys.stdout):
    width = max(len(n) for n in report)
    score = points(report)
    for name, (got, total, error) in report.items():
        print(f"{name:<{width}}  {got}/{total}  {score[name][0]:g}/{score[name][1]} points  "
              + ("ok" if error is None else f"FAILED: {error}"), file=out)
    got, total = sum(p for p, _, _ in report.values()), sum(t for _, t, _ in report.values())
    earned, possible = sum(e for e, _ in score.values()), sum(p for _, p in score.values())
    print(f"{'total':<{width}}  {got}/{total} cases, {earned:g}/{possible} points", file=out)


def grade_folder(assignment, folder, csv_path, timeout=FUNCTION_TIMEOUT, seed=0, out=sys.stdout,
                 submission_timeout=SUBMISSION_TIMEOUT, memory_mb=MEMORY_MB):
    """Grade every file in ``folder`` (one student each: a .py file or a .ipynb notebook) and write one CSV row
    per file: student, file, assignment, seed, per function points and reason, total and maximum points.
    Files of other kinds get a row of zeros that says why. Returns {file name: report}.

    Every file is read before any is graded, so a submission that rewrites a classmate's file changes
    nothing that is graded; each runs from its own temporary copy. A submission that cannot be graded at all
    (too large, unreadable) gets a row of zeros that says why; the batch goes on."""
    import csv
    from pathlib import Path

    from minicnn.files import atomic_write

    from .sandbox import Reaper, clean_reason
    check_options(timeout, seed, submission_timeout, memory_mb, assignment)
    check_csv_path(csv_path)
    files = sorted(p for p in Path(folder).iterdir() if p.is_file() and not p.name.startswith("."))
    if not files:
        raise ValueError(f"no files in {folder}")
    sources = {}
    for path in files:
        try:
            sources[path.name] = read_submission(path)
        except (OSError, ValueError) as e:
            sources[path.name] = e
    names = list(ASSIGNMENTS[assignment])
    most = sum(POINTS[n] for n in names)
    reports, rows = {}, []
    with Reaper() as reaper:
        for path in files:
            source = sources[path.name]
            if isinstance(source, Exception):
                why = clean_reason(f"not graded: {source}")
                report = {name: (0, 1, why) for name in names}
            else:
                try:
                    report = grade_source(assignment, path.name, source, timeout, seed, submission_timeout,
                                          memory_mb, reaper)
                except Exception as e:                # the grader's own failure on this file: say so, go on
                    why = clean_reason(f"not graded: the grader failed on this file ({type(e).__name__}: {e})")
                    report = {name: (0, 1, why) for name in names}
            score = points(report)
            reports[path.name] = report
            row = {"student": path.stem, "file": path.name, "assignment": assignment, "seed": seed}
            for name in names:
                row[f"{name} points"] = score[name][0]
                row[f"{name} reason"] = report[name][2] or "ok"
            row["total points"] = round(sum(e for e, _ in score.values()), 2)
            row["max points"] = most
            rows.append(row)
            print(f"{path.name}: {row['total points']:g}/{most} points", file=out)
    with atomic_write(csv_path, "w") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print(f"wrote {csv_path}", file=out)
    return reports


def check_csv_path(csv_path):
    """ValueError unless ``csv_path`` is a .csv file that can be written (checked before any grading)."""
    import os
    from pathlib import Path
    path = Path(csv_path)
    if path.suffix != ".csv":
        raise ValueError(f"--csv must name a .csv file, not {csv_path}")
    if path.is_dir():
        raise ValueError(f"--csv {csv_path} is a folder; give a file name ending in .csv")
    folder = path.parent
    if not folder.is_dir():
        raise ValueError(f"the folder of --csv {csv_path} does not exist")
    if not os.access(folder, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise ValueError(f"--csv {csv_path} cannot be written (no permission in {folder})")


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m attribution.grade", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("assignment", help=f"one of: {', '.join(ASSIGNMENTS)}")
    parser.add_argument("student_file", help="the completed assignment file, or a folder of them (one per "
                                             "student; then --csv)")
    parser.add_argument("--timeout", type=float, default=FUNCTION_TIMEOUT,
                        help="seconds all the cases of one function may take (default: %(default)s)")
    parser.add_argument("--submission-timeout", type=float, default=SUBMISSION_TIMEOUT,
                        help="seconds one whole submission may take (default: %(default)s)")
    parser.add_argument("--memory", type=float, default=MEMORY_MB,
                        help="megabytes the student's process may use on top of Python and NumPy, where the "
                             "platform can limit it (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0,
                        help="0: the cases students have; any other number from 1 up: hidden cases they never saw")
    parser.add_argument("--csv", default=None, help="with a folder: the CSV to write (one row per student)")
    args = parser.parse_args(argv)
    from pathlib import Path
    try:
        check_options(args.timeout, args.seed, args.submission_timeout, args.memory, args.assignment)
        if Path(args.student_file).is_dir():
            if not args.csv:
                raise ValueError("grading a folder writes a table: give --csv FILE.csv")
            reports = grade_folder(args.assignment, args.student_file, args.csv, args.timeout, args.seed,
                                   submission_timeout=args.submission_timeout, memory_mb=args.memory)
            return 0 if all(p == t for r in reports.values() for p, t, _ in r.values()) else 1
        report = grade(args.assignment, args.student_file, timeout=args.timeout, seed=args.seed,
                       submission_timeout=args.submission_timeout, memory_mb=args.memory)
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0 if all(p == t for p, t, _ in report.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
