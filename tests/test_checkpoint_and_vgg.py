"""Issue 3: VGG in minicnn, torchvision's files read without PyTorch, conversion and download."""
import os
import pickle
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

import minicnn as mc
import minicnn.models as models
from minicnn import CheckpointError, load_torch_checkpoint
from minicnn.hub import convert
from minicnn.weights import load_weights, read_weights

FIXTURES = Path(__file__).parent / "fixtures"
TINY = dict(width=1 / 32, hidden=16, num_classes=10)


def tiny_vgg16(**kw):
    return models.vgg("vgg16", **TINY, **kw)


@pytest.mark.parametrize("fmt", ["zip", "legacy"])
def test_fixture_checkpoints_read_without_torch(fmt):
    state = load_torch_checkpoint(FIXTURES / f"tiny_vgg16_{fmt}.pth")
    model = tiny_vgg16(normalize=False)   # the fixture's logits come from torchvision's bare network
    assert list(state) == list(model.state_dict())          # torchvision's names, in order
    model.load_state_dict(state)
    expected = np.load(FIXTURES / "tiny_vgg16_expected.npz")
    logits = model.forward(expected["x"])
    assert np.linalg.norm(logits - expected["logits"]) <= 1e-5 * np.linalg.norm(expected["logits"])


def test_both_formats_give_identical_arrays():
    a = load_torch_checkpoint(FIXTURES / "tiny_vgg16_zip.pth")
    b = load_torch_checkpoint(FIXTURES / "tiny_vgg16_legacy.pth")
    assert list(a) == list(b)
    for k in a:
        assert a[k].dtype == np.float32 and np.array_equal(a[k], b[k])


def test_vgg_layouts():
    m = models.vgg16(width=1 / 64, hidden=8)
    names = m.layer_names()
    convs = [n for n, l in m.named_layers() if isinstance(l, mc.Conv2d)]
    assert convs == [f"features.{i}" for i in (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)]
    assert [n for n, l in m.named_layers() if isinstance(l, mc.MaxPool2d)] == \
        [f"features.{i}" for i in (4, 9, 16, 23, 30)]
    assert names[-9:] == ["avgpool", "flatten"] + [f"classifier.{i}" for i in range(7)]
    assert names[0] == "normalize" and isinstance(m["normalize"], mc.Normalize)       # takes [0, 1] images
    assert models.vgg16(width=1 / 64, hidden=8, normalize=False).layer_names()[0] == "features.0"
    with pytest.raises(ValueError, match=r"minicnn.hub.pretrained\('vgg16'\)"):
        models.vgg16(weights="imagenet")
    for arch, n_convs in [("vgg11", 8), ("vgg13", 10), ("vgg19", 16)]:
        m = models.vgg(arch, width=1 / 64, hidden=8)
        assert sum(isinstance(l, mc.Conv2d) for _, l in m.named_layers()) == n_convs


def test_full_vgg16_shapes_and_parameter_count():
    m = models.vgg16()
    assert m.num_parameters() == 138_357_544
    assert len(m.state_dict()) == 32
    out = m.forward(np.zeros((1, 3, 224, 224), np.float32))
    assert out.shape == (1, 1000) and out.dtype == np.float32
    assert m.outputs["features.29"].shape == (1, 512, 14, 14)


def _hostile_pickle():
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned > /tmp/minicnn_pwned",))
    return pickle.dumps({"features.0.weight": Evil()}, protocol=2)


def test_hostile_pickle_is_refused_and_not_run(tmp_path):
    # a zip checkpoint whose data.pkl asks for os.system
    path = tmp_path / "evil.pth"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("evil/data.pkl", _hostile_pickle())
        z.writestr("evil/byteorder", "little")
    marker = Path("/tmp/minicnn_pwned")
    marker.unlink(missing_ok=True)
    with pytest.raises(CheckpointError, match=r"refused to load the global (posix|os)\.system"):
        load_torch_checkpoint(path)
    assert not marker.exists()
    # the same inside a legacy file
    legacy = tmp_path / "evil_legacy.pth"
    with open(legacy, "wb") as f:
        for obj in (0x1950A86A20F9469CFC6C, 1001, {"little_endian": True}):
            pickle.dump(obj, f, protocol=2)
        f.write(_hostile_pickle())
    with pytest.raises(CheckpointError, match=r"refused to load the global (posix|os)\.system"):
        load_torch_checkpoint(legacy)
    assert not marker.exists()


