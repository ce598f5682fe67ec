"""Autograder for the assignments in tutorials/assignments/.

    python -m attribution.grade relu_maxpool       tutorials/assignments/a_relu_maxpool.py
    python -m attribution.grade conv_backward      tutorials/assignments/b_conv_backward.py
    python -m attribution.grade gradcam_smoothgrad tutorials/assignments/c_gradcam_smoothgrad.py
    python -m attribution.grade deeplift_lrp       tutorials/assignments/d_deeplift_lrp.py
    python -m attribution.grade residual           tutorials/assignments/e_residual.py

Each function of the student file is run on fixed cases and compared with
numeric gradients and with minicnn's own layers and attribution methods (the
reference implementation). The grader prints one line per function with its
score and the first error found. The student's code runs in a separate
process with a time limit per case (--timeout, default 10 s): an exit, a
crash, a hang or an import error costs that function its marks, never the
report. Exit status: 0 for full marks, 1 otherwise, 2 if the file cannot be
graded at all (no such file, unknown assignment).
"""
import argparse
import importlib.util
import sys
import traceback

import numpy as np

from minicnn.gradcheck import numeric_vjp, rel_error
from minicnn.layers import Conv2d, Flatten, Linear, MaxPool2d, ReLU
from minicnn.sequential import Sequential

from . import methods as attr

SEED = 0        # the cases' random seed; an instructor grades with another (--seed) for cases students never saw


def _rng(k):
    """The random generator of case k: the public cases for SEED 0, hidden ones for any other seed."""
    return np.random.default_rng([k, SEED]) if SEED else np.random.default_rng(k)


TEXTBOOK_X = np.array([[[[1.0, 0.0], [-1.0, -10.0]]]])
TEXTBOOK_G = np.array([[[[0.4, 1.1], [-0.5, -0.1]]]])


class Failed(Exception):
    """A case went wrong; the message says how."""


def expect_close(got, expected, what, tol=1e-9):
    got = np.asarray(got)
    if got.shape != np.shape(expected):
        raise Failed(f"{what}: returned shape {got.shape}, expected {np.shape(expected)}")
    err = rel_error(got, expected)
    if not err <= tol:
        raise Failed(f"{what}: relative error {err:.2e} (should be below {tol:.0e})")


def unchanged(fn, *arrays):
    """Call fn(*arrays) on copies and fail if it changes any of them in place; return its result."""
    copies = [np.array(a, copy=True) for a in arrays]
    result = fn(*copies)
    for i, (a, c) in enumerate(zip(arrays, copies)):
        if not np.array_equal(a, c):
            raise Failed(f"it modifies argument {i + 1} in place; compute a new array instead")
    return result


RULE_NAMES = {"gradient": "Vanilla Gradient rule dout * (x > 0)", "deconvnet": "DeconvNet rule dout * (dout > 0)",
              "guided": "Guided Backprop rule dout * (x > 0) * (dout > 0)"}


GREATER_EQUAL = {"gradient": "dout * (x >= 0)", "deconvnet": "dout * (dout >= 0)",
                 "guided": "dout * (x >= 0) * (dout > 0)"}


def _relu_variants(dout, x, rule):
    """What common attempts compute, the likeliest cause first: the graded rule written with >= where it needs
    > (on the textbook's example a guided rule with >= equals the DeconvNet rule, and >= is the cause), the
    other rules' >= forms, then the three rules."""
    values = {"dout * (x >= 0)": dout * (x >= 0), "dout * (dout >= 0)": dout * (dout >= 0),
              "dout * (x >= 0) * (dout > 0)": dout * (x >= 0) * (dout > 0)}
    order = [GREATER_EQUAL[rule]] + [v for v in values if v != GREATER_EQUAL[rule]]
    variants = {f"{v}: >= where the rule needs the strict >": values[v] for v in order}
    variants.update({RULE_NAMES["gradient"]: dout * (x > 0), RULE_NAMES["deconvnet"]: dout * (dout > 0),
                     RULE_NAMES["guided"]: dout * (x > 0) * (dout > 0)})
    return variants


