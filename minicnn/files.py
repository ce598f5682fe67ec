"""Writing files so that nothing is ever half-written: a temporary file in the
same folder, then a rename (atomic on POSIX and Windows)."""
import contextlib
import os
import secrets
from pathlib import Path


@contextlib.contextmanager
def atomic_write(path, mode="wb"):
    """``with atomic_write(path) as f: f.write(...)``: the file appears at ``path``
    complete, or not at all (an exception removes the temporary file).
    The file gets the usual permissions (0666 less the umask).

    The temporary name is chosen before the file is created, and the file is
    created inside the ``try`` whose cleanup removes it: an exception at any
    instant -- a SIGTERM turned into one, Ctrl-C -- leaves nothing behind."""
    path = Path(path)
    if not path.parent.is_dir():
        raise ValueError(f"the output folder {path.parent} does not exist")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)    # O_BINARY: Windows
    tmp = None
    try:
        for _ in range(100):                                       # a clash of random names is not expected
            tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.partial"
            try:
                fd = os.open(tmp, flags, 0o600)
                break
            except FileExistsError:
                continue
        else:
            raise FileExistsError(f"could not create a temporary file next to {path}")
        with os.fdopen(fd, mode) as f:
            yield f
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        if tmp is not None and os.path.exists(tmp):
            os.remove(tmp)
        raise


def atomic_save_npz(path, arrays):
    """Write ``arrays`` ({name: array}) to ``path`` as .npz through a temporary file and a rename."""
    import numpy as np
    with atomic_write(path) as f:
        np.savez(f, **arrays)
