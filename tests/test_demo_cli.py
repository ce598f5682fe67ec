"""Issue 5: the shipped model, the data generator, and the attribution command end to end."""
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from minicnn.data import SHAPE_CLASSES, make_composites, make_shapes
from minicnn.models import shapes_net
from minicnn.train import evaluate_accuracy

ENV = dict(os.environ, MPLBACKEND="Agg")


def run(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "attribution", *map(str, args)], capture_output=True, text=True,
                          env=ENV, cwd=cwd, timeout=300)


def test_generator_is_deterministic_balanced_and_masked():
    X, y, masks = make_shapes(36, seed=5)
    X2, y2, masks2 = make_shapes(36, seed=5)
    assert np.array_equal(X, X2) and np.array_equal(y, y2) and np.array_equal(masks, masks2)
    assert X.shape == (36, 3, 64, 64) and X.dtype == np.float32 and 0 <= X.min() and X.max() <= 1
    assert np.bincount(y, minlength=6).tolist() == [6] * 6
    areas = masks.reshape(36, -1).mean(axis=1)
    assert (areas > 0.02).all() and (areas < 0.4).all()
    assert not np.array_equal(X, make_shapes(36, seed=6)[0])
    C, labels, cmasks = make_composites(10, seed=1)
    assert C.shape == (10, 3, 64, 64) and labels.shape == (10, 2) and cmasks.shape == (10, 2, 64, 64)
    assert (labels[:, 0] != labels[:, 1]).all()
    assert not (cmasks[:, 0] & cmasks[:, 1]).any()                 # the two objects do not overlap


def test_shipped_model_accuracy_on_fresh_images():
    model = shapes_net(pretrained=True)
    X, y, _ = make_shapes(300, seed=2024)                          # not the training or validation seeds
    accuracy = evaluate_accuracy(model, X, y)
    assert accuracy >= 0.97, accuracy


def test_shipped_resnet_accuracy_on_fresh_images():
    from minicnn.models import shapes_resnet
    X, y, _ = make_shapes(300, seed=2024)
    accuracy = evaluate_accuracy(shapes_resnet(pretrained=True), X, y)
    assert accuracy >= 0.92, accuracy                              # 94% when shipped (94.5% held out)


def test_shipped_weights_are_small():
    from importlib import resources
    size = resources.files("minicnn").joinpath("assets/shapes_net.npz").stat().st_size
    assert size < 3_000_000


def _assert_png(path, min_size=(400, 300)):
    img = np.asarray(Image.open(path).convert("RGB"))
    assert img.shape[1] >= min_size[0] and img.shape[0] >= min_size[1]
    assert img.std() > 10                                          # not a constant picture


def test_demo_end_to_end(tmp_path):
    out = tmp_path / "demo.png"
    result = run("demo", "--out", out)
    assert result.returncode == 0, result.stderr
    assert "figure written to" in result.stdout and str(out) in result.stdout
    assert "image 5:" in result.stdout and "(explaining" in result.stdout
    _assert_png(out, (1400, 1100))
    assert [p.name for p in tmp_path.iterdir()] == ["demo.png"]


@pytest.fixture
def shape_images(tmp_path):
    X, y, _ = make_shapes(2, seed=11)
    paths = []
    for i, mode in enumerate(["RGB", "L"]):
        path = tmp_path / f"shape{i}.png"
        img = Image.fromarray((X[i].transpose(1, 2, 0) * 255).astype(np.uint8))
        (img if mode == "RGB" else img.convert("L")).resize((96, 96)).save(path)
        paths.append(path)
    return paths, y


def test_explain_end_to_end_with_saved_maps(tmp_path, shape_images):
    paths, y = shape_images
    out, maps = tmp_path / "explained.png", tmp_path / "maps.npz"
    result = run("explain", *paths, "--methods", "vanilla", "gradcam", "integrated_gradients", "--out", out,
                 "--save-maps", maps)
    assert result.returncode == 0, result.stderr
    assert f"{paths[0]}: {SHAPE_CLASSES[y[0]]}" in result.stdout
    _assert_png(out)
    with np.load(maps) as data:
        assert data["vanilla_gradient"].shape == (2, 3, 64, 64)
        assert data["grad_cam"].shape == (2, 8, 8)
        assert data["integrated_gradients"].shape == (2, 3, 64, 64)
    result = run("explain", paths[0], "--target", "star", "--out", out)
    assert result.returncode == 0 and "explained: star" not in result.stdout


def test_explain_with_the_other_families(tmp_path, shape_images):
    paths, y = shape_images
    out, maps = tmp_path / "families.png", tmp_path / "families.npz"
    result = run("explain", paths[0], "--methods", "deeplift", "lrp", "deep_taylor", "lime", "kernel_shap",
                 "shapley_values", "--out", out, "--save-maps", maps)
    assert result.returncode == 0, result.stderr
    _assert_png(out, (1400, 200))                                  # one row, seven columns
    with np.load(maps) as data:
        for name in ("deeplift", "lrp", "deep_taylor", "lime", "kernel_shap", "shapley_values"):
            assert data[name].shape == (1, 3, 64, 64) and np.isfinite(data[name]).all(), name
        # the LIME map is constant on each superpixel: far fewer distinct values than pixels
        assert len(np.unique(data["lime"][0, 0])) <= 100


