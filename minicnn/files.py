"""Writing files so that nothing is ever half-written: a temporary file in the
same folder, then a rename (atomic on POSIX and Windows)."""
import contextlib
import os
import signal
import tempfile
from pathlib import Path


def _block_signals():
    """Hold back SIGINT, SIGTERM and SIGHUP (where the platform can: POSIX) and return the previous mask."""
    names = [n for n in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, n)]
    if not hasattr(signal, "pthread_sigmask") or not names:
        return None
    return signal.pthread_sigmask(signal.SIG_BLOCK, {getattr(signal, n) for n in names})


@contextlib.contextmanager
def atomic_write(path, mode="wb"):
    """``with atomic_write(path) as f: f.write(...)``: the file appears at ``path``
    complete, or not at all (an exception removes the temporary file).
    The file gets the usual permissions (0666 less the umask), not mkstemp's 0600.

    Signals are held back while the temporary file is created, and let through
    once the cleanup is in place: a SIGTERM or Ctrl-C that lands just after the
    creation would otherwise leave the file behind."""
    path = Path(path)
    if not path.parent.is_dir():
        raise ValueError(f"the output folder {path.parent} does not exist")
    previous = _block_signals()
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    except BaseException:
        if previous is not None:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)
        raise
    try:
        if previous is not None:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)     # a pending signal arrives here, inside try
        with os.fdopen(fd, mode) as f:
            yield f
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def atomic_save_npz(path, arrays):
    """Write ``arrays`` ({name: array}) to ``path`` as .npz through a temporary file and a rename."""
    import numpy as np
    with atomic_write(path) as f:
        np.savez(f, **arrays)
