"""Issue 7: the graders give full marks to the reference solutions, zero to the blank stubs,
and catch planted mistakes with a message that names the function."""
import io
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from attribution.grade import grade
from minicnn.assignments import FILES as ASSIGNMENT_FILES

ROOT = Path(__file__).resolve().parent.parent
STUBS = ROOT / "tutorials" / "assignments"
SOLUTIONS = Path(__file__).parent / "solutions"
FILES = ASSIGNMENT_FILES          # {assignment: its student file}, as the student release knows them


def _grade(assignment, path):
    out = io.StringIO()
    report = grade(assignment, path, out=out)
    return report, out.getvalue()


@pytest.mark.parametrize("assignment", FILES)
def test_reference_solution_gets_full_marks(assignment):
    report, text = _grade(assignment, SOLUTIONS / FILES[assignment])
    assert all(p == t and err is None for p, t, err in report.values()), text


@pytest.mark.parametrize("assignment", FILES)
def test_blank_stub_gets_zero(assignment):
    report, text = _grade(assignment, STUBS / FILES[assignment])
    assert all(p == 0 for p, _, _ in report.values()), text
    assert "not implemented yet" in text


def test_stubs_keep_docstrings_and_hold_no_solution():
    import ast

    from attribution.grade import ASSIGNMENTS
    for assignment, name in FILES.items():
        text = (STUBS / name).read_text()
        assert "(N, C, H, W)" in text
        functions = {node.name: node for node in ast.parse(text).body if isinstance(node, ast.FunctionDef)}
        assert set(ASSIGNMENTS[assignment]) <= set(functions), name
        for f in (functions[graded] for graded in ASSIGNMENTS[assignment]):
            # a docstring and `raise NotImplementedError`, nothing else: no solution in the student's file
            assert ast.get_docstring(f), (name, f.name)
            assert len(f.body) == 2 and isinstance(f.body[1], ast.Raise), (name, f.name)
            assert ast.unparse(f.body[1].exc) == "NotImplementedError", (name, f.name)


