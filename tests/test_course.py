"""Issue 24: the student release. No graded body survives in it; the library calls the student's own
functions where the bodies were, says which assignment unlocks a call, and works once the assignment is done."""
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from attribution.course import check_release, release, strip_solutions

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def student(tmp_path_factory):
    out = tmp_path_factory.mktemp("release") / "student"
    replaced = release(out, ROOT)
    return out, replaced


def _run(code, release_root, cwd, *args):
    """``python -c code *args`` with ``release_root`` as the package (quick mode, figures to cwd)."""
    env = dict(os.environ, PYTHONPATH=str(release_root), MPLBACKEND="Agg", MINICNN_QUICK="1",
               TUTORIAL_FIGURES=str(cwd))
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, cwd=cwd,
                          timeout=300)


def _own_copy(student, tmp_path):
    """A copy of the release that a test may write into (a student's checkout)."""
    release_root = tmp_path / "student"
    shutil.copytree(student[0], release_root)
    return release_root


def _place_solutions(release_root):
    """Every assignment done: the reference solutions in the release's assignment files."""
    for name in (ROOT / "tests" / "solutions").glob("[a-g]_*.py"):
        shutil.copy(name, release_root / "tutorials" / "assignments" / name.name)


def test_the_release_holds_no_answer(student):
    out, replaced = student
    assert len(replaced) >= 11 and {rel for rel, _ in replaced} >= {
        "minicnn/layers.py", "minicnn/naive.py", "minicnn/blocks.py", "attribution/cam_family.py", "attribution/lrp.py"}
    for gone in ("tests/solutions", "attribution/grade.py", "tests/test_grading.py", ".git"):
        assert not (out / gone).exists(), gone
    assert not list(out.rglob("*.pyc")) and not list(out.rglob("__pycache__"))
    layers = (out / "minicnn" / "layers.py").read_text()
    assert "return dout * (x > 0)\n" not in layers and 'student_solution("relu_maxpool"' in layers
    answers = ["return dout * (x > 0)", "return dout * (dout > 0)", "return dout * ((x > 0) & (dout > 0))",
               "dxp[n, :, rows, cols] += dout[n, f, i, j] * w[f]", "dw[f] += dout[n, f, i, j] * xp[n, :, rows, cols]",
               "return (np.maximum(G, 0) * A).sum(axis=1)", "a = np.where(G != 0, a, 0)",
               "secant(np.maximum(x, 0) - np.maximum(x_ref, 0), x - x_ref))",
               "np.greater(switch, taken, out=switch)", 'np.einsum("nk,nkhw->nhw", G.mean(axis=(2, 3)), A)',
               "s = R / stabilize(z, eps)", "return body_backward(g) + shortcut_backward(g)"]
    for block in (b for _, b in replaced):                       # the list covers every removed block
        assert any(answer in block for answer in answers), block
    executed = (out / "tutorials" / "notebooks" / "executed" / "11_cam_family.ipynb").read_text()
    assert "not in the student release: it showed code you are to write" in executed    # printed sources go
    for path in (p for p in out.rglob("*") if p.is_file() and p.suffix in (".py", ".ipynb", ".md", ".txt")):
        text = path.read_text(encoding="utf-8")                 # anywhere: sources, notebooks, documents
        assert not [a for a in answers if a in text], path


