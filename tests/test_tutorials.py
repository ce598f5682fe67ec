"""Issue 7: every tutorial runs top to bottom, figures written to a temporary folder."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

TUTORIALS = sorted((Path(__file__).resolve().parent.parent / "tutorials").glob("[0-9][0-9]_*.py"))


def test_there_are_nine_tutorials_with_cells():
    assert len(TUTORIALS) == 9
    for path in TUTORIALS:
        assert path.read_text().count("# %%") >= 4, path.name


@pytest.mark.parametrize("path", TUTORIALS, ids=[p.stem for p in TUTORIALS])
def test_tutorial_runs(tmp_path, path):
    env = dict(os.environ, MPLBACKEND="Agg", MINICNN_QUICK="1", TUTORIAL_FIGURES=str(tmp_path),
               MINICNN_HOME=str(tmp_path / "cache"))
    result = subprocess.run([sys.executable, str(path)], capture_output=True, text=True, env=env, cwd=tmp_path,
                            timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    figures = list(tmp_path.glob("*.png"))
    if "01_engine" not in path.name:
        assert figures, "the tutorial should draw its figure"