def _cases_relu(rule):
    def check(fn, dout, x, what):
        relu = ReLU()
        relu.forward(x)
        expected = relu.backward(dout, rule=rule)
        got = np.asarray(unchanged(fn, dout, x))
        if got.shape == expected.shape and not np.array_equal(got, expected):
            matches = [name for name, value in _relu_variants(dout, x, rule).items() if np.array_equal(got, value)]
            if matches:
                hint = "" if ">=" in matches[0] else " (an indicator on the wrong tensor?)"
                raise Failed(f"{what}: the result is the {matches[0]}, not the {RULE_NAMES[rule]}{hint}")
        expect_close(got, expected, what, 0)

    def cases(fn):
        yield "the textbook's 2x2 example", lambda: check(fn, TEXTBOOK_G, TEXTBOOK_X, "textbook example")
        rng = _rng(1)
        x = rng.standard_normal((2, 3, 4, 5))
        x[0, 0, :2] = 0.0                                  # exact zeros: x > 0 is strict
        dout = rng.standard_normal(x.shape)
        dout[1, 2, 1] = 0.0
        yield "random input with exact zeros", lambda: check(fn, dout, x, "random input with exact zeros")
        x32, d32 = x.astype(np.float32), dout.astype(np.float32)
        yield "float32 stays float32", lambda: _expect_dtype(fn(d32, x32), np.float32)
    return cases


def _expect_dtype(a, dtype):
    if np.asarray(a).dtype != dtype:
        raise Failed(f"returned {np.asarray(a).dtype} for {np.dtype(dtype)} input; keep the input's dtype")


def _maxpool_reference(dout, x, k, s):
    pool = MaxPool2d(k, s)
    pool.forward(x)
    return pool.backward(dout)


def _cases_maxpool(fn):
    rng = _rng(2)
    for k, s, label in [(2, 2, "2x2 stride 2"), (3, 2, "3x3 stride 2 (overlapping windows)")]:
        x = rng.permutation(np.arange(2 * 3 * 7 * 9, dtype=np.float64)).reshape(2, 3, 7, 9) / 10   # no ties
        out = MaxPool2d(k, s).forward(x)
        dout = rng.standard_normal(out.shape)
        def check(x=x, dout=dout, k=k, s=s, label=label):
            got, expected = unchanged(lambda d, xx: fn(d, xx, k, s), dout, x), _maxpool_reference(dout, x, k, s)
            if np.shape(got) == expected.shape and rel_error(got, expected) > 1e-9:
                _match_variant(got, {"= where overlapping windows need +=: a shared element must add up the "
                                     "gradients of every window it wins": _maxpool_assigned(dout, x, k, s)}, label)
            expect_close(got, expected, label)
        yield label, check
    x = np.zeros((1, 2, 4, 4))
    x[0, 1, 1:3, 1:3] = 1.0                                 # windows of equal values
    dout = np.arange(1.0, 9.0).reshape(1, 2, 2, 2)
    yield "ties go to the first maximum", lambda: expect_close(
        fn(dout.copy(), x.copy(), 2, 2), _maxpool_reference(dout, x, 2, 2),
        "windows with tied values (the gradient goes to the first maximum in row-major order)")
    x = _rng(3).permutation(np.arange(50.0)).reshape(1, 2, 5, 5)
    dout = _rng(4).standard_normal((1, 2, 2, 2))

    def numeric():
        num = numeric_vjp(lambda xx: MaxPool2d(3, 2).forward(xx), x, dout)
        expect_close(fn(dout.copy(), x.copy(), 3, 2), num, "numeric gradient check", 1e-7)
    yield "numeric gradient check", numeric
    yield "float32 stays float32", lambda: _expect_dtype(fn(dout.astype(np.float32), x.astype(np.float32), 3, 2),
                                                         np.float32)


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