PLANTED = [
    # (assignment, replace this, with this, function that must fail, words expected in its message)
    ("relu_maxpool", "return dout * (x > 0) * (dout > 0)", "return dout * (x > 0)", "relu_backward_guided",
     "is the Vanilla Gradient rule dout * (x > 0), not the Guided Backprop rule"),
    ("relu_maxpool", "return dout * (dout > 0)\n", "return dout * (x > 0)\n", "relu_backward_deconvnet",
     "indicator on the wrong tensor"),
    ("relu_maxpool", "return dout * (x > 0)\n", "return dout * (x >= 0)\n", "relu_backward_gradient",
     ">= where the rule needs the strict >"),
    ("relu_maxpool", "return dout * (x > 0) * (dout > 0)", "return dout * (x >= 0) * (dout > 0)",
     "relu_backward_guided", "the result is the dout * (x >= 0) * (dout > 0): >= where the rule needs the strict >"),
    ("relu_maxpool", "return dout * (x > 0) * (dout > 0)", "return dout * (dout > 0)", "relu_backward_guided",
     "the result is the DeconvNet rule dout * (dout > 0), not the Guided Backprop rule"),     # no forward mask
    ("relu_maxpool", "return dout * (x > 0)\n", "return dout * (dout > 0)\n", "relu_backward_gradient",
     "the result is the DeconvNet rule dout * (dout > 0), not the Vanilla Gradient rule"),
    ("relu_maxpool", "dx[n_idx, c_idx, i * stride + r, j * stride + c] += dout[:, :, i, j]",
     "dx[n_idx, c_idx, i * stride + r, j * stride + c] = dout[:, :, i, j]", "maxpool_backward",
     "= where overlapping windows need +="),
    ("relu_maxpool", "def relu_backward_gradient(dout, x):\n    return dout * (x > 0)",
     "def relu_backward_gradient(dout, x):\n    dout *= (x > 0)\n    return dout", "relu_backward_gradient",
     "in place"),
    ("conv_backward", "dw += np.tensordot(dout[:, :, i, j], xp[:, :, rows, cols], axes=([0], [0]))",
     "dw += np.tensordot(dout[0, :, i, j], xp[0, :, rows, cols], axes=0)", "conv_backward",
     "summed over every image"),
    ("conv_backward", "db = dout.sum(axis=(0, 2, 3))", "db = dout[0].sum(axis=(1, 2))", "conv_backward", "db"),
    ("gradcam_smoothgrad", "alpha = dA.mean(axis=(2, 3))", "alpha = dA.sum(axis=(2, 3))", "grad_cam",
     "the sum of the gradient over (h, w) instead of its mean"),
    ("gradcam_smoothgrad", "return np.maximum((alpha[:, :, None, None] * A).sum(axis=1), 0)",
     "return (alpha[:, :, None, None] * A).sum(axis=1)", "grad_cam", "no ReLU at the end"),
    ("gradcam_smoothgrad", "alpha = dA.mean(axis=(2, 3))", "alpha = np.broadcast_to(dA.mean(axis=(0, 2, 3)), "
     "dA.shape[:2])", "grad_cam", "weights averaged over the images too"),
    ("gradcam_smoothgrad", "return np.maximum((alpha[:, :, None, None] * A).sum(axis=1), 0)",
     "m = np.maximum((alpha[:, :, None, None] * A).sum(axis=1), 0)\n    lo = m.min(axis=(1, 2), keepdims=True)\n"
     "    hi = m.max(axis=(1, 2), keepdims=True)\n    return (m - lo) / np.where(hi > lo, hi - lo, 1)",
     "grad_cam", "the map scaled to [0, 1]"),
    ("gradcam_smoothgrad", "dout[np.arange(len(x)), targets] = 1", "dout[targets, np.arange(len(x))] = 1",
     "grad_cam", "the one-hot set on the wrong axis"),
    ("gradcam_smoothgrad", "return np.maximum((alpha[:, :, None, None] * A).sum(axis=1), 0)",
     "m = np.maximum((alpha[:, :, None, None] * A).sum(axis=1), 0)\n"
     "    return np.repeat(np.repeat(m, x.shape[2] // m.shape[1], 1), x.shape[3] // m.shape[2], 2)",
     "grad_cam", "without upsampling"),
    ("gradcam_smoothgrad", "logits = model.forward(x + sigma[:, None, None, None] * noise[:, s])",
     "logits = model.forward(x)", "smoothgrad", "no noise added"),
    ("gradcam_smoothgrad", "return total / noise.shape[1]", "return total / len(x)", "smoothgrad",
     "divided by the number of images"),
    ("gradcam_smoothgrad", "sigma = noise_level * (flat.max(axis=1) - flat.min(axis=1))",
     "sigma = noise_level * noise_level * (flat.max(axis=1) - flat.min(axis=1))", "smoothgrad", "scaled twice"),
    ("gradcam_smoothgrad", "sigma = noise_level * (flat.max(axis=1) - flat.min(axis=1))",
     "sigma = np.full(len(x), noise_level)", "smoothgrad", "not scaled by the image's range"),
    ("gradcam_smoothgrad", "sigma = noise_level * (flat.max(axis=1) - flat.min(axis=1))",
     "sigma = np.full(len(x), noise_level * (x.max() - x.min()))", "smoothgrad", "the whole batch's range"),
    ("deeplift_lrp", "return dout * np.where(small, x > 0, secant)", "return dout * (x > 0)",
     "relu_backward_rescale", "the Vanilla Gradient rule dout * (x > 0), not the secant"),
    ("deeplift_lrp", "(np.maximum(x, 0) - np.maximum(x_ref, 0))", "(np.maximum(x_ref, 0) - np.maximum(x, 0))",
     "relu_backward_rescale", "wrong sign"),
    ("deeplift_lrp", "np.where(small, x > 0, secant)", "np.where(small, 0, secant)", "relu_backward_rescale",
     "a fallback of 0"),
    ("deeplift_lrp", "z = z + eps * np.where(z >= 0, 1, -1)", "z = z", "lrp_epsilon", "no stabilizer"),
    ("deeplift_lrp", "z = z + eps * np.where(z >= 0, 1, -1)", "z = z + eps", "lrp_epsilon", "without the sign"),
    ("deeplift_lrp", "z = z + eps * np.where(z >= 0, 1, -1)", "z = z - eps * np.where(z >= 0, 1, -1)",
     "lrp_epsilon", "push z away from 0"),
    ("deeplift_lrp", "    c = layer.backward(s)\n    return a * c", "    c = layer.backward(s)\n    return z * c",
     "lrp_epsilon", "step 4 multiplies by its input a"),
    ("deeplift_lrp", "z = z + eps * np.where(z >= 0, 1, -1)", "z = z + eps * np.sign(z)", "lrp_epsilon",
     "np.sign(0) is 0"),
    ("deeplift_lrp", 'params = {"weight": np.maximum(layer.params["weight"], 0)}', 'params = {"weight": layer.params["weight"]}',
     "lrp_zplus", "not their positive part"),
    ("deeplift_lrp", 'params["bias"] = np.zeros_like(layer.params["bias"])', 'params["bias"] = layer.params["bias"]',
     "lrp_zplus", "keeping the bias"),
    ("deeplift_lrp", "    c = plus.backward(s)\n    return a * c", "    c = plus.backward(s)\n    return z * c",
     "lrp_zplus", "step 4 multiplies by its input a"),
    ("gradcam_smoothgrad", "return total / noise.shape[1]", "return total", "smoothgrad", "mean over samples"),
    ("residual", "return body_backward(g) + shortcut_backward(g)", "return body_backward(g)", "residual_backward",
     "the shortcut's gradient is missing"),
    ("residual", "return body_backward(g) + shortcut_backward(g)", "return (body_backward(g) + shortcut_backward(g)) / 2",
     "residual_backward", "averaging the two branches"),
    ("residual", "g = dout * (s > 0)", "g = dout", "residual_backward", "no ReLU after the sum"),
    ("residual", "g = dout * (s > 0)", "g = dout * (s >= 0)", "residual_backward", "the strict >"),
    ("cam_weightings", "np.maximum((np.maximum(G, 0) * A).sum(axis=1), 0)", "(np.maximum(G, 0) * A).sum(axis=1)",
     "layer_cam", "no ReLU on the map"),
    ("cam_weightings", "np.maximum((np.maximum(G, 0) * A).sum(axis=1), 0)", "np.maximum((G * A).sum(axis=1), 0)",
     "layer_cam", "that is HiResCAM"),
    ("cam_weightings", "np.maximum((np.maximum(G, 0) * A).sum(axis=1), 0)", "np.maximum(np.maximum(G * A, 0).sum(axis=1), 0)",
     "layer_cam", "the ReLU on the product"),
    ("cam_weightings", "np.maximum((np.maximum(G, 0) * A).sum(axis=1), 0)", "np.maximum(G, 0) * A",
     "layer_cam", "sums them over the channels"),
    ("cam_weightings", "return np.maximum((w * A).sum(axis=1), 0)", "return (w * A).sum(axis=1)",
     "grad_cam_plus_plus", "no ReLU on the map"),
    ("cam_weightings", "S = A.sum(axis=(2, 3), keepdims=True)", "S = A.sum(axis=1, keepdims=True)",
     "grad_cam_plus_plus", "sum(A) over the channels"),
    ("cam_weightings", "w = (np.maximum(G, 0) * a).sum(axis=(2, 3), keepdims=True)",
     "w = (np.maximum(G, 0) * a).sum(axis=1, keepdims=True)", "grad_cam_plus_plus", "summed over the channels"),
    ("cam_weightings", "w = (np.maximum(G, 0) * a).sum(axis=(2, 3), keepdims=True)",
     "w = (G * a).sum(axis=(2, 3), keepdims=True)", "grad_cam_plus_plus", "G instead of relu(G)"),
    ("cam_weightings", "w = (np.maximum(G, 0) * a).sum(axis=(2, 3), keepdims=True)",
     "w = (np.maximum(G, 0) * a).mean(axis=(2, 3), keepdims=True)", "grad_cam_plus_plus", "Grad-CAM++ sums it"),
    ("cam_weightings", "S * G ** 3 + 1e-6)", "S * G ** 3)", "grad_cam_plus_plus", "that is what the 1e-6"),
    ("cam_weightings", "return np.maximum((w * A).sum(axis=1), 0)", "return w[:, :, 0, 0]",
     "grad_cam_plus_plus", "one number per channel"),
    ("pixel_flipping", "np.argsort(-np.broadcast_to(a, x.shape).reshape(N, -1), axis=1)",
     "np.argsort(np.broadcast_to(a, x.shape).reshape(N, -1), axis=1)", "pixel_flipping", "least relevant pixels"),
    ("pixel_flipping", "np.argsort(-np.broadcast_to(a, x.shape).reshape(N, -1), axis=1)",
     "np.argsort(np.broadcast_to(a, x.shape).reshape(N, -1), axis=1)[:, ::-1]", "pixel_flipping", "ties in reverse"),
    ("pixel_flipping", "(e / e.sum(axis=1, keepdims=True))[np.arange(N), y]", "logits[np.arange(N), y]",
     "pixel_flipping", "softmax probability"),
    ("pixel_flipping", "black = current.min(axis=1, keepdims=True)", "black = np.zeros((N, 1))", "pixel_flipping",
     "own minimum"),
    ("pixel_flipping", "        idx = order[:, t:t + features_in_step]\n",
     "        current = x.reshape(N, -1).copy()\n        idx = order[:, t:t + features_in_step]\n", "pixel_flipping",
     "the flips accumulate"),
    ("pixel_flipping", "np.argsort(-np.broadcast_to(a, x.shape).reshape(N, -1), axis=1)",
     "np.argsort(-np.abs(np.broadcast_to(a, x.shape).reshape(N, -1)), axis=1)", "pixel_flipping", "ranked by |a|"),
]


