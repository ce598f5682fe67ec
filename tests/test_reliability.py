"""Issue 12: misuse of the commands and the API, the download's failure modes, and students' code that exits,
crashes or hangs in the grader. (Hostile checkpoint files: tests/test_hostile_files.py.)"""
import http.server
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import attribution as attr
import minicnn as mc
from attribution.grade import grade
from minicnn.hub import download, fetch
from minicnn.imagenet import preprocess

from conftest import serve

from nets import small_vgg

ROOT = Path(__file__).resolve().parent.parent
SOLUTIONS = Path(__file__).parent / "solutions"
ENV = dict(os.environ, MPLBACKEND="Agg")


def run(*args, cwd=None, module="attribution"):
    return subprocess.run([sys.executable, "-m", module, *map(str, args)], capture_output=True, text=True, env=ENV,
                          cwd=cwd, timeout=300)


@pytest.fixture
def image(tmp_path):
    path = tmp_path / "img.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(path)
    return path


# --------------------------------------------------------------------------
# The commands: refuse before any work, never overwrite an input
# --------------------------------------------------------------------------

def _weights(tmp_path):
    from minicnn.models import shapes_net
    path = tmp_path / "m.npz"
    mc.save_weights(shapes_net(pretrained=True), path)
    return path


@pytest.mark.parametrize("args,message", [
    (["explain", "IMG", "--model", "MODEL", "--save-maps", "MODEL"], "is one of the input images or the --model file"),
    (["explain", "IMG", "--model", "MODEL", "--out", "MODEL"], "must end in one of"),
    (["explain", "IMG", "--save-maps", "IMG"], "must end in one of .npz"),
    (["explain", "IMG", "--save-maps", "SHIPPED"], "is a weights file"),
    (["explain", "IMG", "--save-maps", "SHIPPED_RESNET"], "is a weights file"),
    (["explain", "IMG", "--out", "FOLDER"], "is a folder"),
    (["explain", "IMG", "--target", "\u0663"], "unknown class"),          # an Arabic-Indic three: not an index
    (["evaluate", "--n", "1"], "--n must be at least 2 images, got 1"),
    (["evaluate", "--n", "-3"], "--n must be at least 2 images, got -3"),
    (["evaluate", "--out", "IMG"], "exists and is not a folder"),
    (["demo", "--out", "FOLDER"], "is a folder"),
])
def test_commands_refuse_before_any_work(tmp_path, image, args, message):
    from importlib import resources
    model = _weights(tmp_path)
    (tmp_path / "folder.png").mkdir()
    shipped = Path(str(resources.files("minicnn").joinpath("assets/shapes_net.npz")))
    shipped_resnet = Path(str(resources.files("minicnn").joinpath("assets/shapes_resnet.npz")))
    shipped_bytes, resnet_bytes = shipped.read_bytes(), shipped_resnet.read_bytes()
    subs = {"IMG": str(image), "MODEL": str(model), "FOLDER": str(tmp_path / "folder.png"), "SHIPPED": str(shipped),
            "SHIPPED_RESNET": str(shipped_resnet)}
    before = {p: p.read_bytes() for p in (image, model)}
    listing = sorted(p.name for p in tmp_path.iterdir())
    result = run(*[subs.get(a, a) for a in args], cwd=tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert {p: p.read_bytes() for p in before} == before                       # no input touched
    assert sorted(p.name for p in tmp_path.iterdir()) == listing               # nothing written
    assert shipped.read_bytes() == shipped_bytes and shipped_resnet.read_bytes() == resnet_bytes


def test_an_extreme_aspect_ratio_is_refused_before_resizing(tmp_path):
    thin = tmp_path / "thin.png"
    Image.fromarray(np.zeros((1, 100000), dtype=np.uint8)).save(thin)
    with pytest.raises(ValueError, match="aspect ratio beyond 16:1"):
        preprocess(thin)
    result = run("explain", thin, "--out", tmp_path / "x.png")
    assert result.returncode == 2 and "aspect ratio" in result.stderr and "Traceback" not in result.stderr


def test_sixteen_bit_images_are_read_in_float32():
    from minicnn.imagenet import load_image
    grey = (np.arange(64 * 64, dtype=np.uint16).reshape(64, 64) * 16)
    img = load_image(Image.fromarray(grey))
    assert img.mode == "RGB" and np.asarray(img).max() == round(grey.max() / 65535 * 255)


# --------------------------------------------------------------------------
# The API
# --------------------------------------------------------------------------

@pytest.mark.parametrize("call", [
    lambda m, x: attr.integrated_gradients(m, x, 0, batch_size=0),
    lambda m, x: attr.integrated_gradients(m, x, 0, batch_size=-2),
    lambda m, x: attr.occlusion(m, x, 0, window=4, stride=4, batch_size=0),
    lambda m, x: attr.smoothgrad(attr.vanilla_gradient, m, x, 0, batch_size=0),
    lambda m, x: attr.smoothgrad(attr.vanilla_gradient, m, x, 0, n_samples=-1),
])
def test_non_positive_batch_sizes_raise(call):
    model, x = small_vgg(), np.random.default_rng(0).uniform(0, 1, (1, 3, 16, 16))
    with pytest.raises(ValueError, match="must be an int >= 1"):
        call(model, x)


def test_the_same_layer_twice_is_refused():
    relu = mc.ReLU()
    with pytest.raises(ValueError, match="the same ReLU object is used twice, as 1 and 3; create a new layer"):
        mc.Sequential(mc.Conv2d(3, 4, 3), relu, mc.Conv2d(4, 4, 3), relu)
    conv = mc.Conv2d(3, 3, 3, padding=1)
    with pytest.raises(ValueError, match="used twice"):
        mc.Sequential({"a": mc.Sequential(conv), "b": mc.Sequential(conv)})
    model = mc.Sequential(mc.Conv2d(3, 4, 3), mc.ReLU())
    with pytest.raises(ValueError, match="used twice"):
        model.replace("1", model["0"])
    assert isinstance(model["1"], mc.ReLU)                                   # left as it was


def test_overflowing_logits_raise_instead_of_nan_maps():
    model = small_vgg(dtype=np.float32)
    x = np.full((1, 3, 16, 16), 3e38, dtype=np.float32)
    for method in (attr.vanilla_gradient, attr.grad_cam, attr.deeplift, attr.lrp):
        with np.errstate(all="ignore"), pytest.raises(ValueError, match="not finite \\(it overflowed\\)"):
            method(model, x)


# --------------------------------------------------------------------------
# The download
# --------------------------------------------------------------------------

PAYLOAD = bytes(range(256)) * 64


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        if self.path.startswith("/slow"):                   # 16 KB, a few bytes at a time
            self.send_response(200)
            self.send_header("Content-Length", str(len(PAYLOAD)))
            self.end_headers()
            for i in range(0, len(PAYLOAD), 4):
                self.wfile.write(PAYLOAD[i:i + 4])
                self.wfile.flush()
                time.sleep(0.05)
        elif self.path.startswith("/chunked"):              # a chunked body cut in the middle of a chunk
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self.wfile.write(b"4000\r\n" + PAYLOAD[:100])
            self.wfile.flush()
            self.connection.close()
        else:
            self.send_error(404)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server():
    yield from serve(Handler)


def test_a_trickling_server_meets_the_deadline(server, tmp_path):
    start = time.monotonic()
    with pytest.raises(ConnectionError, match="took longer than 1 s"):
        fetch(f"{server}/slow.pth", tmp_path, progress=None, timeout=5, deadline=1)
    assert time.monotonic() - start < 10
    assert list(tmp_path.iterdir()) == []


def test_a_chunked_body_cut_midway_is_a_connection_error(server, tmp_path):
    with pytest.raises(ConnectionError, match="closed after 100 bytes|in the middle"):
        fetch(f"{server}/chunked.pth", tmp_path, progress=None)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root ignores folder permissions")
def test_a_read_only_cache_is_named(tmp_path):
    cache = tmp_path / "ro"
    cache.mkdir()
    cache.chmod(0o500)
    try:
        with pytest.raises(ValueError, match="is not writable"):
            download("vgg16", base_url="http://127.0.0.1:9", dest_dir=cache, progress=None)
    finally:
        cache.chmod(0o700)


def test_a_cache_that_is_a_file_is_named(tmp_path):
    home = tmp_path / "home"
    home.write_text("not a folder")
    env = dict(ENV, MINICNN_HOME=str(home))
    result = subprocess.run([sys.executable, "-m", "minicnn", "download", "vgg16", "--base-url",
                             "http://127.0.0.1:9"], capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 2
    assert "is a file, not a folder" in result.stderr and "Traceback" not in result.stderr
    assert "unreachable" not in result.stderr


@pytest.mark.skipif(not hasattr(signal, "SIGTERM") or os.name != "posix", reason="sends SIGTERM to a child")
@pytest.mark.parametrize("signame", ["SIGTERM", "SIGHUP"])
def test_a_signal_during_the_download_leaves_no_partial_file(server, tmp_path, signame):
    child = subprocess.Popen([sys.executable, "-c", f"from minicnn.hub import fetch; fetch('{server}/slow.pth', "
                              f"{str(tmp_path)!r}, progress=None)"], stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while not list(tmp_path.glob("*.partial")) and time.monotonic() < deadline:   # the download has begun
        time.sleep(0.05)
    assert list(tmp_path.glob("*.partial")), "the download did not start"
    child.send_signal(getattr(signal, signame))
    child.wait(30)
    assert list(tmp_path.iterdir()) == [], list(tmp_path.iterdir())
    assert "interrupted by signal" in child.stderr.read()


def test_stale_partial_files_are_removed(tmp_path):
    from minicnn.hub import remove_stale_partials
    old = tmp_path / ".vgg16-397923af.pth.abc123.partial"
    new = tmp_path / ".vgg16-397923af.pth.def456.partial"
    old.write_bytes(b"x")
    new.write_bytes(b"x")
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    remove_stale_partials(tmp_path, "vgg16-397923af.pth")
    assert not old.exists() and new.exists()                     # a recent one may be a running download


# --------------------------------------------------------------------------
# The grader: students' code may exit, crash or hang; the report always prints
# --------------------------------------------------------------------------

def _grade_with(tmp_path, old, new, timeout=5, assignment="relu_maxpool", file="a_relu_maxpool.py"):
    source = (SOLUTIONS / file).read_text()
    assert old in source
    path = tmp_path / file
    path.write_text(source.replace(old, new, 1))
    result = subprocess.run([sys.executable, "-m", "attribution.grade", assignment, str(path), "--timeout",
                             str(timeout)], capture_output=True, text=True, timeout=120)
    return result


GUIDED = "def relu_backward_guided(dout, x):\n"


@pytest.mark.parametrize("body,words", [
    ("    import sys; sys.exit(0)\n", "calls sys.exit(0)"),
    ("    raise SystemExit(0)\n", "calls sys.exit(0)"),
    ("    import os; os._exit(0)\n", "ended the grading process (exit status 0"),
    ("    import os; os.abort()\n", "ended the grading process"),
    ("    while True: pass\n", "still running after the function's 3 s"),
    ("    import time; time.sleep(1000)\n", "still running after the function's 3 s"),
    ("    raise KeyboardInterrupt\n", "KeyboardInterrupt"),
])
def test_a_function_that_exits_crashes_or_hangs_gets_zero_and_the_report_prints(tmp_path, body, words):
    result = _grade_with(tmp_path, GUIDED, GUIDED + body, timeout=3)
    assert result.returncode == 1, result.stdout + result.stderr
    line = next(row for row in result.stdout.splitlines() if row.startswith("relu_backward_guided"))
    assert line.split()[1].startswith("0/") and words in line, result.stdout
    for other in ("relu_backward_gradient", "relu_backward_deconvnet", "maxpool_backward"):   # still graded
        row = next(r for r in result.stdout.splitlines() if r.startswith(other))
        assert "ok" in row, result.stdout
    assert "total" in result.stdout


@pytest.mark.parametrize("top,words", [
    ("import sys\nsys.exit(0)\n", "cannot be imported: SystemExit"),
    ("raise ImportError('no module named numpyy')\n", "cannot be imported: ImportError"),
    ("import os\nos._exit(0)\n", "ended the grading process"),
    ("def broken(:\n", "cannot be imported: SyntaxError"),
])
def test_a_file_that_exits_or_fails_on_import_gets_zero_everywhere(tmp_path, top, words):
    path = tmp_path / "student.py"
    path.write_text(top + (SOLUTIONS / "a_relu_maxpool.py").read_text())
    result = subprocess.run([sys.executable, "-m", "attribution.grade", "relu_maxpool", str(path)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1, result.stdout + result.stderr
    rows = [r for r in result.stdout.splitlines() if r.startswith(("relu_", "maxpool"))]
    assert len(rows) == 4 and all(r.split()[1].startswith("0/") for r in rows), result.stdout
    assert words in result.stdout


def test_exit_status_zero_only_for_full_marks(tmp_path):
    full = subprocess.run([sys.executable, "-m", "attribution.grade", "relu_maxpool",
                           str(SOLUTIONS / "a_relu_maxpool.py")], capture_output=True, text=True, timeout=120)
    assert full.returncode == 0
    missing = subprocess.run([sys.executable, "-m", "attribution.grade", "relu_maxpool", str(tmp_path / "none.py")],
                             capture_output=True, text=True, timeout=120)
    assert missing.returncode == 2 and "no file at" in missing.stderr


def test_grading_in_process_api_reports_the_same(tmp_path):
    import io
    out = io.StringIO()
    report = grade("relu_maxpool", SOLUTIONS / "a_relu_maxpool.py", out=out)
    assert all(p == t and e is None for p, t, e in report.values()), out.getvalue()


@pytest.mark.skipif(not hasattr(signal, "SIGTERM") or os.name != "posix", reason="sends SIGTERM to itself")
def test_a_signal_right_after_the_temporary_file_is_created_leaves_nothing(tmp_path, monkeypatch):
    """The race a CI dry run hit: SIGTERM lands the instant the temporary file exists. atomic_write names the
    file before creating it, inside the try that removes it, so no instant is left uncovered."""
    import minicnn.files as files
    real = os.open

    def open_then_signal(*args, **kwargs):
        fd = real(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGTERM)            # the Python handler runs at the next instruction
        return fd

    class Stop(BaseException):
        pass

    def handler(signum, frame):
        raise Stop()
    previous = signal.signal(signal.SIGTERM, handler)
    monkeypatch.setattr(files.os, "open", open_then_signal)
    try:
        with pytest.raises(Stop):
            with files.atomic_write(tmp_path / "out.bin") as f:
                f.write(b"data")
    finally:
        monkeypatch.undo()
        signal.signal(signal.SIGTERM, previous)
    assert list(tmp_path.iterdir()) == []