def _cases_conv(fn):
    rng = _rng(5)
    x = rng.standard_normal((2, 3, 5, 6))
    w = rng.standard_normal((4, 3, 3, 3))
    b = rng.standard_normal(4)

    def forward(xx, ww, bb, stride, pad):
        conv = Conv2d(3, 4, 3, stride=stride, padding=pad, dtype=np.float64)
        conv.params["weight"], conv.params["bias"] = ww, bb
        return conv.forward(xx)

    for stride, pad in [(1, 1), (2, 0)]:
        dout = rng.standard_normal(forward(x, w, b, stride, pad).shape)
        label = f"stride {stride}, pad {pad}"

        def check(part, dout=dout, stride=stride, pad=pad, label=label):
            dx, dw, db = unchanged(lambda d, xx, ww: fn(d, xx, ww, stride, pad), dout, x, w)
            got = {"dx": dx, "dw": dw, "db": db}[part]
            numeric = {"dx": lambda: numeric_vjp(lambda xx: forward(xx, w, b, stride, pad), x, dout),
                       "dw": lambda: numeric_vjp(lambda ww: forward(x, ww, b, stride, pad), w, dout),
                       "db": lambda: numeric_vjp(lambda bb: forward(x, w, bb, stride, pad), b, dout)}[part]()
            hint = " (summed over every image of the batch?)" if part in ("dw", "db") else ""
            expect_close(got, numeric, f"{part}, {label}, numeric gradient check{hint}", 1e-7)
        for part in ("dx", "dw", "db"):
            yield f"{part} ({label})", lambda part=part, check=check: check(part)
    yield "float32 stays float32", lambda: [_expect_dtype(a, np.float32) for a in fn(
        *(v.astype(np.float32) for v in (rng.standard_normal((2, 4, 5, 6)), x, w)), 1, 1)]


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
    A2, dA2 = _grad_cam_parts(model, x, targets, layer, wrong_axis=True)
    variants = {"no ReLU at the end: negative values where Grad-CAM has none": weighted,
                f"the sum of the gradient over (h, w) instead of its mean (off by h*w = {h * w})":
                    np.maximum(weighted * h * w, 0),
                "weights averaged over the images too: each image needs its own alpha (N, K)":
                    np.maximum(shared, 0),
                "the map scaled to [0, 1]: the coarse, unscaled map was asked for":
                    attr.scale_01(np.maximum(weighted, 0)),
                "the one-hot set on the wrong axis (dout[targets, n] instead of dout[n, targets])":
                    np.maximum(np.einsum("nk,nkhw->nhw", dA2.mean(axis=(2, 3)), A2), 0)}
    return variants


def _cases_grad_cam(fn):
    model = _small_model()
    x = _rng(6).standard_normal((3, 3, 8, 8))
    for layer, targets in (("features.4", np.array([2, 0, 1])), ("features.1", np.array([0, 3, 4]))):
        def check(layer=layer, targets=targets):
            expected = attr.grad_cam(model, x, targets, layer)
            got = unchanged(lambda xx: fn(model, xx, targets.copy(), layer), x)
            if np.ndim(got) == 3 and np.shape(got)[1:] == x.shape[2:] and expected.shape[1:] != x.shape[2:]:
                raise Failed(f"Grad-CAM at {layer}: returned {np.shape(got)}, the image's size: the coarse map "
                             f"{expected.shape} was asked for, without upsampling")
            if np.shape(got) == expected.shape and rel_error(got, expected) > 1e-9:
                _match_variant(got, _grad_cam_variants(model, x, targets, layer), f"Grad-CAM at {layer}")
            expect_close(got, expected, f"Grad-CAM at {layer} (mean of the gradient over (h, w), weighted sum, "
                                        f"ReLU)")
        yield f"layer {layer}", check
    yield "float32 stays float32", lambda: _expect_dtype(
        fn(_small_model().to(np.float32), x.astype(np.float32), np.array([0, 1, 2]), "features.4"), np.float32)