@pytest.mark.parametrize("assignment,old,new,function,words", PLANTED)
def test_planted_mistakes_are_caught(tmp_path, assignment, old, new, function, words):
    source = (SOLUTIONS / FILES[assignment]).read_text()
    assert old in source
    path = tmp_path / FILES[assignment]
    path.write_text(source.replace(old, new, 1))
    report, text = _grade(assignment, path)
    passed, total, error = report[function]
    assert passed < total, text
    line = next(line for line in text.splitlines() if line.startswith(function))
    assert "FAILED" in line and words in line, text
    others = [p == t for name, (p, t, _) in report.items() if name != function]
    assert all(others), text


def test_grade_command_line(tmp_path):
    result = subprocess.run([sys.executable, "-m", "attribution.grade", "relu_maxpool",
                             str(SOLUTIONS / "a_relu_maxpool.py")], capture_output=True, text=True)
    assert result.returncode == 0 and re.search(r"total\s+(\d+)/\1", result.stdout), result.stdout
    result = subprocess.run([sys.executable, "-m", "attribution.grade", "relu_maxpool",
                             str(STUBS / "a_relu_maxpool.py")], capture_output=True, text=True)
    assert result.returncode == 1 and "relu_backward_guided" in result.stdout
    result = subprocess.run([sys.executable, "-m", "attribution.grade", "bogus", str(STUBS / "a_relu_maxpool.py")],
                            capture_output=True, text=True)
    assert result.returncode == 2 and "unknown assignment 'bogus'" in result.stderr


