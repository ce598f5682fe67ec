"""Write tutorials/notebooks/NN_name.ipynb from each tutorials/NN_name.py (the `# %%` script is the source;
the notebook is generated, without outputs, so the two cannot drift: tests/test_notebooks.py regenerates and
compares).

    python tutorials/make_notebooks.py            # needs the notebooks extra: pip install -e ".[notebooks]"

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


def main():
    OUT.mkdir(exist_ok=True)
    for script in scripts():
        path = OUT / (script.stem + ".ipynb")
        path.write_text(text(notebook(script)), encoding="utf-8")
        print("wrote", path.relative_to(HERE.parent))
    return 0


if __name__ == "__main__":
    sys.exit(main())
