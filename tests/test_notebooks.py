"""Issue 13: the notebooks are generated from the `# %%` scripts (so the two cannot drift), and every
notebook executes. Needs the notebooks extra (pip install -e ".[notebooks]"), which CI installs."""
import importlib.util
import re
import sys
from pathlib import Path

import pytest

TUTORIALS = Path(__file__).resolve().parent.parent / "tutorials"
sys.path.insert(0, str(TUTORIALS))

missing = [m for m in ("jupytext", "nbformat", "nbclient", "ipykernel") if importlib.util.find_spec(m) is None]
pytestmark = pytest.mark.skipif(bool(missing), reason=f"the notebooks extra is not installed ({', '.join(missing)}):"
                                                      f" pip install -e '.[notebooks]'")
SCRIPTS = sorted(TUTORIALS.glob("[0-9][0-9]_*.py"))


@pytest.mark.parametrize("script", SCRIPTS, ids=[s.stem for s in SCRIPTS])
def test_notebook_is_the_script_regenerated(script):
    import make_notebooks
    committed = TUTORIALS / "notebooks" / (script.stem + ".ipynb")
    assert committed.exists(), f"run: python tutorials/make_notebooks.py ({committed.name} is missing)"
    assert committed.read_text(encoding="utf-8") == make_notebooks.text(make_notebooks.notebook(script)), \
        f"{committed.name} differs from {script.name}: run python tutorials/make_notebooks.py"


def test_there_is_no_stray_notebook():
    assert sorted(p.stem for p in (TUTORIALS / "notebooks").glob("*.ipynb")) == [s.stem for s in SCRIPTS]