def test_calling_the_library_answer_is_flagged(tmp_path):
    source = (SOLUTIONS / "a_relu_maxpool.py").read_text()
    old = "def relu_backward_guided(dout, x):\n    return dout * (x > 0) * (dout > 0)"
    assert old in source
    path = tmp_path / "a.py"
    path.write_text("from minicnn.layers import ReLU\n" + source.replace(old, (
        "def relu_backward_guided(dout, x):\n    r = ReLU()\n    r.forward(x)\n"
        "    return r.backward(dout, rule='guided')")))
    report, text = _grade("relu_maxpool", path)
    assert report["relu_backward_guided"][0] == 0, text
    assert "calls the library's own answer (minicnn.layers.ReLU)" in text
    assert report["maxpool_backward"][0] == report["maxpool_backward"][1]            # the others still count
    path.write_text(source + "\n\nimport minicnn.layers as L\n\n\ndef maxpool_backward(dout, x, kernel_size, stride):"
                             "\n    return L.maxpool_backward(dout, x, kernel_size, stride)\n")
    report, text = _grade("relu_maxpool", path)                # the library's function the release routes
    assert report["maxpool_backward"][0] == 0 and "minicnn.layers.maxpool_backward" in text, text
    source = (SOLUTIONS / "c_gradcam_smoothgrad.py").read_text()
    path = tmp_path / "c.py"
    path.write_text(source + "\n\nimport attribution as attr\n\n\ndef grad_cam(model, x, targets, layer):\n"
                             "    return attr.grad_cam(model, x, targets, layer)\n")
    report, text = _grade("gradcam_smoothgrad", path)
    assert report["grad_cam"][0] == 0 and "attribution.grad_cam" in text, text
    assert report["smoothgrad"][0] == report["smoothgrad"][1], text


