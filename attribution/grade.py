"""Autograder for the assignments in tutorials/assignments/.

    python -m attribution.grade relu_maxpool       tutorials/assignments/a_relu_maxpool.py
    python -m attribution.grade conv_backward      tutorials/assignments/b_conv_backward.py
    python -m attribution.grade gradcam_smoothgrad tutorials/assignments/c_gradcam_smoothgrad.py

Each function of the student file is run on fixed cases and compared with
numeric gradients and with minicnn's own layers and attribution methods (the
reference implementation). The grader prints one line per function with its
score and the first error found. Exit status: 0 for full marks, 1 otherwise,
2 if the file cannot be graded at all.
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


def _relu_variants(dout, x):
    """What common attempts compute: the three rules, and each with >= where the rule needs >."""
    return {RULE_NAMES["gradient"]: dout * (x > 0), RULE_NAMES["deconvnet"]: dout * (dout > 0),
            RULE_NAMES["guided"]: dout * (x > 0) * (dout > 0),
            "dout * (x >= 0): >= where the rule needs the strict >": dout * (x >= 0),
            "dout * (x >= 0) * (dout > 0): >= where the rule needs the strict >": dout * (x >= 0) * (dout > 0)}


def _cases_relu(rule):
    def check(fn, dout, x, what):
        relu = ReLU()
        relu.forward(x)
        expected = relu.backward(dout, rule=rule)
        got = np.asarray(unchanged(fn, dout, x))
        if got.shape == expected.shape and not np.array_equal(got, expected):
            matches = [name for name, value in _relu_variants(dout, x).items() if np.array_equal(got, value)]
            if matches:
                raise Failed(f"{what}: the result is the {' or the '.join(matches)}, not the {RULE_NAMES[rule]}"
                             f" (an indicator on the wrong tensor?)")
        expect_close(got, expected, what, 0)

    def cases(fn):
        yield "the textbook's 2x2 example", lambda: check(fn, TEXTBOOK_G, TEXTBOOK_X, "textbook example")
        rng = np.random.default_rng(1)
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
    rng = np.random.default_rng(2)
    for k, s, label in [(2, 2, "2x2 stride 2"), (3, 2, "3x3 stride 2 (overlapping windows)")]:
        x = rng.permutation(np.arange(2 * 3 * 7 * 9, dtype=np.float64)).reshape(2, 3, 7, 9) / 10   # no ties
        out = MaxPool2d(k, s).forward(x)
        dout = rng.standard_normal(out.shape)
        yield label, lambda x=x, dout=dout, k=k, s=s, label=label: expect_close(
            unchanged(lambda d, xx: fn(d, xx, k, s), dout, x), _maxpool_reference(dout, x, k, s), label)
    x = np.zeros((1, 2, 4, 4))
    x[0, 1, 1:3, 1:3] = 1.0                                 # windows of equal values
    dout = np.arange(1.0, 9.0).reshape(1, 2, 2, 2)
    yield "ties go to the first maximum", lambda: expect_close(
        fn(dout.copy(), x.copy(), 2, 2), _maxpool_reference(dout, x, 2, 2),
        "windows with tied values (the gradient goes to the first maximum in row-major order)")
    x = np.random.default_rng(3).permutation(np.arange(50.0)).reshape(1, 2, 5, 5)
    dout = np.random.default_rng(4).standard_normal((1, 2, 2, 2))

    def numeric():
        num = numeric_vjp(lambda xx: MaxPool2d(3, 2).forward(xx), x, dout)
        expect_close(fn(dout.copy(), x.copy(), 3, 2), num, "numeric gradient check", 1e-7)
    yield "numeric gradient check", numeric


def _cases_conv(fn):
    rng = np.random.default_rng(5)
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


def _small_model(seed=0):
    r = np.random.default_rng(seed)
    return Sequential({
        "features": Sequential(Conv2d(3, 4, 3, padding=1, rng=r), ReLU(), MaxPool2d(2),
                               Conv2d(4, 6, 3, padding=1, rng=r), ReLU()),
        "flatten": Flatten(), "fc": Linear(6 * 4 * 4, 5, rng=r)}).to(np.float64)


def _cases_grad_cam(fn):
    model = _small_model()
    x = np.random.default_rng(6).standard_normal((3, 3, 8, 8))
    targets = np.array([0, 3, 4])
    for layer in ("features.4", "features.1"):
        yield f"layer {layer}", lambda layer=layer: expect_close(
            unchanged(lambda xx: fn(model, xx, targets.copy(), layer), x), attr.grad_cam(model, x, targets, layer),
            f"Grad-CAM at {layer} (mean of the gradient over (h, w), weighted sum, ReLU)")


def _cases_smoothgrad(fn):
    model = _small_model(1)
    x = np.random.default_rng(7).standard_normal((2, 3, 8, 8))
    targets = np.array([1, 2])
    noise = np.random.default_rng(8).standard_normal((2, 5, 3, 8, 8)) * 0.3     # (N, n_samples, C, H, W)
    expected = attr.smoothgrad(attr.vanilla_gradient, model, x, targets, n_samples=5, noise=noise)
    yield "5 noisy samples", lambda: expect_close(unchanged(lambda xx, nn: fn(model, xx, targets.copy(), nn), x, noise),
                                                  expected, "SmoothGrad (mean over samples of the vanilla gradient)")
    zero = np.zeros((2, 3, 3, 8, 8))
    yield "zero noise equals the gradient", lambda: expect_close(
        fn(model, x.copy(), targets.copy(), zero), attr.vanilla_gradient(model, x, targets), "SmoothGrad with zero noise")


ASSIGNMENTS = {
    "relu_maxpool": {"relu_backward_gradient": _cases_relu("gradient"),
                     "relu_backward_deconvnet": _cases_relu("deconvnet"),
                     "relu_backward_guided": _cases_relu("guided"),
                     "maxpool_backward": _cases_maxpool},
    "conv_backward": {"conv_backward": _cases_conv},
    "gradcam_smoothgrad": {"grad_cam": _cases_grad_cam, "smoothgrad": _cases_smoothgrad},
}


def load_student(path):
    spec = importlib.util.spec_from_file_location("student_submission", path)
    if spec is None or spec.loader is None:
        raise ValueError(f"cannot load {path} as a Python file")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def grade(assignment, path, out=sys.stdout):
    """Grade one student file; returns {function: (passed, total, first error or None)}."""
    if assignment not in ASSIGNMENTS:
        raise ValueError(f"unknown assignment {assignment!r}; choose from {', '.join(ASSIGNMENTS)}")
    module = load_student(path)
    report = {}
    for name, cases in ASSIGNMENTS[assignment].items():
        fn = getattr(module, name, None)
        if fn is None:
            report[name] = (0, 1, "the function is missing from the file")
            continue
        passed, total, error = 0, 0, None
        for label, run in cases(fn):
            total += 1
            try:
                run()
                passed += 1
            except NotImplementedError:
                error = error or "not implemented yet (it raises NotImplementedError)"
            except Failed as e:
                error = error or f"{label}: {e}"
            except Exception as e:      # the student's code crashed: say where
                frame = traceback.extract_tb(e.__traceback__)[-1]
                error = error or f"{label}: {type(e).__name__}: {e} (line {frame.lineno} of {frame.filename})"
        report[name] = (passed, total, error)
    width = max(len(n) for n in report)
    for name, (passed, total, error) in report.items():
        print(f"{name:<{width}}  {passed}/{total}  " + ("ok" if error is None else f"FAILED: {error}"), file=out)
    got, total = sum(p for p, _, _ in report.values()), sum(t for _, t, _ in report.values())
    print(f"{'total':<{width}}  {got}/{total}", file=out)
    return report


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m attribution.grade", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("assignment", help=f"one of: {', '.join(ASSIGNMENTS)}")
    parser.add_argument("student_file", help="the completed assignment file")
    args = parser.parse_args(argv)
    try:
        report = grade(args.assignment, args.student_file)
    except (ValueError, FileNotFoundError, SyntaxError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0 if all(p == t for p, t, _ in report.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
