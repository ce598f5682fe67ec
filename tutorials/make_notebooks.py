"""Write tutorials/notebooks/NN_name.ipynb from each tutorials/NN_name.py, and
tutorials/assignments/notebooks/x_name.ipynb from each assignment (the `# %%` script is the source;
the notebook is generated, without outputs, so the two cannot drift: tests/test_notebooks.py regenerates and
compares).

    python tutorials/make_notebooks.py            # needs the notebooks extra: pip install -e ".[notebooks]"
    python tutorials/make_notebooks.py --executed [NN_name ...]   # run the tutorial notebooks, keep outputs

Each notebook starts with one install cell: it does nothing where minicnn is already importable (your own
checkout after `pip install -e .`), installs the checkout it sits in when opened from a clone, and otherwise
(a hosted notebook service) installs from REPOSITORY, which a course sets to its copy of the repository.
"""
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "notebooks"

INSTALL_CELL = '''# Run this cell first: it installs the package if this notebook cannot import it yet.
REPOSITORY = "git+https://github.com/YOUR-COURSE/minicnn-attribution"   # where a hosted service installs from
import importlib
import importlib.util
import subprocess
import sys
from pathlib import Path

if importlib.util.find_spec("minicnn") is None:
    checkout = next((p for p in [Path.cwd(), *Path.cwd().parents] if (p / "setup.cfg").exists()
                     and (p / "minicnn").is_dir()), None)
    target = ["-e", str(checkout)] if checkout else [REPOSITORY]
    if not checkout and "YOUR-COURSE" in REPOSITORY:
        raise RuntimeError("this notebook is not inside a copy of minicnn-attribution: ask your instructor for "
                           "the repository's address and put it in REPOSITORY above")
    subprocess.check_call([sys.executable, "-m", "pip", "install", "-q", *target])
    if checkout:
        sys.path.insert(0, str(checkout))      # usable now, without restarting the kernel
    importlib.invalidate_caches()
    if importlib.util.find_spec("minicnn") is None:
        print("Installed. Restart the kernel (Kernel > Restart), then run the notebook from the top.")
    else:
        print("Installed; go on.")'''


def notebook(script):
    """The notebook (an nbformat object) for one `# %%` script, install cell first, no outputs."""
    import jupytext
    import nbformat
    nb = jupytext.read(script, fmt="py:percent")
    nb.cells.insert(0, nbformat.v4.new_code_cell(INSTALL_CELL))
    nb.metadata = {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
                   "language_info": {"name": "python"}}
    for i, cell in enumerate(nb.cells):                   # stable ids, so regenerating gives the same file
        cell["id"] = f"cell-{i}"
        cell.metadata = {}
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    return nb


def text(nb):
    import nbformat
    return nbformat.writes(nb) + "\n"


def scripts():
    return sorted(HERE.glob("[0-9][0-9]_*.py"))


ASSIGNMENTS = HERE / "assignments"
ASSIGNMENTS_OUT = ASSIGNMENTS / "notebooks"


def assignment_scripts():
    return sorted(ASSIGNMENTS.glob("[a-z]_*.py"))


def assignment_notebook(script):
    """An assignment's notebook: the install cell, the assignment's cells (one per function to write, then its
    questions) and how to grade the notebook itself (the grader reads its code cells, not the install cell)."""
    import nbformat
    sys.path.insert(0, str(HERE.parent))
    try:
        from minicnn.assignments import FILES
    finally:
        sys.path.remove(str(HERE.parent))
    assignment = next(a for a, f in FILES.items() if f == script.name)
    nb = notebook(script)
    nb.cells.append(nbformat.v4.new_markdown_cell(
        f"## Grading\n\nSave the notebook, then (your instructor runs the same with hidden cases):\n\n"
        f"    python -m attribution.grade {assignment} tutorials/assignments/notebooks/{script.stem}.ipynb\n\n"
        f"The grader reads the notebook's code cells (not the first, install cell); `!` and `%` lines are "
        f"ignored. The `.py` file works the same way."))
    nb.cells[-1]["id"] = f"cell-{len(nb.cells) - 1}"
    nb.cells[-1].metadata = {}
    return nb


EXECUTED = OUT / "executed"


def execute(script, timeout=600):
    """The tutorial's notebook run top to bottom (full mode, figures inline), for students to compare with
    their own run: tutorials/notebooks/executed/NN_name.ipynb."""
    import os
    import tempfile

    from nbclient import NotebookClient
    nb = notebook(script)
    with tempfile.TemporaryDirectory() as folder:                # the kernel's environment, not this process's
        env = dict(os.environ, TUTORIAL_FIGURES=folder, MINICNN_QUICK="0",
                   MPLBACKEND="module://matplotlib_inline.backend_inline")
        NotebookClient(nb, timeout=timeout, kernel_name="python3",
                       resources={"metadata": {"path": folder}}).execute(env=env)
    for cell in nb.cells:                       # no run-specific noise in the file: counts, widget state
        cell.metadata = {}
    return nb


def main():
    if "--executed" in sys.argv[1:]:            # python tutorials/make_notebooks.py --executed [NN_name ...]
        EXECUTED.mkdir(parents=True, exist_ok=True)
        wanted = sys.argv[sys.argv.index("--executed") + 1:]       # only these (a changed tutorial), or all
        for script in (s for s in scripts() if not wanted or s.stem in wanted):
            path = EXECUTED / (script.stem + ".ipynb")
            path.write_text(text(execute(script)), encoding="utf-8")
            print("executed", path.relative_to(HERE.parent))
        return 0
    OUT.mkdir(exist_ok=True)
    ASSIGNMENTS_OUT.mkdir(exist_ok=True)
    written = [(OUT / (s.stem + ".ipynb"), notebook(s)) for s in scripts()]
    written += [(ASSIGNMENTS_OUT / (s.stem + ".ipynb"), assignment_notebook(s)) for s in assignment_scripts()]
    for path, nb in written:
        path.write_text(text(nb), encoding="utf-8")
        print("wrote", path.relative_to(HERE.parent))
    return 0


if __name__ == "__main__":
    sys.exit(main())
