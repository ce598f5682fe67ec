"""The benchmark scripts still run (tiny settings): they are how the README's ratios are measured.
No timing is asserted here; that is the benchmarks' job, in one process, on a quiet machine."""
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import needs_captum

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"

pytestmark = [needs_captum, pytest.mark.slow]


@pytest.mark.parametrize("script,args,expect", [
    ("bench_conv.py", ["--layers", "2", "--repeat", "1"], "64->64@224"),
    ("bench_vgg16.py", ["--batches", "1", "--repeat", "1"], "peak RSS"),
    ("bench_attribution.py", ["--repeat", "1", "--samples", "2", "--steps", "2", "--batch", "2", "--perturbations", "4"],
     "kernel_shap (4 samples)"),
])
def test_benchmark_runs(script, args, expect):
    result = subprocess.run([sys.executable, str(BENCH / script), *args], capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert expect in result.stdout
    assert "ratio" in result.stdout