def _cases_smoothgrad(fn):
    model = _small_model(1)
    x = _rng(7).uniform(0, 1, (2, 3, 8, 8))
    x[1] *= 3                                         # the images' ranges differ: sigma is per image
    targets = np.array([1, 2])
    level = 0.2
    noise = _rng(8).standard_normal((2, 5, 3, 8, 8))                # (N, n_samples, C, H, W), unscaled
    span = x.reshape(2, -1).max(axis=1) - x.reshape(2, -1).min(axis=1)
    sigma = (level * span)[:, None, None, None, None]

    def sg(scaled, divide=5):
        return attr.smoothgrad(attr.vanilla_gradient, model, x, targets, n_samples=5, noise=scaled) * 5 / divide
    expected = sg(sigma * noise)
    variants = {"no noise added: the plain gradient": attr.vanilla_gradient(model, x, targets),
                "a total divided by the number of images, not of samples": sg(sigma * noise, divide=2),
                "a total divided by n_samples - 1": sg(sigma * noise, divide=4),
                "the noise scaled twice (noise_level applied to sigma again)": sg(level * sigma * noise),
                "the noise not scaled by the image's range (sigma = noise_level)": sg(level * noise),
                "one sigma from the whole batch's range; each image has its own":
                    sg(level * (x.max() - x.min()) * noise)}

    def check():
        got = unchanged(lambda xx, nn: fn(model, xx, targets.copy(), level, nn), x, noise)
        if np.shape(got) == expected.shape and rel_error(got, expected) > 1e-9:
            _match_variant(got, variants, "SmoothGrad")
        expect_close(got, expected, "SmoothGrad (mean over samples of the vanilla gradient at x + sigma * noise)")
    yield "5 noisy samples, sigma from each image's range", check
    zero = np.zeros((2, 3, 3, 8, 8))
    yield "zero noise equals the gradient", lambda: expect_close(
        fn(model, x.copy(), targets.copy(), level, zero), attr.vanilla_gradient(model, x, targets),
        "SmoothGrad with zero noise")
    yield "float32 stays float32", lambda: _expect_dtype(
        fn(_small_model(1).to(np.float32), x.astype(np.float32), targets, level, noise.astype(np.float32)),
        np.float32)


def _match_variant(got, variants, what):
    """If ``got`` equals what a known mistake computes, fail naming the mistake."""
    got = np.asarray(got, dtype=np.float64)
    if not np.isfinite(got).all():
        raise Failed(f"{what}: the result has NaN or infinity (a division by zero? see the docstring's fallback)")
    for mistake, value in variants.items():
        value = np.asarray(value, dtype=np.float64)
        if value.shape == got.shape and np.isfinite(value).all() and rel_error(got, value) <= 1e-9:
            raise Failed(f"{what}: the result is what {mistake} gives")


def _cases_rescale(fn):
    rng = _rng(9)
    x = rng.standard_normal((2, 3, 4, 5))
    x_ref = rng.standard_normal(x.shape)
    x_ref[0, 0] = x[0, 0]                                       # equal inputs: the gradient fallback
    x_ref[1, 1, :2] = x[1, 1, :2] + 1e-12
    dout = rng.standard_normal(x.shape)
    relu = ReLU()
    relu.forward(x)
    expected = relu.backward(dout, rule="rescale", reference=x_ref)
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

    def check(d, xx, rr, exp, label):
        got = unchanged(fn, d, xx, rr)
        if not (np.shape(got) == exp.shape and rel_error(got, exp) <= 1e-9):
            _match_variant(got, variants, label)
        expect_close(got, exp, label)
    yield "random input with equal and near-equal pairs", lambda: check(dout, x, x_ref, expected, "rescale rule")
    yield "float32 stays float32", lambda: _expect_dtype(fn(*(v.astype(np.float32) for v in (dout, x, x_ref))),
                                                         np.float32)


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


