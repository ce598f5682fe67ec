import numpy as np
import pytest


def _optional(name):
    try:
        return __import__(name)
    except Exception:  # pragma: no cover - depends on the machine
        return None


torch = _optional("torch")
captum = _optional("captum")
sklearn = _optional("sklearn")
skimage = _optional("skimage")


def _zennit():
    """Zennit imports torchvision.models.resnet for two class names (its ResNet canonizer); the only
    torchvision on the package index is a multi-GB GPU build, so a stub with those names stands in."""
    if torch is None:
        return None
    import sys
    if "torchvision" not in sys.modules:
        # the classes of the tests' own torch ResNet (torchvision's names): Zennit's ResNet canonizer finds blocks
        # by isinstance against them, and with dummy classes it would silently skip its Sum step
        from torch_resnet import install_torchvision_stub
        install_torchvision_stub()
    return _optional("zennit")


zennit = _zennit()


def _grad_cam_reference():
    """pytorch-grad-cam (installed with --no-deps; its torchvision imports go to the stub above)."""
    if torch is None:
        return None
    return _optional("pytorch_grad_cam")


pytorch_grad_cam = _grad_cam_reference()

needs_torch = pytest.mark.skipif(torch is None, reason="PyTorch is not installed (reference tests need it: "
                                                       "pip install torch)")
needs_captum = pytest.mark.skipif(captum is None or torch is None,
                                  reason="Captum is not installed (reference tests need it: pip install captum)")
needs_zennit = pytest.mark.skipif(zennit is None, reason="Zennit is not installed (the LRP reference: "
                                                         "pip install --no-deps zennit, after torch)")
needs_grad_cam = pytest.mark.skipif(pytorch_grad_cam is None, reason="pytorch-grad-cam is not installed (the CAM "
                                    "reference: pip install --no-deps grad-cam==1.5.7 ttach opencv-python-headless)")
needs_sklearn = pytest.mark.skipif(sklearn is None, reason="scikit-learn is not installed (LIME's ridge reference: "
                                                           "pip install scikit-learn)")
needs_skimage = pytest.mark.skipif(skimage is None, reason="scikit-image is not installed (the SLIC reference: "
                                                           "pip install scikit-image)")


def away_from_kinks(rng, shape, gap=0.05):
    """Random float64 values with |v| >= gap and no two values closer than gap/10:
    keeps ReLU inputs off 0 and max-pool windows free of ties."""
    n = int(np.prod(shape))
    values = (np.arange(n) - n / 2 + 0.5) * (gap / 5)
    values = values[np.abs(values) >= gap] if n > 20 else values + np.sign(values) * gap
    values = rng.permutation(np.resize(values, n) + rng.uniform(0, gap / 20, n))
    return values.reshape(shape)


@pytest.fixture
def rng():
    return np.random.default_rng(0)



def serve(handler):
    """Yield the address of an HTTP server on 127.0.0.1 answering with ``handler`` (a
    BaseHTTPRequestHandler class), in a background thread; shut it down afterwards. For module fixtures:
    ``yield from serve(Handler)``."""
    import http.server
    import threading
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True                       # a handler stuck on a slow client does not block shutdown
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()

def pytest_sessionstart(session):
    """The commands are tested in child processes, which import the *installed* minicnn. If that is another
    checkout (an editable install made elsewhere), they would protect and read that checkout's files while the
    tests look at this one: stop with the fix instead."""
    import subprocess
    import sys
    import tempfile
    from pathlib import Path
    here = (Path(__file__).resolve().parent.parent / "minicnn").resolve()
    with tempfile.TemporaryDirectory() as outside:                 # not this folder, so sys.path cannot find it
        found = subprocess.run([sys.executable, "-c", "import minicnn, os; print(os.path.dirname(minicnn.__file__))"],
                               capture_output=True, text=True, cwd=outside)
    if found.returncode == 0 and Path(found.stdout.strip()).resolve() != here:
        pytest.exit(f"the installed minicnn is {found.stdout.strip()}, not this checkout ({here}); "
                    f"run: pip install -e \"{here.parent}[test]\"", returncode=4)