@pytest.mark.parametrize("assignment", FILES)
def test_hidden_cases_differ_and_the_solutions_pass_them(assignment):
    import attribution.grade as g
    public = g._rng(5).standard_normal(3)
    g.SEED = 12345
    try:
        hidden = g._rng(5).standard_normal(3)
    finally:
        g.SEED = 0
    assert not np.allclose(public, hidden)
    out = io.StringIO()
    report = grade(assignment, SOLUTIONS / FILES[assignment], out=out, seed=12345)
    assert all(p == t and e is None for p, t, e in report.values()), out.getvalue()


def test_points_reward_the_harder_functions():
    from attribution.grade import ASSIGNMENTS, POINTS
    assert set(POINTS) == {name for functions in ASSIGNMENTS.values() for name in functions}
    relu = sum(POINTS[f"relu_backward_{r}"] for r in ("gradient", "deconvnet", "guided"))
    assert relu < POINTS["maxpool_backward"] and POINTS["grad_cam"] >= 5


def test_batch_grading_writes_one_row_per_student(tmp_path):
    import csv
    folder = tmp_path / "submissions"
    folder.mkdir()
    (folder / "alice.py").write_text((SOLUTIONS / "a_relu_maxpool.py").read_text())
    (folder / "bob.py").write_text((STUBS / "a_relu_maxpool.py").read_text())
    (folder / "carol.py").write_text("import sys\nsys.exit(0)\n")
    import nbformat                                     # a notebook is graded from its code cells
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# A"), nbformat.v4.new_code_cell("%matplotlib inline"),
                nbformat.v4.new_code_cell((SOLUTIONS / "a_relu_maxpool.py").read_text())]
    nbformat.write(nb, str(folder / "dana.ipynb"))
    (folder / "erin.docx").write_bytes(b"PK not a program")
    out = tmp_path / "grades.csv"
    result = subprocess.run([sys.executable, "-m", "attribution.grade", "relu_maxpool", str(folder), "--csv",
                             str(out), "--timeout", "5"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 1, result.stdout + result.stderr
    rows = {r["student"]: r for r in csv.DictReader(out.open())}
    assert set(rows) == {"alice", "bob", "carol", "dana", "erin"}              # a row for every file
    assert float(rows["alice"]["total points"]) == 7 and float(rows["bob"]["total points"]) == 0
    assert float(rows["dana"]["total points"]) == 7 and rows["dana"]["file"] == "dana.ipynb"
    assert float(rows["erin"]["total points"]) == 0 and "cannot be graded; submit the .py" in \
        rows["erin"]["maxpool_backward reason"]
    assert all(r["assignment"] == "relu_maxpool" and r["seed"] == "0" and r["max points"] == "7"
               for r in rows.values())
    assert "not implemented yet" in rows["bob"]["maxpool_backward reason"]
    assert "cannot be imported: SystemExit" in rows["carol"]["relu_backward_guided reason"]
    result = subprocess.run([sys.executable, "-m", "attribution.grade", "relu_maxpool", str(folder)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "give --csv" in result.stderr


def test_cam_weightings_grade_against_the_library():
    """The grader's LayerCAM and Grad-CAM++ are the library's (which equal pytorch-grad-cam's), ReLU'd."""
    from attribution.cam_family import grad_cam_plus_plus_map, layer_cam_map
    from attribution.grade import _cam_inputs, _grad_cam_pp_reference
    sys.path.insert(0, str(SOLUTIONS))
    try:
        import f_cam_weightings as solution
    finally:
        sys.path.remove(str(SOLUTIONS))
    for signed in (False, True):
        A, G = _cam_inputs(3, signed)
        np.testing.assert_allclose(_grad_cam_pp_reference(A, G), np.maximum(grad_cam_plus_plus_map(A, G), 0),
                                   rtol=1e-12, atol=0)
        np.testing.assert_allclose(solution.layer_cam(A, G), np.maximum(layer_cam_map(A, G), 0), rtol=1e-12, atol=0)


def test_the_pixel_flipping_grader_is_the_metric():
    """Assignment G's expected curve is attribution.metrics.pixel_flipping (itself equal to Quantus)."""
    from attribution.grade import _flip_curve, _small_model
    from attribution.metrics import pixel_flipping
    model = _small_model(2)
    rng = np.random.default_rng(1)
    x, a = rng.uniform(0, 1, (2, 3, 8, 8)), rng.standard_normal((2, 1, 8, 8))
    np.testing.assert_allclose(_flip_curve(model, x, np.array([0, 3]), a, 16),
                               pixel_flipping(model, x, np.array([0, 3]), a, features_in_step=16), rtol=1e-12)


def test_a_max_pool_that_feeds_every_tied_maximum_loses_the_tie_case(tmp_path):
    """The tie case runs on tied windows: a max-pool backward that sends the gradient to every tied maximum
    (instead of the first, as the forward's argmax chose) fails it, and only it."""
    source = (SOLUTIONS / FILES["relu_maxpool"]).read_text().split("def maxpool_backward")[0] + """
def maxpool_backward(dout, x, kernel_size, stride):
    k, s = kernel_size, stride
    dx = np.zeros_like(x)
    for i in range(dout.shape[2]):
        for j in range(dout.shape[3]):
            window = x[:, :, i * s:i * s + k, j * s:j * s + k]
            top = window == window.max(axis=(2, 3), keepdims=True)
            dx[:, :, i * s:i * s + k, j * s:j * s + k] += top * dout[:, :, i:i + 1, j:j + 1]
    return dx
"""
    path = tmp_path / "a_relu_maxpool.py"
    path.write_text(source)
    report, text = _grade("relu_maxpool", path)
    passed, total, error = report["maxpool_backward"]
    assert passed == total - 1 and "ties" in error, text
