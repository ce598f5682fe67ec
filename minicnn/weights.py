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
            with np.load(path, allow_pickle=False) as data:
                return {k: data[k] for k in data.files}
        except (ValueError, OSError, EOFError) as e:
            raise ValueError(f"{path}: not a readable .npz weights file ({e})") from e
    if path.suffix in (".pth", ".pt"):
        return load_torch_checkpoint(path)
    raise ValueError(f"{path}: unknown weights format {path.suffix!r}; expected .npz (minicnn) or .pth/.pt (torch.save)")


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
