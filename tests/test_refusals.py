"""Issue 23: no silent NaN, no blow-up, nothing destroyed. Every parameter that cannot work is refused up
front with a message that names it; every result that is not finite raises, naming the likely cause; work
and memory are estimated before they are spent; the commands protect every weights file and turn each bad
input into one line."""
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import attribution as attr
from attribution.lrp import AlphaBeta, Epsilon, Flat, Gamma, ZPlus, lrp
from attribution.superpixels import slic
from nets import small_vgg


@pytest.fixture(scope="module")
def model():
    return small_vgg(dtype=np.float32)


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).uniform(0, 1, (1, 3, 16, 16)).astype(np.float32)


# --------------------------------------------------------------------------
# LRP: parameters that divide must be > 0, gamma finite
# --------------------------------------------------------------------------

@pytest.mark.parametrize("make,words", [
    (lambda: Epsilon(0), "epsilon must be a finite number > 0"),
    (lambda: Epsilon(float("nan")), "epsilon must be a finite number > 0"),
    (lambda: ZPlus(stabilizer=0), "ZPlus|AlphaBeta: stabilizer must be a finite number > 0"),
    (lambda: Flat(stabilizer=-1e-6), "Flat: stabilizer must be a finite number > 0"),
    (lambda: Gamma(gamma=np.inf), "gamma must be a finite number >= 0"),
    (lambda: Gamma(stabilizer=0.0), "Gamma: stabilizer must be"),
    (lambda: AlphaBeta(np.inf, np.inf), "finite alpha, beta"),
])
def test_lrp_rules_refuse_settings_that_give_nan(make, words):
    with pytest.raises(ValueError, match=words):
        make()


@pytest.mark.parametrize("kwargs,words", [({"epsilon": 0}, "for LRP-0 .* use the 'zero' rule"),
                                          ({"stabilizer": 0}, "LRP: stabilizer must be a finite number > 0"),
                                          ({"gamma": np.inf, "composite": "epsilon_gamma_box"}, "gamma must be")])
def test_lrp_refuses_before_any_work(model, images, kwargs, words):
    with pytest.raises(ValueError, match=words):
        lrp(model, images, **kwargs)


def test_lrp_zero_rule_still_passes_nothing_where_z_is_zero(model, images):
    assert np.isfinite(lrp(small_vgg(), images.astype(np.float64), composite="zero")).all()


# --------------------------------------------------------------------------
# Overflowing baselines, float16: an error that names the cause, never a NaN map
# --------------------------------------------------------------------------

HUGE = 3e38

@pytest.mark.parametrize("method,kwargs", [
    (attr.deeplift, {"baseline": HUGE}),
    (attr.integrated_gradients, {"baseline": HUGE, "steps": 4}),
    (attr.occlusion, {"baseline": HUGE, "window": 8, "stride": 8}),
    (attr.lime, {"baseline": HUGE, "n_samples": 20, "n_segments": 4}),
    (attr.kernel_shap, {"baseline": HUGE, "n_samples": 20, "n_segments": 4}),
    (attr.shapley_values, {"baseline": HUGE, "n_segments": 4}),
])
def test_an_overflowing_baseline_is_named(model, images, method, kwargs):
    with np.errstate(all="ignore"), pytest.raises(ValueError, match="baseline"):
        method(model, images, 0, **kwargs)


@pytest.mark.parametrize("method", [attr.deeplift, attr.vanilla_gradient, attr.lrp, attr.grad_cam])
def test_float16_is_refused_with_the_reason(model, images, method):
    with pytest.raises(ValueError, match="float16's largest number is 65504"):
        method(model, images.astype(np.float16), 0)


def test_a_result_that_is_not_finite_raises_naming_the_method():
    from attribution.methods import check_result
    with pytest.raises(ValueError, match="SmoothGrad gave NaN or infinity: because"):
        check_result(np.array([1.0, np.nan]), "SmoothGrad", "because")


# --------------------------------------------------------------------------
# Segments
# --------------------------------------------------------------------------

def test_slic_reads_uint8_as_the_image_it_stands_for():
    image = np.random.default_rng(1).uniform(0, 1, (3, 24, 24))
    image[:, :, 12:] *= 0.2                                          # two halves: segments follow them
    as_uint8 = np.round(image * 255).astype(np.uint8)
    labels = slic(as_uint8, n_segments=8)
    assert labels.max() >= 1
    np.testing.assert_array_equal(labels, slic(as_uint8.astype(np.float64) / 255, n_segments=8))
    with pytest.raises(ValueError, match="int32 is ambiguous"):
        slic(as_uint8.astype(np.int32))


def test_one_segment_is_not_explained(model):
    flat = np.full((1, 3, 16, 16), 0.5, dtype=np.float32)
    with pytest.raises(ValueError, match="one segment in image 0 .*there is nothing to explain"):
        attr.lime(model, flat, 0, n_samples=10, n_segments=2)          # SLIC's grid is one cell here
    with pytest.raises(ValueError, match="fewer than 2 segments"):
        attr.kernel_shap(model, flat, 0, segments=np.zeros((16, 16), int))