def test_a_call_names_the_assignment_that_unlocks_it_and_works_once_it_is_done(student, tmp_path):
    release_root = _own_copy(student, tmp_path)
    code = ("import numpy as np, attribution as attr\nfrom minicnn.models import shapes_net\n"
            "from minicnn.data import make_shapes\nx, _, _ = make_shapes(2, seed=0)\n"
            "np.save('g.npy', attr.vanilla_gradient(shapes_net(pretrained=True), x, [0, 1]))\n")
    result = _run(code, release_root, tmp_path)
    assert result.returncode != 0 and "relu_backward_gradient (assignment relu_maxpool)" in result.stderr
    assert "a_relu_maxpool.py" in result.stderr
    shutil.copy(ROOT / "tests" / "solutions" / "a_relu_maxpool.py",
                release_root / "tutorials" / "assignments" / "a_relu_maxpool.py")      # the student's work
    result = _run(code, release_root, tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    import attribution as attr
    from minicnn.data import make_shapes
    from minicnn.models import shapes_net
    x, _, _ = make_shapes(2, seed=0)
    np.testing.assert_array_equal(np.load(tmp_path / "g.npy"), attr.vanilla_gradient(shapes_net(pretrained=True),
                                                                                      x, [0, 1]))
    tutorial = (release_root / "tutorials" / "03_gradient_methods.py").read_text()     # a tutorial runs again
    result = _run(tutorial, release_root, tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]


# Methods that run through every routed body: the ReLU rules and max-pool (A; the ResNet's max-pool pads and
# overlaps), the convolution is the fast route (B's naive one is tested above), Grad-CAM's weighting (C),
# DeepLIFT's rescale and LRP's epsilon steps, one term and stacked (D), the residual block's backward (E), the
# two CAM weightings (F).
ROUTED = ("vanilla_gradient", "deconvnet", "guided_backprop", "grad_cam", "guided_grad_cam", "grad_cam_plus_plus",
          "layer_cam", "deeplift", "lrp", "deep_taylor")
ROUTED_SCRIPT = """
import sys, numpy as np, attribution as attr
from minicnn.data import make_shapes
from minicnn.models import shapes_net, shapes_resnet
x, y, _ = make_shapes(2, seed=3)
x = x.astype(np.float64)
out = {}
for name, make in (("vgg", shapes_net), ("resnet", shapes_resnet)):
    model = make(pretrained=True).to(np.float64)
    for method in sys.argv[1].split(","):
        out[name + "/" + method] = attr.registry.get_method(method)(model, x, y)
np.savez(sys.argv[2], **out)
"""


def test_with_every_assignment_done_the_release_computes_what_the_library_does(student, tmp_path):
    """Each routed body, replaced by the student's function (here the reference solutions), gives the library's
    numbers: in float64 to rounding, on the shipped VGG-style net and the shipped ResNet."""
    release_root = _own_copy(student, tmp_path)
    _place_solutions(release_root)
    for root, target in ((release_root, "student.npz"), (ROOT, "instructor.npz")):
        result = _run(ROUTED_SCRIPT, root, tmp_path, ",".join(ROUTED), str(tmp_path / target))
        assert result.returncode == 0, result.stderr[-2000:]
    student_maps, instructor_maps = np.load(tmp_path / "student.npz"), np.load(tmp_path / "instructor.npz")
    assert sorted(student_maps.files) == sorted(instructor_maps.files) and len(student_maps.files) == 2 * len(ROUTED)
    for key in instructor_maps.files:
        theirs = instructor_maps[key]
        assert np.abs(theirs).max() > 0, key
        np.testing.assert_allclose(student_maps[key], theirs, rtol=0, atol=1e-12 * np.abs(theirs).max(),
                                   err_msg=key)


def test_every_tutorial_of_the_release_runs_or_names_the_assignment_it_needs(student, tmp_path):
    """Without the assignments, a tutorial either runs or stops with the assignment and the file to write; with
    every assignment done (the reference solutions in place), all twelve run (quick mode)."""
    release_root = _own_copy(student, tmp_path)
    tutorials = sorted((release_root / "tutorials").glob("[0-9][0-9]_*.py"))
    assert len(tutorials) == 12
    blocked = []
    for path in tutorials:
        result = _run(path.read_text(), release_root, tmp_path)
        if result.returncode != 0:
            assert re.search(r"NotImplementedError: this needs .*assignment \w+.*tutorials/assignments/\w+\.py",
                             result.stderr), (path.name, result.stderr[-1500:])
            blocked.append(path.name)
    assert "03_gradient_methods.py" in blocked                   # the ReLU rules are the student's to write
    _place_solutions(release_root)
    for path in tutorials:
        result = _run(path.read_text(), release_root, tmp_path)
        assert result.returncode == 0, (path.name, result.stderr[-2000:])


def test_markers_must_pair_and_leaks_are_caught(tmp_path):
    text = "def f(x):\n    # BEGIN SOLUTION relu_maxpool.relu_backward_gradient(x, x)\n    return x * 2\n"
    with pytest.raises(ValueError, match="without its END"):
        strip_solutions(text, "f.py")
    with pytest.raises(ValueError, match="without its BEGIN"):
        strip_solutions("    # END SOLUTION\n", "g.py")
    stripped, removed = strip_solutions(text + "    # END SOLUTION\n", "f.py")
    assert 'return student_solution("relu_maxpool", "relu_backward_gradient")(x, x)' in stripped
    assert removed == ["    return x * 2\n"]
    (tmp_path / "notes.md").write_text("a copy: return dout * (dout > 0) * 3\n")
    check_release(tmp_path, {"return x * 2 * 3 * 4"})                # nothing of it here
    with pytest.raises(ValueError, match="notes.md still holds"):
        check_release(tmp_path, {"a copy: return dout * (dout > 0) * 3"})
    with pytest.raises(ValueError, match="exists"):
        release(tmp_path, ROOT)                                       # never over an existing folder


def test_every_assignment_has_its_student_file_and_the_grader_knows_it():
    from attribution.grade import ASSIGNMENTS
    from minicnn.assignments import FILES, assignments_folder
    assert set(FILES) == set(ASSIGNMENTS)
    for assignment, name in FILES.items():
        assert (assignments_folder() / name).is_file(), name


def test_the_answers_to_the_questions_stay_with_the_instructor(student):
    out, _ = student
    for rel in ("tutorials/11_cam_family.py", "tutorials/notebooks/11_cam_family.ipynb",
                "tutorials/12_can_we_trust_the_map.py", "tutorials/notebooks/12_can_we_trust_the_map.ipynb",
                "tutorials/assignments/a_relu_maxpool.py", "tutorials/assignments/notebooks/f_cam_weightings.ipynb"):
        ours, theirs = (ROOT / rel).read_text(encoding="utf-8"), (out / rel).read_text(encoding="utf-8")
        assert "BEGIN ANSWER" in ours and "BEGIN ANSWER" not in theirs, rel
        assert "The instructor's is not in this copy" in theirs, rel
    text = (out / "tutorials" / "11_cam_family.py").read_text()
    assert "never subtracts a channel" not in text and "Why are Grad-CAM, HiResCAM and XGrad-CAM equal" in text
    import json
    json.loads((out / "tutorials" / "notebooks" / "12_can_we_trust_the_map.ipynb").read_text())   # still a notebook


def test_answer_markers_must_pair():
    from attribution.course import strip_answers
    with pytest.raises(ValueError, match="without its END ANSWER"):
        strip_answers("# BEGIN ANSWER\n# yes\n", "t.py")
    with pytest.raises(ValueError, match="without its BEGIN ANSWER"):
        strip_answers("END ANSWER\n", "t.md")
