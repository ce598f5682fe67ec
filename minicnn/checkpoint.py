"""Read PyTorch ``.pth`` state dicts without PyTorch.

``torch.save`` writes one of two formats:

- the zip format (torch >= 1.6): an archive with one top folder holding
  ``data.pkl`` (the pickled dict), ``byteorder`` and ``data/<key>``, the raw
  bytes of each storage;
- the legacy format (before 1.6; torchvision's ``vgg16-397923af.pth``):
  consecutive pickles -- a magic number, the protocol version 1001, a
  sys-info dict, the object, the list of storage keys -- then, for each
  storage in that order, an 8-byte little-endian element count and its bytes.

In both, the pickle refers to storages by "persistent id" and rebuilds
tensors with ``torch._utils._rebuild_tensor_v2(storage, offset, size,
stride, ...)``. A pickle can call any function it names, so the unpickler
here allows only the handful of names a state dict needs and refuses all
others before anything runs.
"""
import io
import pickle
import struct
import zipfile

import numpy as np

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001

STORAGE_DTYPES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "BFloat16Storage": np.uint16,  # stored as raw 16-bit words, widened to float32 below
    "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16, "CharStorage": np.int8,
    "ByteStorage": np.uint8, "BoolStorage": np.bool_,
}


class CheckpointError(ValueError):
    """The file is not a readable PyTorch state dict (truncated, corrupt, hostile or of another kind)."""


class _Storage:
    """A storage named in the pickle; its bytes are attached once they are read."""

    def __init__(self, type_name, key, numel):
        self.type_name, self.key, self.numel = type_name, key, int(numel)
        self.array = None


class _TensorRef:
    """A tensor as the pickle describes it: a strided view into a storage."""

    def __init__(self, storage, offset, size, stride):
        self.storage, self.offset, self.size, self.stride = storage, int(offset), tuple(size), tuple(stride)

    def to_numpy(self):
        flat = self.storage.array
        if flat is None:
            raise CheckpointError(f"storage {self.storage.key!r} has no data in the file")
        if any(s < 0 for s in self.stride):
            raise CheckpointError(f"negative stride {self.stride} in storage {self.storage.key!r}")
        if all(self.size):
            last = self.offset + sum((n - 1) * s for n, s in zip(self.size, self.stride))
            if self.offset < 0 or last >= flat.size:
                raise CheckpointError(f"a tensor of size {self.size} reaches past the end of storage "
                                      f"{self.storage.key!r} ({flat.size} elements): the file is corrupt")
        view = np.lib.stride_tricks.as_strided(flat[self.offset:], self.size,
                                               [s * flat.itemsize for s in self.stride], writeable=False)
        array = np.array(view)                                    # contiguous copy
        if self.storage.type_name == "BFloat16Storage":           # bfloat16 = top half of a float32
            array = (array.astype(np.uint32) << 16).view(np.float32)
        return array


def _rebuild_tensor(storage, offset, size, stride, *unused):
    return _TensorRef(storage, offset, size, stride)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None, *unused):
    return data


def _ordered_dict(*args):
    import collections
    return collections.OrderedDict(*args)


class _StorageType:
    def __init__(self, name):
        self.name = name


# Every global a state dict may name, and what stands in for it here.
ALLOWED_GLOBALS = {
    ("collections", "OrderedDict"): _ordered_dict,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    **{("torch", name): _StorageType(name) for name in STORAGE_DTYPES},
}


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file, storages):
        super().__init__(file)
        self.storages = storages                  # key -> _Storage, filled by persistent_load

    def find_class(self, module, name):
        if (module, name) not in ALLOWED_GLOBALS:
            raise CheckpointError(f"refused to load the global {module}.{name}: a state dict needs only "
                                  f"tensors and dicts, and this file asks for something else (it was not run)")
        return ALLOWED_GLOBALS[(module, name)]

    def persistent_load(self, pid):
        # ('storage', storage type, key, location, numel[, view metadata (legacy)])
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"
                and isinstance(pid[1], _StorageType)):
            raise CheckpointError(f"unsupported persistent id {pid!r:.80}")
        _, storage_type, key, _location, numel = pid[:5]
        storage = self.storages.get(key)
        if storage is None:
            storage = self.storages[key] = _Storage(storage_type.name, key, numel)
        if len(pid) > 5 and pid[5] is not None:   # legacy view: (view key, offset, size) into the root storage
            _view_key, view_offset, view_size = pid[5]
            return _View(storage, view_offset, view_size)
        return storage


class _View(_Storage):
    """A legacy storage view: elements [offset, offset+size) of a root storage."""

    def __init__(self, root, offset, size):
        self.root, self.view_offset, self.view_size = root, int(offset), int(size)
        self.type_name, self.key, self.numel = root.type_name, root.key, int(size)

    @property
    def array(self):
        if self.root.array is None:
            return None
        return self.root.array[self.view_offset:self.view_offset + self.view_size]