def _cases_lrp(fn, rule):
    from .lrp import Epsilon, ZPlus
    for label, layer, a in _lrp_layers(10 if rule == "epsilon" else 11):
        if rule == "zplus":
            a = np.abs(a)                                         # ReLU outputs
        R = _rng(12).standard_normal(layer.forward(a).shape)
        eps = 0.1 if rule == "epsilon" else 1e-9
        reference = Epsilon(eps) if rule == "epsilon" else ZPlus(stabilizer=eps)
        expected = reference(layer.with_params(**({"bias": np.zeros_like(layer.params["bias"])}
                                                  if rule == "zplus" else {})), a, R)

        def check(layer=layer, a=a, R=R, eps=eps, expected=expected, label=label):
            got = unchanged(lambda aa, rr: fn(layer, aa, rr, eps), a, R)
            if not (np.shape(got) == expected.shape and rel_error(got, expected) <= 1e-9):
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
        yield label, check


def _plain_steps(layer, a, R, eps, by_output=False):
    """The four steps with z + eps, as a student might write them with the wrong layer or factor."""
    z = layer.forward(a) + eps
    c = layer.backward(R / z)
    return (z if by_output else a) * c


def _zero_relu_case(fn):
    """z exactly 0 somewhere: sign(0) must count as +1 (np.sign(0) is 0, and R / 0 is not a number)."""
    lin = Linear(2, 2, bias=False, dtype=np.float64)
    lin.params["weight"] = np.array([[1.0, -1.0], [1.0, 1.0]])
    a, R = np.array([[1.0, 1.0]]), np.array([[1.0, 1.0]])            # the first output is exactly 0
    z = np.array([[0.0, 2.0]])
    expected = a * ((R / (z + 0.1 * np.array([[1.0, 1.0]]))) @ lin.params["weight"])
    got = fn(lin, a.copy(), R.copy(), 0.1)
    if not np.isfinite(np.asarray(got, dtype=np.float64)).all():
        raise Failed("an output with z = 0 gave NaN or infinity: np.sign(0) is 0, take sign(0) as +1")
    expect_close(got, expected, "an output with z exactly 0 (sign(0) = +1)")


def _cases_lrp_epsilon(fn):
    yield from _cases_lrp(fn, "epsilon")
    yield "an output with z exactly 0", lambda: _zero_relu_case(fn)


def _cases_lrp_zplus(fn):
    yield from _cases_lrp(fn, "zplus")


def _residual_case(rng, inplanes, planes, stride):
    """A minicnn basic block with random weights and batch-norm statistics, run forward on random x:
    (block, x, dout, s, body_backward, shortcut_backward)."""
    from minicnn.blocks import BackwardContext
    from minicnn.layers import BatchNorm2d
    from minicnn.models import basic_block

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
    ctx = BackwardContext()
    return (block, x, rng.standard_normal(out.shape), body + shortcut,
            lambda g: block.chain_back(block.body, g, ctx), lambda g: block.chain_back(block.shortcut, g, ctx))


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