@pytest.mark.parametrize("args,message", [
    (["explain", "MISSING.png"], "no image file at MISSING.png"),
    (["explain", "NOTIMAGE.png"], "not an image PIL can read"),
    (["explain", "IMG", "--methods", "vanilla", "nonsense"],
     "unknown method nonsense; valid: vanilla_gradient, gradient_x_input, deconvnet"),
    (["explain", "IMG", "--model", "resnet"], "unknown model 'resnet': use shapes, vgg11, vgg13, vgg16"),
    (["explain", "IMG", "--target", "hexagon"], "unknown class 'hexagon'; valid: circle, square"),
    (["explain", "IMG", "--out", "NOFOLDER/x.png"], "the output folder"),
    (["explain", "IMG", "--out", "IMG"], "is one of the input images"),
    (["explain", "IMG", "--out", "x.txt"], "must end in one of .png"),
    (["demo", "--out", "NOFOLDER/demo.png"], "does not exist"),
])
def test_bad_input_gives_a_clear_message_and_nothing_written(tmp_path, shape_images, args, message):
    img = shape_images[0][0]
    (tmp_path / "NOTIMAGE.png").write_text("this is text")
    before = sorted(p.name for p in tmp_path.iterdir())
    args = [str(img) if a == "IMG" else a.replace("NOFOLDER", str(tmp_path / "nofolder")) for a in args]
    result = run(*args, cwd=tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    assert message in result.stderr.replace(str(tmp_path / "nofolder"), "NOFOLDER")
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert "Traceback" not in result.stderr


def test_image_modes_are_converted(tmp_path):
    X, _, _ = make_shapes(1, seed=3)
    base = Image.fromarray((X[0].transpose(1, 2, 0) * 255).astype(np.uint8))
    paths = []
    for mode in ["RGBA", "P", "L"]:
        paths.append(tmp_path / f"img_{mode}.png")
        base.convert(mode).save(paths[-1])
    paths.append(tmp_path / "img_16bit.png")
    Image.fromarray((np.asarray(base.convert("L"), dtype=np.uint16) * 257)).save(paths[-1])
    result = run("explain", *paths, "--methods", "gradcam", "--out", tmp_path / "modes.png")
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("arch", ["vgg16", "resnet50"])
def test_imagenet_model_without_weights_says_how_to_get_them(tmp_path, shape_images, arch):
    env = dict(ENV, MINICNN_HOME=str(tmp_path / "cache"))
    result = subprocess.run([sys.executable, "-m", "attribution", "explain", str(shape_images[0][0]), "--model",
                             arch, "--out", str(tmp_path / "v.png")], capture_output=True, text=True, env=env)
    assert result.returncode == 2
    assert f"python -m minicnn download {arch}" in result.stderr and "Traceback" not in result.stderr


def test_help_explains_every_option():
    result = run("explain", "--help")
    for option in ["--model", "--methods", "--target", "--out", "--save-maps"]:
        assert option in result.stdout


def _huge_png(path, width=20000, height=20000):
    """A valid greyscale PNG of width x height black pixels, compressed to about a megabyte."""
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    packer = zlib.compressobj(9)
    row = b"\x00" * (width + 1)                      # filter byte + one byte per pixel
    body = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b""))


def test_very_large_image_is_refused_clearly(tmp_path):
    huge = tmp_path / "huge.png"
    _huge_png(huge)
    assert huge.stat().st_size < 5_000_000
    result = run("explain", huge, "--out", tmp_path / "out.png")
    assert result.returncode == 2
    assert "too large" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "out.png").exists()


def test_threads_option(monkeypatch, tmp_path):
    """--threads N: threadpoolctl limits this process where it is installed; without it the command runs again
    in a child whose environment sets the BLAS thread variables; 0 is refused."""
    import subprocess
    import sys

    from attribution import cli
    result = subprocess.run([sys.executable, "-m", "attribution", "demo", "--threads", "0", "--out",
                             str(tmp_path / "d.png")], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "--threads must be at least 1" in result.stderr
    monkeypatch.setitem(sys.modules, "threadpoolctl", None)                 # as if it were not installed
    for variable in cli.THREAD_VARIABLES:
        monkeypatch.delenv(variable, raising=False)
    assert cli.limit_threads(1, ["demo", "--help"]) == 0                     # the child ran, and said so
    for variable in cli.THREAD_VARIABLES:
        monkeypatch.setenv(variable, "1")
    assert cli.limit_threads(1, ["demo", "--help"]) is None                 # in the child: go on
    assert cli.limit_threads(None, []) is None
