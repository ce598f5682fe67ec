"""Weights on this machine: read a ``.npz`` or ``.pth`` file into a model, and save one.

Getting torchvision's files from the internet is ``minicnn.hub``'s job.
"""
from pathlib import Path

import numpy as np

from .checkpoint import load_torch_checkpoint
from .files import atomic_save_npz


def read_weights(path):
    """{name: array} from a ``.npz`` (minicnn) or ``.pth``/``.pt`` (torch.save) file."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no weights file at {path}")
    if path.suffix == ".npz":
        try:
            check_npz(path)
            with np.load(path, allow_pickle=False) as data:
                return {k: data[k] for k in data.files}
        except MemoryError as e:
            raise ValueError(f"{path}: not a readable .npz weights file (it needs more memory than there is)") from e
        except Exception as e:                 # zip, zlib, header and size errors of a truncated or forged file
            raise ValueError(f"{path}: not a readable .npz weights file ({type(e).__name__}: {e!s:.200})") from e
    if path.suffix in (".pth", ".pt"):
        return load_torch_checkpoint(path)
    raise ValueError(f"{path}: unknown weights format {path.suffix!r}; expected .npz (minicnn) or .pth/.pt (torch.save)")


def check_npz(path):
    """Refuse, before NumPy allocates anything, an .npz whose members declare more data than they hold
    (a 16-byte member can declare a terabyte array), are encrypted, or use an unknown compression."""
    import zipfile
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            if info.flag_bits & 0x1 or info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                raise ValueError(f"member {info.filename} is encrypted or uses compression method "
                                 f"{info.compress_type}; np.savez writes neither")
            with archive.open(info) as member:
                version = np.lib.format.read_magic(member)
                read_header = {(1, 0): np.lib.format.read_array_header_1_0,
                               (2, 0): np.lib.format.read_array_header_2_0}.get(version)
                if read_header is None:
                    raise ValueError(f"member {info.filename}: .npy format version {version} is not supported")
                shape, _, dtype = read_header(member)
            if dtype.hasobject:
                raise ValueError(f"member {info.filename} holds Python objects; weights are numbers")
            declared = int(np.prod(shape, dtype=object)) * dtype.itemsize
            if declared > info.file_size:
                raise ValueError(f"member {info.filename} declares {declared} bytes but holds {info.file_size}")


def load_weights(model, path):
    """Load a ``.npz`` or ``.pth`` file into ``model`` (strict: every key and shape must fit).

    The error lists every missing, unexpected and mis-shaped entry. Returns the model.
    """
    try:
        return model.load_state_dict(read_weights(path), strict=True)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None


def save_weights(model, path):
    """Write ``model.state_dict()`` to ``path`` (.npz), atomically. Returns the path."""
    path = Path(path)
    if path.suffix != ".npz":
        raise ValueError(f"weights are saved as .npz; got {path}")
    atomic_save_npz(path, model.state_dict())
    return path
