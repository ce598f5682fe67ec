"""torchvision's weights: where they are cached, how they are downloaded and
verified, and how a ``.pth`` becomes a minicnn ``.npz`` -- all without PyTorch.

    python -m minicnn download vgg16     ->  download("vgg16")      (or resnet18, resnet50, ...)
    python -m minicnn convert resnet50 SRC.pth -o DST.npz
    model = minicnn.hub.pretrained("resnet50")

Model constructors (``minicnn.models``) never reach for the network or the
cache; this module sits above them.
"""
import contextlib
import hashlib
import http.client
import os
import re
import signal
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from .files import atomic_save_npz, atomic_write
from .models import ARCHITECTURES
from .weights import load_weights, read_weights

TORCHVISION_BASE_URL = "https://download.pytorch.org/models"
# torchvision's file names; the 8 hex digits are the start of the file's SHA-256.
TORCHVISION_FILES = {
    "vgg11": "vgg11-8a719046.pth",
    "vgg13": "vgg13-19584684.pth",
    "vgg16": "vgg16-397923af.pth",
    "vgg19": "vgg19-dcbb9e9d.pth",
    "resnet18": "resnet18-f37072fd.pth",
    "resnet34": "resnet34-b627a593.pth",
    "resnet50": "resnet50-0676ba61.pth",          # V1 weights (resize 256, crop 224), as the others
    "resnet101": "resnet101-63fe2227.pth",
    "resnet152": "resnet152-394f9c45.pth",
}