# --------------------------------------------------------------------------
# Work and memory, estimated before they are spent
# --------------------------------------------------------------------------

def _timed(call):
    start = time.monotonic()
    call()
    return time.monotonic() - start


def test_lime_with_16384_segments_is_refused_with_its_estimate(model):
    x = np.random.default_rng(2).uniform(0, 1, (1, 3, 128, 128)).astype(np.float32)
    segments = np.arange(128 * 128).reshape(128, 128)                  # one pixel each: 16,384 segments
    start = time.monotonic()
    with pytest.raises(ValueError, match=r"LIME with 16384 segments .* about \d+\.\d GiB .*use fewer segments"):
        attr.lime(model, x, 0, segments=segments, n_samples=1000)
    assert time.monotonic() - start < 10


def test_kernel_shap_enumerating_24_segments_is_refused(model):
    x = np.random.default_rng(3).uniform(0, 1, (1, 3, 24, 24)).astype(np.float32)
    segments = np.repeat(np.arange(24), 24).reshape(24, 24)            # 24 segments (rows)
    with pytest.raises(ValueError, match=r"enumerating every coalition of 24 segments .* GiB .*n_samples below"):
        attr.kernel_shap(model, x, 0, segments=segments, n_samples=2 ** 24)


def test_gauss_legendre_with_100000_steps_is_refused(model, images):
    with pytest.raises(ValueError, match=r"Gauss-Legendre with 100000 steps .* about 223.5 GiB"):
        attr.integrated_gradients(model, images, 0, steps=100_000, method="gausslegendre")


def test_images_above_the_size_limit_are_refused(model):
    x = np.zeros((1, 3, 2049, 2049), dtype=np.float32)
    with pytest.raises(ValueError, match="2049 x 2049 pixels are above the limit"):
        attr.vanilla_gradient(model, x, 0)


# --------------------------------------------------------------------------
# The commands: one line, nothing lost
# --------------------------------------------------------------------------

def run(*args, cwd, env=None):
    import os
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, timeout=300, cwd=cwd,
                          env=dict(os.environ, **(env or {})))


@pytest.mark.parametrize("args,words", [
    (["attribution", "demo", "--seed", "-1"], "--seed must be 0 or more"),
    (["attribution", "evaluate", "--seed", "-1"], "--seed must be 0 or more"),
    (["attribution", "evaluate", "--out", "afile/sub"], "is not a folder"),
    (["minicnn", "train", "shapes", "--n-train", "0"], "n_train must be a whole number of at least 1"),
    (["minicnn", "train", "shapes", "--epochs", "0"], "epochs must be a whole number of at least 1"),
    (["minicnn", "train", "shapes", "--seed", "-2"], "seed must be a whole number of at least 0"),
])
def test_bad_command_inputs_are_one_line(tmp_path, args, words):
    (tmp_path / "afile").write_text("x")
    start = time.monotonic()
    result = run(*args, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and words in result.stderr and "Traceback" not in result.stderr
    assert time.monotonic() - start < 60                            # refused before any work


def test_train_never_overwrites_shipped_or_cached_weights(tmp_path):
    from minicnn.models import SHAPES_WEIGHTS
    import minicnn
    shipped = Path(minicnn.__file__).parent / SHAPES_WEIGHTS
    before = shipped.read_bytes()
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "vgg16-397923af.npz").write_bytes(b"cached")
    for target in (str(shipped), str(cache / "vgg16-397923af.npz")):
        result = run("minicnn", "train", "shapes", "--epochs", "1", "--n-train", "8", "-o", target, cwd=tmp_path,
                     env={"MINICNN_HOME": str(cache)})
        assert result.returncode == 2 and "is a weights file" in result.stderr and "-o shipped" in result.stderr
    assert shipped.read_bytes() == before and (cache / "vgg16-397923af.npz").read_bytes() == b"cached"


def test_save_maps_never_replaces_a_cached_weights_file(tmp_path):
    from PIL import Image
    cache = tmp_path / "cache"
    cache.mkdir()
    np.savez(cache / "vgg16-397923af.npz", w=np.zeros(3))
    before = (cache / "vgg16-397923af.npz").read_bytes()
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(tmp_path / "img.png")
    result = run("attribution", "explain", "img.png", "--methods", "vanilla", "--save-maps",
                 str(cache / "vgg16-397923af.npz"), cwd=tmp_path, env={"MINICNN_HOME": str(cache)})
    assert result.returncode == 2 and "is a weights file" in result.stderr, result.stderr
    assert (cache / "vgg16-397923af.npz").read_bytes() == before
    # the same file as --model vgg16's cache: it does not fit VGG-16; one line says so and what to do
    result = run("attribution", "explain", "img.png", "--model", "vgg16", "--methods", "vanilla", cwd=tmp_path,
                 env={"MINICNN_HOME": str(cache)})
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert "the cached vgg16 weights do not fit" in result.stderr and "download vgg16 again" in result.stderr
