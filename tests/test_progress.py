"""Issue 14 (its progress part): long API functions report progress when asked (off by default), on stderr
only, and the commands show it on stderr while stdout stays clean."""
import os
import subprocess
import sys

import numpy as np
import pytest

import attribution as attr
from attribution.progress import Progress

from nets import small_vgg

SEG = (np.arange(16)[:, None] // 6) * 3 + np.arange(16)[None] // 6


@pytest.mark.parametrize("call,total", [
    (lambda m, x, p: attr.smoothgrad(attr.vanilla_gradient, m, x, 0, n_samples=7, batch_size=3, seed=0, progress=p),
     14),
    (lambda m, x, p: attr.integrated_gradients(m, x, 0, steps=8, batch_size=5, progress=p), 16),
    (lambda m, x, p: attr.occlusion(m, x, 0, window=8, stride=8, batch_size=3, progress=p), 8),
    (lambda m, x, p: attr.lime(m, x, 0, segments=SEG, n_samples=20, batch_size=8, progress=p), 40),
    (lambda m, x, p: attr.kernel_shap(m, x, 0, segments=SEG, n_samples=30, batch_size=8, progress=p), 60),
    (lambda m, x, p: attr.shapley_values(m, x, 0, segments=np.minimum(SEG, 3), progress=p), 32),
])
def test_long_functions_report_progress_to_a_callable(call, total, capsys):
    model, x = small_vgg(), np.random.default_rng(0).uniform(0, 1, (2, 3, 16, 16))
    seen = []
    with_progress = call(model, x, lambda done, of: seen.append((done, of)))
    assert seen and all(of == total for _, of in seen), seen
    assert [d for d, _ in seen] == sorted(d for d, _ in seen) and seen[-1][0] == total
    np.testing.assert_array_equal(with_progress, call(model, x, False))          # progress changes nothing
    assert capsys.readouterr().out == ""


def test_progress_true_writes_to_stderr_only(capsys):
    model, x = small_vgg(), np.random.default_rng(0).uniform(0, 1, (1, 3, 16, 16))
    attr.smoothgrad(attr.vanilla_gradient, model, x, 0, n_samples=4, batch_size=2, progress=True)
    out, err = capsys.readouterr()
    assert out == "" and "SmoothGrad samples: 4/4" in err and "s left" in err


def test_progress_is_off_by_default_and_checked(capsys):
    model, x = small_vgg(), np.random.default_rng(0).uniform(0, 1, (1, 3, 16, 16))
    attr.integrated_gradients(model, x, 0, steps=4)
    assert capsys.readouterr() == ("", "")
    with pytest.raises(ValueError, match="progress must be True, False or a callable"):
        Progress("x", 3, progress="yes")


def test_the_demo_shows_progress_on_stderr_and_keeps_stdout_clean(tmp_path):
    result = subprocess.run([sys.executable, "-m", "attribution", "demo", "--out", str(tmp_path / "d.png")],
                            capture_output=True, text=True, env=dict(os.environ, MPLBACKEND="Agg"), timeout=300)
    assert result.returncode == 0, result.stderr
    assert "SmoothGrad samples: 300/300" in result.stderr
    assert "SmoothGrad" not in result.stdout and "figure written to" in result.stdout