def _cases_residual(fn):
    def hand():
        # body: a 1x1 conv of weight 2 (its backward doubles), shortcut: the identity; relu(s) at s = 3x
        s = np.array([[[[3.0, -6.0], [1.5, 0.0]]]])
        dout = np.array([[[[1.0, 2.0], [-1.0, 4.0]]]])
        got = unchanged(lambda d, ss: fn(d, ss, lambda g: 2 * g, lambda g: g), dout, s)
        _match_variant(got, _residual_variants(dout, s, lambda g: 2 * g, lambda g: g), "the worked example")
        expect_close(got, [[[[3.0, 0.0], [-3.0, 0.0]]]], "the worked example (body 2g + shortcut g where s > 0)")
    yield "worked example: a 1x1 body of weight 2, identity shortcut", hand
    for k, (inplanes, planes, stride, label) in enumerate([(4, 4, 1, "identity shortcut"),
                                                            (3, 5, 2, "downsample shortcut, stride 2")]):
        def check(k=k, inplanes=inplanes, planes=planes, stride=stride, label=label):
            block, x, dout, s, body_bw, shortcut_bw = _residual_case(_rng(40 + k), inplanes, planes, stride)
            got = unchanged(lambda d, ss: fn(d, ss, body_bw, shortcut_bw), dout, s)
            _match_variant(got, _residual_variants(dout, s, body_bw, shortcut_bw), f"a basic block, {label}")
            expect_close(got, numeric_vjp(block.forward, x, dout), f"a basic block, {label}, numeric gradient", 1e-7)
        yield f"a basic block ({label})", check

    def float32():
        block, x, dout, s, body_bw, shortcut_bw = _residual_case(_rng(42), 4, 4, 1)
        got = fn(dout.astype(np.float32), s.astype(np.float32), lambda g: body_bw(g).astype(g.dtype),
                 lambda g: shortcut_bw(g).astype(g.dtype))
        _expect_dtype(got, np.float32)
        expect_close(got, block.backward(dout), "float32 values", 1e-5)
    yield "float32 stays float32", float32


ASSIGNMENTS = {
    "relu_maxpool": {"relu_backward_gradient": _cases_relu("gradient"),
                     "relu_backward_deconvnet": _cases_relu("deconvnet"),
                     "relu_backward_guided": _cases_relu("guided"),
                     "maxpool_backward": _cases_maxpool},
    "conv_backward": {"conv_backward": _cases_conv},
    "gradcam_smoothgrad": {"grad_cam": _cases_grad_cam, "smoothgrad": _cases_smoothgrad},
    "deeplift_lrp": {"relu_backward_rescale": _cases_rescale, "lrp_epsilon": _cases_lrp_epsilon,
                     "lrp_zplus": _cases_lrp_zplus},
    "residual": {"residual_backward": _cases_residual},
}


# Points per function (partial credit: the share of its cases passed). The ReLU rules are one line each and
# given away by the tutorial; the backward passes and the methods built from them carry the weight.
POINTS = {"relu_backward_gradient": 1, "relu_backward_deconvnet": 1, "relu_backward_guided": 1,
          "maxpool_backward": 4, "conv_backward": 6, "grad_cam": 5, "smoothgrad": 5,
          "relu_backward_rescale": 3, "lrp_epsilon": 4, "lrp_zplus": 3, "residual_backward": 3}

# What a submission may not call for the function it must write: the library's own answer.
ALWAYS_FORBIDDEN = ("attribution", "minicnn.naive", "solutions", "tests.solutions")
FORBIDDEN_NAMES = {"relu_maxpool": {"ReLU", "MaxPool2d"},
                   "conv_backward": {"Conv2d", "conv_ops", "col2im", "conv2d_input_grad", "conv2d_weight_grad"},
                   "gradcam_smoothgrad": set(), "deeplift_lrp": {"ReLU", "secant", "RESCALE_EPS"},
                   "residual": {"Residual", "chain_back", "backprop"}}


def library_uses(path, assignment):
    """{function: the library name it uses} for graded functions that call the library's own answer
    (an import of attribution, minicnn.naive or the solutions, or the layer the assignment rebuilds)."""
    import ast
    try:
        tree = ast.parse(open(path, encoding="utf-8").read())
    except (SyntaxError, ValueError, OSError):
        return {}                                     # the child reports what is wrong with the file
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
    uses = {}
    for func in tree.body:
        if isinstance(func, ast.FunctionDef) and func.name in ASSIGNMENTS[assignment]:
            for node in ast.walk(func):
                name = dotted(node) if isinstance(node, (ast.Attribute, ast.Name)) else None
                if name and forbidden(name):
                    uses.setdefault(func.name, name)
    return uses