def _unpickle(file, storages=None):
    try:
        return _RestrictedUnpickler(file, {} if storages is None else storages).load()
    except CheckpointError:
        raise
    except EOFError as e:
        raise CheckpointError("the file ends in the middle of a pickle: it is truncated") from e
    except Exception as e:
        raise CheckpointError(f"the pickle inside is corrupt ({type(e).__name__}: {e})") from e


def _materialize(obj):
    """Replace every _TensorRef in a (nested) dict by a NumPy array."""
    if isinstance(obj, _TensorRef):
        return obj.to_numpy()
    if isinstance(obj, dict):
        return {k: _materialize(v) for k, v in obj.items()}
    return obj


def _read_zip(path):
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile as e:
        raise CheckpointError(f"{path}: a zip archive that is truncated or corrupt ({e})") from e
    with archive:
        names = archive.namelist()
        pkl = [n for n in names if n.endswith("data.pkl") and n.count("/") == 1]
        if not pkl:
            raise CheckpointError(f"{path}: a zip archive without <folder>/data.pkl: not a torch.save file")
        top = pkl[0].split("/")[0]
        if f"{top}/byteorder" in names and archive.read(f"{top}/byteorder").strip() != b"little":
            raise CheckpointError(f"{path}: big-endian checkpoints are not supported")
        storages = {}
        try:
            obj = _unpickle(io.BytesIO(archive.read(pkl[0])), storages)
            for key, storage in storages.items():
                raw = archive.read(f"{top}/data/{key}")
                dtype = np.dtype(STORAGE_DTYPES[storage.type_name])
                if len(raw) < storage.numel * dtype.itemsize:
                    raise CheckpointError(f"{path}: storage {key} holds {len(raw)} bytes, "
                                          f"expected {storage.numel * dtype.itemsize}")
                storage.array = np.frombuffer(raw, dtype=dtype, count=storage.numel)
        except KeyError as e:
            raise CheckpointError(f"{path}: the archive lacks {e}: the file is incomplete") from e
        except (zipfile.BadZipFile, EOFError, OSError) as e:
            raise CheckpointError(f"{path}: a zip archive that is truncated or corrupt ({e})") from e
        return _materialize(obj)


def _read_legacy(path):
    with open(path, "rb") as f:
        if _unpickle(f) != LEGACY_MAGIC:
            raise CheckpointError(f"{path}: wrong magic number: not a PyTorch checkpoint")
        if _unpickle(f) != LEGACY_PROTOCOL:
            raise CheckpointError(f"{path}: unsupported legacy protocol version")
        sys_info = _unpickle(f)
        if isinstance(sys_info, dict) and not sys_info.get("little_endian", True):
            raise CheckpointError(f"{path}: big-endian checkpoints are not supported")
        storages = {}
        obj = _unpickle(f, storages)
        keys = _unpickle(f)
        if not isinstance(keys, list):
            raise CheckpointError(f"{path}: the storage key list is corrupt")
        for key in keys:
            storage = storages.get(key)
            if storage is None:
                raise CheckpointError(f"{path}: the file lists storage {key!r} that no tensor uses")
            header = f.read(8)
            if len(header) < 8:
                raise CheckpointError(f"{path}: the file ends before storage {key!r}: it is truncated")
            (numel,) = struct.unpack("<q", header)
            if numel != storage.numel:
                raise CheckpointError(f"{path}: storage {key!r} has {numel} elements, the pickle says "
                                      f"{storage.numel}: the file is corrupt")
            array = np.empty(numel, dtype=STORAGE_DTYPES[storage.type_name])
            if f.readinto(memoryview(array).cast("B")) != array.nbytes:
                raise CheckpointError(f"{path}: the file ends inside storage {key!r}: it is truncated")
            storage.array = array
        return _materialize(obj)


def load_torch_checkpoint(path):
    """Read a ``torch.save``-d state dict -> ``{name: np.ndarray}``, without PyTorch.

    Both formats (zip and legacy) are read. A file holding
    ``{"state_dict": {...}}`` is unwrapped. Raises FileNotFoundError for a
    missing file and CheckpointError (a ValueError) for anything that is not a
    readable state dict: wrong magic, truncated, corrupt, or a pickle that
    names a global outside the allowed few (refused, never executed).
    """
    path = str(path)
    with open(path, "rb") as f:
        head = f.read(4)
    if head.startswith(b"PK"):
        obj = _read_zip(path)
    elif head[:1] == b"\x80":
        obj = _read_legacy(path)
    else:
        raise CheckpointError(f"{path}: neither a torch zip checkpoint nor a legacy one (it starts with "
                              f"{head!r}); expected a file written by torch.save")
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, np.ndarray) for v in obj.values()):
        raise CheckpointError(f"{path}: expected a state dict (names -> tensors), got {type(obj).__name__}")
    return dict(obj)
