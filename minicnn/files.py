"""Writing files so that nothing is ever half-written: a temporary file in the
same folder, then a rename (atomic on POSIX and Windows)."""
import contextlib
import os
import tempfile
from pathlib import Path


@contextlib.contextmanager
def atomic_write(path, mode="wb"):
    """``with atomic_write(path) as f: f.write(...)``: the file appears at ``path``
    complete, or not at all (an exception removes the temporary file).
    The file gets the usual permissions (0666 less the umask), not mkstemp's 0600."""
    path = Path(path)
    if not path.parent.is_dir():
        raise ValueError(f"the output folder {path.parent} does not exist")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    try:
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