def load_student(path):
    spec = importlib.util.spec_from_file_location("student_submission", path)
    if spec is None or spec.loader is None:
        raise ValueError(f"cannot load {path} as a Python file")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_case(label, run):
    """Run one case; (True, None) or (False, a one-line reason). Nothing the student's code raises escapes,
    not even SystemExit or KeyboardInterrupt."""
    try:
        run()
        return True, None
    except NotImplementedError:
        return False, "not implemented yet (it raises NotImplementedError)"
    except Failed as e:
        return False, f"{label}: {e}"
    except SystemExit as e:
        return False, f"{label}: the code calls sys.exit({e.code!r}); a function must return its result"
    except KeyboardInterrupt:
        return False, f"{label}: KeyboardInterrupt raised inside the code"
    except BaseException as e:          # the student's code crashed: say where
        frame = traceback.extract_tb(e.__traceback__)[-1]
        return False, f"{label}: {type(e).__name__}: {e} (line {frame.lineno} of {frame.filename})"


def _child(assignment, path, first, conn, seed=0):
    """The grading process: import the student's file, run the cases of every function from ``first`` on,
    and report each step through ``conn``. Its stdout and stderr are silenced (students' prints)."""
    import os
    global SEED
    SEED = seed
    devnull = open(os.devnull, "w")
    sys.stdout = sys.stderr = devnull
    try:
        module = load_student(path)
    except BaseException as e:
        conn.send(("import_error", f"the file cannot be imported: {type(e).__name__}: {e}"[:300]))
        return
    for name in list(ASSIGNMENTS[assignment])[first:]:
        fn = getattr(module, name, None)
        if fn is None:
            conn.send(("missing", name))
            continue
        try:
            cases = list(ASSIGNMENTS[assignment][name](fn))
        except BaseException as e:
            conn.send(("case", name, "setup", False, f"setting up the cases failed: {type(e).__name__}: {e}"))
            cases = []
        for label, run in cases:
            conn.send(("start", name, label))
            ok, reason = run_case(label, run)
            conn.send(("case", name, label, ok, reason))
    conn.send(("done",))


CASE_TIMEOUT = 10.0           # seconds one case may take before the grader calls it a hang (--timeout)


def _case_counts(assignment):
    """How many cases each function has (built with a stand-in function; no student code runs)."""
    return {name: sum(1 for _ in cases(lambda *a, **k: None)) for name, cases in ASSIGNMENTS[assignment].items()}


def grade(assignment, path, out=sys.stdout, timeout=CASE_TIMEOUT, seed=0):
    """Grade one student file; returns {function: (passed, total, first error or None)}.

    The student's functions run in a separate process (started with "spawn", as on Windows and macOS), so
    whatever they do -- sys.exit, os._exit, a crash, an endless loop, KeyboardInterrupt, an import error --
    costs that function its marks with a one-line reason, and the report always prints. A case that runs
    longer than ``timeout`` seconds is a hang: the process is stopped and the next function gets a fresh one.
    A function that calls the library's own answer (``library_uses``) gets no marks. ``seed``: 0 for the cases
    the students have; another number gives cases they never saw (hidden grading).
    """
    import multiprocessing
    from pathlib import Path
    if assignment not in ASSIGNMENTS:
        raise ValueError(f"unknown assignment {assignment!r}; choose from {', '.join(ASSIGNMENTS)}")
    if not Path(path).is_file():
        raise FileNotFoundError(f"no file at {path}")
    names = list(ASSIGNMENTS[assignment])
    totals = _case_counts(assignment)
    passed = {name: 0 for name in names}
    errors = {name: None for name in names}
    context = multiprocessing.get_context("spawn")
    first = 0
    while first < len(names):
        receive, send = context.Pipe(duplex=False)
        child = context.Process(target=_child, args=(assignment, str(path), first, send, seed), daemon=True)
        child.start()
        send.close()
        current = (names[first], "loading the file")
        try:
            while True:
                if not receive.poll(timeout):
                    child.kill()
                    reason = f"{current[1]}: no result after {timeout:g} s (an endless loop or a long sleep?)"
                    break
                try:
                    message = receive.recv()
                except EOFError:
                    child.join(5)
                    reason = (f"{current[1]}: the code ended the grading process (exit status {child.exitcode}: "
                              f"os._exit, a crash or an abort?)")
                    break
                kind = message[0]
                if kind == "import_error":
                    for name in names[first:]:
                        errors[name], passed[name] = message[1], 0
                    first, reason = len(names), None
                    break
                if kind == "done":
                    first, reason = len(names), None
                    break
                if kind == "missing":
                    errors[message[1]], totals[message[1]] = "the function is missing from the file", \
                        max(1, totals[message[1]])
                    first = names.index(message[1]) + 1
                elif kind == "start":
                    current = (message[1], message[2])
                    first = names.index(message[1])
                elif kind == "case":
                    _, name, label, ok, why = message
                    passed[name] += ok
                    errors[name] = errors[name] or why
                    first = names.index(name)
        finally:
            receive.close()
            if child.is_alive():
                child.kill()
            child.join(5)
        if reason is not None:                   # a hang or a dead process: zero for that function, go on
            errors[current[0]], passed[current[0]] = reason, 0
            first = names.index(current[0]) + 1
    for name, used in library_uses(path, assignment).items():
        passed[name] = 0
        errors[name] = f"it calls the library's own answer ({used}): write the function yourself"
    report = {name: (passed[name], totals[name], errors[name]) for name in names}
    print_report(report, out)
    return report


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