def cache_dir():
    """Where downloaded weights go: $MINICNN_HOME, else $XDG_CACHE_HOME/minicnn, else ~/.cache/minicnn."""
    if os.environ.get("MINICNN_HOME"):
        return Path(os.environ["MINICNN_HOME"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "minicnn"


def protected_files():
    """Weights files no command may replace by accident: the ones shipped in the package, and every
    torchvision file (.pth) and its conversion (.npz) in the cache."""
    from importlib import resources

    from .models import SHAPES_RESNET_WEIGHTS, SHAPES_WEIGHTS
    shipped = [Path(str(resources.files("minicnn").joinpath(w))) for w in (SHAPES_WEIGHTS, SHAPES_RESNET_WEIGHTS)]
    names = {n for f in TORCHVISION_FILES.values() for n in (f, f.replace(".pth", ".npz"))}
    return shipped + [cache_dir() / n for n in sorted(names) if (cache_dir() / n).exists()]


def converted_path(arch):
    return cache_dir() / TORCHVISION_FILES[arch].replace(".pth", ".npz")


def cached_weights(arch):
    """The converted weights of ``arch`` in the cache; FileNotFoundError saying how to get them."""
    path = converted_path(arch)
    if not path.exists():
        raise FileNotFoundError(f"no converted {arch} weights at {path}. Run:  python -m minicnn download {arch}"
                                f"  (or, with the .pth obtained elsewhere:  python -m minicnn convert {arch} "
                                f"FILE.pth -o {path})")
    return path


def pretrained(arch):
    """``arch`` (e.g. "vgg16") with torchvision's ImageNet weights from the cache.

    Raises FileNotFoundError saying how to get them (``python -m minicnn download vgg16``)."""
    if arch not in TORCHVISION_FILES:
        raise ValueError(f"no pretrained weights for {arch!r}; choose from {', '.join(TORCHVISION_FILES)}")
    return load_weights(ARCHITECTURES[arch](init=False), cached_weights(arch))


def convert(arch, src, dst):
    """Check a torchvision checkpoint against ``arch`` (every key and shape), then write it as ``.npz``."""
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}; choose from {', '.join(ARCHITECTURES)}")
    src, dst = Path(src), Path(dst)
    if dst.suffix != ".npz":
        raise ValueError(f"the output must end in .npz, got {dst}")
    if dst.exists() and src.exists() and dst.resolve() == src.resolve():
        raise ValueError(f"the output {dst} is the input file; choose another name")
    if not dst.parent.is_dir():
        raise ValueError(f"the output folder {dst.parent} does not exist")
    state = read_weights(src)
    model = ARCHITECTURES[arch](init=False)           # zeros, never touched: the file's weights replace them
    try:
        model.load_state_dict(state, strict=True)
    except ValueError as e:
        raise ValueError(f"{src} does not fit {arch}: {e}") from None
    atomic_save_npz(dst, model.state_dict())
    return dst


class ChecksumError(ValueError):
    """A downloaded file's SHA-256 does not start with the prefix in its name."""


def sha256_of(path, chunk=1 << 20):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def writable_folder(folder):
    """Create ``folder`` if needed and check that files can be written there; ValueError saying what is wrong
    (a file where the folder should be, a read-only place) before any byte is downloaded."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"the cache {folder} is a file, not a folder (check MINICNN_HOME or --cache-dir)")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ValueError(f"cannot create the cache folder {folder}: {e.strerror or e} (set MINICNN_HOME or "
                         f"--cache-dir to a writable folder)") from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ValueError(f"the cache folder {folder} is not writable (set MINICNN_HOME or --cache-dir to a writable "
                         f"folder)")
    return folder


class Interrupted(BaseException):
    """SIGTERM or SIGHUP arrived during a download (raised so that the temporary file is removed)."""

    def __init__(self, signum):
        super().__init__(f"interrupted by signal {signum}; the partial download was removed")
        self.signum = signum


@contextlib.contextmanager
def cleanup_on_signals():
    """Turn SIGTERM and SIGHUP (where the platform has them) into an exception while the block runs, so that
    ``atomic_write`` removes its temporary file; the previous handlers come back afterwards. Only the main
    thread may set handlers; elsewhere the block runs as it is."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    def handler(signum, frame):
        raise Interrupted(signum)
    previous = {}
    for name in ("SIGTERM", "SIGHUP"):
        if hasattr(signal, name):
            previous[name] = signal.signal(getattr(signal, name), handler)
    try:
        yield
    finally:
        for name, old in previous.items():
            signal.signal(getattr(signal, name), old)


def remove_stale_partials(dest_dir, name, older_than=3600):
    """Remove temporary files of earlier downloads of ``name`` that were killed before they could clean up
    (SIGKILL, a power cut); recent ones may belong to a download running right now."""
    now = time.time()
    for stale in Path(dest_dir).glob(f".{name}.*.partial"):
        with contextlib.suppress(OSError):
            if now - stale.stat().st_mtime > older_than:
                stale.unlink()


def fetch(url, dest_dir, progress=sys.stderr, timeout=60, deadline=3 * 3600, chunk=1 << 20):
    """Download ``url`` into ``dest_dir``; returns the file's path.

    If the file name carries a SHA-256 prefix (``name-<hex>.ext``, as
    torchvision's do), the download is verified against it. The bytes go to a
    temporary file that is renamed only once complete and verified, so an
    interrupted or wrong download leaves nothing behind (SIGTERM and SIGHUP
    included). Progress goes to ``progress`` (None for silence). An existing
    file is not downloaded again. ``timeout``: seconds one read may wait;
    ``deadline``: seconds the whole download may take (a server that trickles
    a few bytes a second would otherwise never finish).
    """
    dest_dir = writable_folder(dest_dir)
    name = url.rstrip("/").rsplit("/", 1)[-1]
    dest = dest_dir / name
    match = re.search(r"-([0-9a-f]{8,64})\.", name)
    expected = match.group(1) if match else None
    if dest.exists():
        if expected:
            got = sha256_of(dest)
            if not got.startswith(expected):
                raise ChecksumError(f"{dest} is already there but its SHA-256 is {got}, expected one starting "
                                    f"with {expected}; remove it and download again")
        return dest
    remove_stale_partials(dest_dir, name)
    digest, done = hashlib.sha256(), 0
    start = time.monotonic()
    try:
        with cleanup_on_signals(), atomic_write(dest) as f, urllib.request.urlopen(url, timeout=timeout) as response:
            total = int(response.headers.get("Content-Length") or 0)
            while True:
                if time.monotonic() - start > deadline:
                    raise ConnectionError(f"the download took longer than {deadline:.0f} s ({done} bytes so far); "
                                          f"the server is too slow, try again later")
                block = response.read1(chunk) if hasattr(response, "read1") else response.read(chunk)
                if not block:
                    break
                f.write(block)
                digest.update(block)
                done += len(block)
                if progress is not None:
                    share = f" {100 * done / total:5.1f}% of {total / 1e6:.1f} MB" if total else ""
                    print(f"\r{name}: {done / 1e6:.1f} MB{share}", end="", file=progress, flush=True)
            if progress is not None:
                print(file=progress)
            if total and done != total:
                raise ConnectionError(f"the connection closed after {done} of {total} bytes")
            got = digest.hexdigest()
            if expected and not got.startswith(expected):
                raise ChecksumError(f"{name}: checksum mismatch: expected a SHA-256 starting with {expected}, "
                                    f"got {got}; the download was discarded")
        return dest
    except urllib.error.HTTPError as e:
        raise ConnectionError(f"{url}: HTTP {e.code} {e.reason}") from e
    except http.client.IncompleteRead as e:
        raise ConnectionError(f"the connection closed after {done + len(e.partial)} bytes, in the middle of the "
                              f"body; try again") from e
    except http.client.HTTPException as e:
        raise ConnectionError(f"could not download {url}: the server's answer is broken ({type(e).__name__})") from e
    except (urllib.error.URLError, OSError) as e:
        raise ConnectionError(f"could not download {url}: {getattr(e, 'reason', e)}") from e


def download(arch, base_url=TORCHVISION_BASE_URL, dest_dir=None, progress=sys.stderr, timeout=60,
             deadline=3 * 3600):
    """Fetch torchvision's ``arch`` weights into the cache, verify them, convert to .npz; returns the .npz path.

    A ``.pth`` already in the cache (put there by hand, say) is used as it is. timeout, deadline: see ``fetch``.
    """
    if arch not in TORCHVISION_FILES:
        raise ValueError(f"unknown architecture {arch!r}; choose from {', '.join(TORCHVISION_FILES)}")
    dest_dir = writable_folder(dest_dir if dest_dir is not None else cache_dir())
    with cleanup_on_signals():
        pth = fetch(f"{base_url.rstrip('/')}/{TORCHVISION_FILES[arch]}", dest_dir, progress=progress,
                    timeout=timeout, deadline=deadline)
        npz = dest_dir / TORCHVISION_FILES[arch].replace(".pth", ".npz")
        if not npz.exists():
            if progress is not None:
                print(f"converting {pth.name} -> {npz.name}", file=progress)
            convert(arch, pth, npz)
    return npz


def manual_steps(arch, base_url=TORCHVISION_BASE_URL, dest_dir=None):
    dest_dir = Path(dest_dir) if dest_dir is not None else cache_dir()
    name = TORCHVISION_FILES[arch]
    return (f"To install the weights by hand:\n"
            f"  1. on a machine with internet, download {base_url.rstrip('/')}/{name}\n"
            f"  2. copy it to {dest_dir / name}\n"
            f"  3. run:  python -m minicnn download {arch}   (it finds the file, verifies and converts it)\n"
            f"Or set MINICNN_HOME to the folder that holds the file.")