@pytest.mark.parametrize("fmt", ["zip", "legacy"])
def test_truncated_files(tmp_path, fmt):
    data = (FIXTURES / f"tiny_vgg16_{fmt}.pth").read_bytes()
    for cut in (len(data) // 2, len(data) - 100):
        path = tmp_path / "cut.pth"
        path.write_bytes(data[:cut])
        with pytest.raises(CheckpointError, match="truncated|incomplete|corrupt"):
            load_torch_checkpoint(path)


def test_wrong_magic_and_not_a_checkpoint(tmp_path):
    path = tmp_path / "wrong.pth"
    with open(path, "wb") as f:
        pickle.dump(12345, f, protocol=2)
    with pytest.raises(CheckpointError, match="wrong magic number"):
        load_torch_checkpoint(path)
    path.write_bytes(b"GIF89a not a checkpoint")
    with pytest.raises(CheckpointError, match="neither a torch zip checkpoint nor a legacy one"):
        load_torch_checkpoint(path)
    with pytest.raises(FileNotFoundError):
        load_torch_checkpoint(tmp_path / "missing.pth")


def test_wrong_keys_and_shapes_are_listed(tmp_path):
    state = read_weights(FIXTURES / "tiny_vgg16_zip.pth")
    model = tiny_vgg16()
    renamed = dict(state)
    renamed["features.99.weight"] = renamed.pop("features.0.weight")
    path = tmp_path / "renamed.npz"
    np.savez(path, **renamed)
    with pytest.raises(ValueError, match=r"missing: features\.0\.weight.*unexpected: features\.99\.weight"):
        load_weights(model, path)
    other = models.vgg("vgg16", width=1 / 16, hidden=16, num_classes=10)
    with pytest.raises(ValueError, match=r"mis-shaped: features\.0\.weight: expected \(4, 3, 3, 3\), "
                                         r"got \(2, 3, 3, 3\)"):
        load_weights(other, FIXTURES / "tiny_vgg16_zip.pth")
    (tmp_path / "x.h5").write_text("x")
    with pytest.raises(ValueError, match=r"expected \.npz .* or \.pth"):
        load_weights(model, tmp_path / "x.h5")


def test_convert_checks_architecture_and_writes_atomically(tmp_path, monkeypatch):
    # the tiny fixture is not a VGG-16: conversion must refuse it and leave nothing behind
    dst = tmp_path / "out.npz"
    with pytest.raises(ValueError, match="does not fit vgg16.*mis-shaped"):
        convert("vgg16", FIXTURES / "tiny_vgg16_zip.pth", dst)
    assert list(tmp_path.iterdir()) == []
    src = tmp_path / "same.npz"
    src.write_bytes(b"x")
    with pytest.raises(ValueError, match="is the input file"):
        convert("vgg16", src, src)
    assert src.read_bytes() == b"x"
    with pytest.raises(ValueError, match="unknown architecture 'vgg17'"):
        convert("vgg17", src, dst)


def test_cli_convert_errors_exit_nonzero(tmp_path):
    result = subprocess.run([sys.executable, "-m", "minicnn", "convert", "vgg16",
                             str(FIXTURES / "tiny_vgg16_zip.pth"), "-o", str(tmp_path / "v.npz")],
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert "does not fit vgg16" in result.stderr
    assert not (tmp_path / "v.npz").exists()


def test_imagenet_preprocess_and_decode(tmp_path):
    from PIL import Image

    from minicnn.imagenet import class_names, decode_predictions, preprocess
    names = class_names()
    assert len(names) == 1000 and names[652] == "military uniform" and names[921] == "book jacket"
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 256, (300, 400, 3), dtype=np.uint8))
    x = preprocess(img)
    assert x.shape == (1, 3, 224, 224) and x.dtype == np.float32
    # the same crop by hand: short side 256 -> 256x341, centre 224
    ref = np.asarray(img.resize((341, 256), Image.BILINEAR).crop((58, 16, 282, 240)), np.float32) / 255
    assert 0 <= x.min() and x.max() <= 1                   # [0, 1]: the model normalizes inside
    np.testing.assert_allclose(x[0].transpose(1, 2, 0), ref, atol=1e-6)
    grey = rng.integers(0, 256, (50, 60)).astype(np.uint8)
    rgba = Image.fromarray(np.stack([grey] * 4, -1))
    images = {"L": Image.fromarray(grey), "RGBA": rgba, "P": rgba.convert("P"),
              "I16": Image.fromarray(grey.astype(np.uint16) * 257)}
    for mode, image in images.items():
        path = tmp_path / f"img_{mode}.png"
        image.save(path)
        x = preprocess(path)
        assert x.shape == (1, 3, 224, 224)
        if mode in ("L", "I16"):          # 16-bit scaled to the same 8-bit grey
            np.testing.assert_allclose(x, preprocess(images["L"]), atol=1e-5)
    logits = np.zeros((2, 1000))
    logits[0, 652], logits[1, 1] = 10, 5
    top = decode_predictions(logits, top=3)
    assert top[0][0][:2] == (652, "military uniform") and top[1][0][:2] == (1, "goldfish")
    assert len(top[0]) == 3 and top[0][0][2] == pytest.approx(np.exp(10) / (np.exp(10) + 999))