def grade_folder(assignment, folder, csv_path, timeout=CASE_TIMEOUT, seed=0, out=sys.stdout):
    """Grade every .py file in ``folder`` (one student each, each in its own process) and write one CSV row
    per student: file, per function points and reason, total points. Returns {file name: report}."""
    import csv
    import io
    from pathlib import Path

    from minicnn.files import atomic_write
    files = sorted(p for p in Path(folder).glob("*.py") if p.is_file())
    if not files:
        raise ValueError(f"no .py files in {folder}")
    names = list(ASSIGNMENTS[assignment])
    reports, rows = {}, []
    for path in files:
        report = grade(assignment, path, out=io.StringIO(), timeout=timeout, seed=seed)
        score = points(report)
        reports[path.name] = report
        row = {"student": path.stem}
        for name in names:
            row[f"{name} points"] = score[name][0]
            row[f"{name} reason"] = report[name][2] or "ok"
        row["total points"] = round(sum(e for e, _ in score.values()), 2)
        rows.append(row)
        print(f"{path.stem}: {row['total points']:g}/{sum(POINTS[n] for n in names)} points", file=out)
    with atomic_write(csv_path, "w") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print(f"wrote {csv_path}", file=out)
    return reports


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m attribution.grade", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("assignment", help=f"one of: {', '.join(ASSIGNMENTS)}")
    parser.add_argument("student_file", help="the completed assignment file, or a folder of them (one per "
                                             "student; then --csv)")
    parser.add_argument("--timeout", type=float, default=CASE_TIMEOUT,
                        help="seconds one case may run before it counts as a hang (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0,
                        help="0: the cases students have; any other number: hidden cases they never saw")
    parser.add_argument("--csv", default=None, help="with a folder: the CSV to write (one row per student)")
    args = parser.parse_args(argv)
    from pathlib import Path
    try:
        if args.assignment not in ASSIGNMENTS:
            raise ValueError(f"unknown assignment {args.assignment!r}; choose from {', '.join(ASSIGNMENTS)}")
        if Path(args.student_file).is_dir():
            if not args.csv or not args.csv.endswith(".csv"):
                raise ValueError("grading a folder writes a table: give --csv FILE.csv")
            reports = grade_folder(args.assignment, args.student_file, args.csv, args.timeout, args.seed)
            return 0 if all(p == t for r in reports.values() for p, t, _ in r.values()) else 1
        report = grade(args.assignment, args.student_file, timeout=args.timeout, seed=args.seed)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0 if all(p == t for p, t, _ in report.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