@pytest.mark.parametrize("script", SCRIPTS, ids=[s.stem for s in SCRIPTS])
def test_notebook_executes(script, tmp_path, monkeypatch):
    import nbformat
    from nbclient import NotebookClient
    monkeypatch.setenv("MINICNN_QUICK", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("TUTORIAL_FIGURES", str(tmp_path))
    monkeypatch.setenv("MINICNN_HOME", str(tmp_path / "cache"))
    nb = nbformat.read(TUTORIALS / "notebooks" / (script.stem + ".ipynb"), as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors
    assert any(o.get("name") == "stdout" for c in nb.cells if c.cell_type == "code" for o in c.outputs)


def test_the_install_cell_makes_a_fresh_clone_importable_without_a_restart(tmp_path, monkeypatch):
    """Where minicnn is not importable yet, the first cell installs the clone it sits in and puts it on sys.path,
    so the next cell imports it without a kernel restart; outside a clone, with the placeholder address, it
    says what to ask the instructor."""
    import importlib.util
    import subprocess
    import sys

    from make_notebooks import INSTALL_CELL
    real_find_spec = importlib.util.find_spec
    calls = []
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "minicnn" and not calls else real_find_spec(name, *a))
    monkeypatch.setattr(subprocess, "check_call", lambda command: calls.append(command))
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.chdir(TUTORIALS / "notebooks")                 # inside the clone
    exec(INSTALL_CELL, {})
    assert calls and calls[0][-2:] == ["-e", str(TUTORIALS.parent)]
    assert sys.path[0] == str(TUTORIALS.parent)
    calls.clear()
    monkeypatch.chdir(tmp_path)                                # not in a clone
    with pytest.raises(RuntimeError, match="ask your instructor"):
        exec(INSTALL_CELL, {})


ASSIGNMENT_SCRIPTS = sorted((TUTORIALS / "assignments").glob("[a-z]_*.py"))


@pytest.mark.parametrize("script", ASSIGNMENT_SCRIPTS, ids=[s.stem for s in ASSIGNMENT_SCRIPTS])
def test_each_assignment_has_its_notebook_regenerated_with_questions(script):
    import make_notebooks
    committed = TUTORIALS / "assignments" / "notebooks" / (script.stem + ".ipynb")
    assert committed.exists(), f"run: python tutorials/make_notebooks.py ({committed.name} is missing)"
    assert committed.read_text(encoding="utf-8") == make_notebooks.text(make_notebooks.assignment_notebook(script))
    text = committed.read_text(encoding="utf-8")
    assert "## Questions" in text and text.count("BEGIN ANSWER") >= 2 and "python -m attribution.grade" in text
    assert sorted(p.stem for p in committed.parent.glob("*.ipynb")) == [s.stem for s in ASSIGNMENT_SCRIPTS]


@pytest.mark.parametrize("script", ASSIGNMENT_SCRIPTS, ids=[s.stem for s in ASSIGNMENT_SCRIPTS])
def test_an_assignment_notebook_is_graded_from_its_cells(script, tmp_path):
    """The stub notebook scores 0 ("not implemented"); the same notebook with the reference solution's functions
    in its cells scores full marks: the install cell and the markdown are not graded."""
    import ast
    import io

    import nbformat

    from attribution.grade import grade
    from minicnn.assignments import FILES
    assignment = next(a for a, f in FILES.items() if f == script.name)
    nb = nbformat.read(TUTORIALS / "assignments" / "notebooks" / (script.stem + ".ipynb"), as_version=4)
    report = grade(assignment, TUTORIALS / "assignments" / "notebooks" / (script.stem + ".ipynb"), out=io.StringIO())
    assert all(p == 0 and "not implemented" in (e or "") for p, _, e in report.values())
    solution = (TUTORIALS.parent / "tests" / "solutions" / script.name).read_text()
    bodies = {n.name: ast.get_source_segment(solution, n) for n in ast.parse(solution).body
              if isinstance(n, ast.FunctionDef)}
    header = "\n".join(ast.get_source_segment(solution, n) for n in ast.parse(solution).body
                       if isinstance(n, (ast.Import, ast.ImportFrom)))
    for cell in nb.cells:
        found = re.search(r"^def (\w+)", cell.source, re.M) if cell.cell_type == "code" else None
        if found and found.group(1) in bodies:
            cell.source = header + "\n\n\n" + bodies[found.group(1)]
    path = tmp_path / (script.stem + ".ipynb")
    nbformat.write(nb, str(path))
    report = grade(assignment, path, out=io.StringIO())
    assert all(p == t and e is None for p, t, e in report.values()), report


@pytest.mark.parametrize("script", SCRIPTS, ids=[s.stem for s in SCRIPTS])
def test_an_executed_copy_of_each_tutorial_is_published_and_current(script):
    """tutorials/notebooks/executed/ (python tutorials/make_notebooks.py --executed): the same cells as the
    script's notebook, run in full mode without an error, figures inline, for students to compare with."""
    import make_notebooks
    import nbformat
    path = TUTORIALS / "notebooks" / "executed" / (script.stem + ".ipynb")
    assert path.exists(), f"run: python tutorials/make_notebooks.py --executed ({path.name} is missing)"
    executed = nbformat.read(path, as_version=4)
    expected = make_notebooks.notebook(script)
    assert [c.source for c in executed.cells] == [c.source for c in expected.cells], \
        f"{path.name} is older than {script.name}: run python tutorials/make_notebooks.py --executed"
    outputs = [o for c in executed.cells if c.cell_type == "code" for o in c.outputs]
    assert outputs and not [o for o in outputs if o.output_type == "error"]
    if "01_engine" not in script.name:
        assert any("image/png" in o.get("data", {}) for o in outputs), "its figures, inline"


def _executed_text(stem):
    import nbformat
    executed = nbformat.read(TUTORIALS / "notebooks" / "executed" / f"{stem}.ipynb", as_version=4)
    return "".join(o.get("text", "") for c in executed.cells if c.cell_type == "code" for o in c.outputs)


def test_tutorial_10s_answer_about_finer_layers_holds_in_the_published_outputs():
    """Tutorial 10's answer to exercise 3 compares tutorial 11's Grad-CAM share at ResNet layer2 (8x8) with its
    own at layer3 and layer4: the published (full-mode) outputs of both must bear it out."""
    ten, eleven = _executed_text("10_skip_connections"), _executed_text("11_cam_family")
    shares = dict(re.findall(r"shapes_resnet (layer\d)\s+map \d+x\d+: (\d+)% of the heat on the object", ten))
    layer2 = re.search(r"ResNet layer2: maps 8x8\n  grad_cam\s+(\d+)% of the heat on the object", eleven)
    assert set(shares) == {"layer3", "layer4"} and layer2, (shares, layer2)
    assert int(layer2.group(1)) > max(int(v) for v in shares.values())
