"""The benchmark scripts still run (tiny settings): they are how the README's ratios are measured.
No timing is asserted here; that is the benchmarks' job, in one process, on a quiet machine."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import needs_captum, needs_grad_cam
from test_metrics import needs_quantus

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"

pytestmark = [needs_captum, pytest.mark.slow]


def _run_script(script, *args):
    """The benchmark script's standard output, after checking that it ran through."""
    result = subprocess.run([sys.executable, str(BENCH / script), *args], capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


@pytest.mark.parametrize("script,args,expect", [
    ("bench_conv.py", ["--layers", "2", "--repeat", "1"], "linear 25088->4096: forward"),
    ("bench_vgg16.py", ["--batches", "1", "2", "--repeat", "1"], "per image at batch 2 / batch 1, alternating rounds"),
    ("bench_attribution.py", ["--repeat", "1", "--samples", "2", "--steps", "2", "--batch", "2", "--perturbations", "4"],
     "kernel_shap (4 samples)"),
    ("bench_resnet50.py", ["--batches", "1", "--rounds", "1"], "forward + input grad, batch 1"),
])
def test_benchmark_runs(script, args, expect):
    out = _run_script(script, *args)
    assert expect in out
    assert "ratio" in out


def test_benchmarks_drop_the_kernel_pinning_for_their_own_process_only():
    """OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE are read when NumPy loads OpenBLAS: the benchmark re-runs itself
    without them, and says which kernel it got."""
    probe = ("import os, sys; sys.path.insert(0, {bench!r}); import common; common.use_native_kernels(); "
             "print('seen:', os.environ.get('OPENBLAS_CORETYPE'), os.environ.get('OPENBLAS_L2_SIZE')); "
             "print(common.threads_note())").format(bench=str(BENCH))
    env = dict(os.environ, OPENBLAS_CORETYPE="Haswell", OPENBLAS_L2_SIZE="1048576")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "seen: None None" in result.stdout
    assert "PINNED" not in result.stdout
    assert "kernels" in result.stdout or "threadpoolctl" in result.stdout     # the kernel, or how to see it


@needs_grad_cam
def test_the_cam_benchmark_runs():
    out = _run_script("bench_cams.py", "--rounds", "1", "--size", "32", "--layer", "layer3")
    assert "Ablation-CAM" in out and "ratio" in out


@needs_grad_cam
@needs_captum
def test_the_parity_measurement_holds_on_nets_the_other_tests_never_saw():
    """benchmarks/parity_cams.py on 3 random nets (another draw than its default): every method within the
    issue's tolerance of its reference (float64; Score-CAM, Eigen-CAM and FullGrad pass through float32 there)."""
    out = _run_script("parity_cams.py", "--nets", "3", "--seed", "77")
    errors = {name.strip(): float(e) for name, e in re.findall(r"^  (.+?)\s+(\S+)$", out, re.M)}
    assert len(errors) == 14, out
    for name, e in errors.items():
        assert e < (2e-6 if name.startswith(("score", "eigen", "fullgrad")) else 1e-9), (name, e)


@needs_quantus
def test_the_metrics_parity_holds_on_nets_the_other_tests_never_saw():
    """benchmarks/parity_metrics.py on 2 random nets (another draw than its default): every deterministic
    metric equals Quantus to 1e-8."""
    out = _run_script("parity_metrics.py", "--nets", "2", "--seed", "77")
    errors = {name.strip(): float(e) for name, e in re.findall(r"^  (.+?)\s+(\S+)$", out, re.M)}
    assert len(errors) == 17 and max(errors.values()) < 1e-8, out


@pytest.mark.parametrize("script,args,expect", [
    ("bench_winograd.py", ["--nets", "resnet50", "--layers", "3", "--rounds", "1"],
     "resnet50 input-grad, sum of medians / torch: direct"),
    ("profile_layers.py", ["--model", "resnet50", "--rounds", "1"], "all convolutions"),
])
def test_the_winograd_and_glue_benchmarks_run(script, args, expect):
    out = _run_script(script, *args)
    assert expect in out and "kernels" in out
