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
import os
import pickle
import struct
import zipfile
import zlib
from collections import OrderedDict

import numpy as np

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001
MAX_PICKLE_BYTES = 64 * 2 ** 20          # a state dict's pickle holds names and shapes: kilobytes, not megabytes
MAX_DEPTH = 8                            # {"state_dict": {name: tensor}} is 2 deep
MAX_ALIASES = 16                         # names one tensor may appear under (tied weights: two)

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
        self.type_name, self.key, self.numel = type_name, key, _count(numel, "a storage's element count")
        self.array = None


def _count(value, what):
    """A non-negative Python int, or CheckpointError (a pickle can put anything where a size belongs)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise CheckpointError(f"{what} must be a non-negative integer, got {value!r:.60}")
    return value


class _TensorRef:
    """A tensor as the pickle describes it: a strided view into a storage."""

    def __init__(self, storage, offset, size, stride):
        if not isinstance(storage, _Storage):
            raise CheckpointError(f"a tensor refers to {type(storage).__name__}, not to a storage")
        if not isinstance(size, tuple) or not isinstance(stride, tuple) or len(size) != len(stride):
            raise CheckpointError(f"a tensor's size {size!r:.60} and stride {stride!r:.60} do not match")
        self.storage, self.offset = storage, _count(offset, "a tensor's offset")
        self.size = tuple(_count(n, "a tensor's size") for n in size)
        self.stride = tuple(_count(n, "a tensor's stride") for n in stride)

    @property
    def numel(self):
        n = 1
        for d in self.size:
            n *= d
        return n

    def check(self):
        """Refuse, before anything is allocated, a view that reaches past its storage or is larger than it
        (zero or overlapping strides would let a few bytes of file ask for gigabytes)."""
        flat = self.storage.array
        if flat is None:
            raise CheckpointError(f"storage {self.storage.key!r} has no data in the file")
        if self.numel > flat.size:
            raise CheckpointError(f"a tensor of size {self.size} has more elements than its storage "
                                  f"{self.storage.key!r} ({flat.size}): overlapping or zero strides; a state "
                                  f"dict's tensors never do that")
        if self.numel:
            last = self.offset + sum((n - 1) * s for n, s in zip(self.size, self.stride))
            if last >= flat.size:
                raise CheckpointError(f"a tensor of size {self.size} reaches past the end of storage "
                                      f"{self.storage.key!r} ({flat.size} elements): the file is corrupt")
        return self.numel * flat.itemsize

    def to_numpy(self):
        flat = self.storage.array
        view = np.lib.stride_tricks.as_strided(flat[self.offset:] if self.numel else flat, self.size,
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
    if len(args) > 1 or (args and not isinstance(args[0], (list, tuple))):
        raise CheckpointError("collections.OrderedDict called with something other than a list of pairs")
    return OrderedDict(*args)


class _StorageType:
    """Stands in for torch.FloatStorage etc.; a new one for every load, so nothing a file does lasts."""

    def __init__(self, name):
        self.name = name


# Every global a state dict may name, and what stands in for it here (None: a fresh _StorageType per load).
ALLOWED_GLOBALS = {
    ("collections", "OrderedDict"): _ordered_dict,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    **{("torch", name): None for name in STORAGE_DTYPES},
}


class _Bounded:
    """A file-like view of ``file`` that never reads past ``limit`` bytes from where it starts: a pickle that
    declares a 4 GB string gets the bytes that are really there, not a 4 GB buffer."""

    def __init__(self, file, limit):
        self.file, self.left = file, limit

    def read(self, n=-1):
        n = self.left if n is None or n < 0 else min(n, self.left)
        data = self.file.read(n)
        self.left -= len(data)
        return data

    def readinto(self, buffer):
        view = memoryview(buffer)[:self.left]
        got = self.file.readinto(view)
        self.left -= got
        return got

    def readline(self):
        line = self.file.readline(self.left)
        self.left -= len(line)
        return line


def _load_build(unpickler):
    """BUILD sets state on the object below it. A state dict uses it only for an OrderedDict's _metadata,
    which is not needed: drop it. On anything else (an allowed global, say) it would change how later
    files load, so refuse it."""
    state = unpickler.stack.pop()
    target = unpickler.stack[-1]
    if not isinstance(target, dict):
        raise CheckpointError(f"the pickle sets state on a {type(target).__name__}: a state dict never does that")
    del state


class _RestrictedUnpickler(pickle._Unpickler):
    """The pure-Python unpickler (its memo is a dict: a huge memo index cannot allocate a huge table),
    allowing only ALLOWED_GLOBALS, with BUILD restricted (``_load_build``)."""

    dispatch = dict(pickle._Unpickler.dispatch)
    dispatch[pickle.BUILD[0]] = _load_build

    def __init__(self, file, storages):
        super().__init__(file)
        self.storages = storages                  # key -> _Storage, filled by persistent_load
        self.types = {}                           # this load's own _StorageType objects

    def find_class(self, module, name):
        if (module, name) not in ALLOWED_GLOBALS:
            raise CheckpointError(f"refused to load the global {module}.{name}: a state dict needs only "
                                  f"tensors and dicts, and this file asks for something else (it was not run)")
        found = ALLOWED_GLOBALS[(module, name)]
        if found is None:
            found = self.types.setdefault(name, _StorageType(name))
        return found

    def persistent_load(self, pid):
        # ('storage', storage type, key, location, numel[, view metadata (legacy)])
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"
                and isinstance(pid[1], _StorageType) and isinstance(pid[2], (str, int))):
            raise CheckpointError(f"unsupported persistent id {pid!r:.80}")
        _, storage_type, key, _location, numel = pid[:5]
        storage = self.storages.get(key)
        if storage is None:
            storage = self.storages[key] = _Storage(storage_type.name, key, numel)
        if len(pid) > 5 and pid[5] is not None:   # legacy view: (view key, offset, size) into the root storage
            if not (isinstance(pid[5], tuple) and len(pid[5]) == 3):
                raise CheckpointError(f"unsupported storage view {pid[5]!r:.80}")
            _view_key, view_offset, view_size = pid[5]
            return _View(storage, view_offset, view_size)
        return storage


class _View(_Storage):
    """A legacy storage view: elements [offset, offset+size) of a root storage."""

    def __init__(self, root, offset, size):
        self.root = root
        self.view_offset, self.view_size = _count(offset, "a view's offset"), _count(size, "a view's size")
        if self.view_offset + self.view_size > root.numel:
            raise CheckpointError(f"a view of storage {root.key!r} reaches past its {root.numel} elements")
        self.type_name, self.key, self.numel = root.type_name, root.key, self.view_size

    @property
    def array(self):
        if self.root.array is None:
            return None
        return self.root.array[self.view_offset:self.view_offset + self.view_size]


def _unpickle(file, limit, storages=None):
    try:
        return _RestrictedUnpickler(_Bounded(file, limit), {} if storages is None else storages).load()
    except CheckpointError:
        raise
    except EOFError as e:
        raise CheckpointError("the file ends in the middle of a pickle: it is truncated") from e
    except RecursionError as e:
        raise CheckpointError("the pickle nests too deeply to be a state dict") from e
    except MemoryError as e:
        raise CheckpointError("the pickle asks for more memory than a state dict needs") from e
    except Exception as e:
        raise CheckpointError(f"the pickle inside is corrupt ({type(e).__name__}: {e!s:.200})") from e


def _tensor_refs(obj):
    """Every distinct _TensorRef in a nested dict, each once; refuses deep, self-referencing or odd structures.

    Iterative, and each container is visited once, so a dict shared along many paths (a "billion laughs")
    costs one visit, not one per path."""
    refs, aliases, seen, todo = {}, {}, set(), [(obj, 0)]
    while todo:
        node, depth = todo.pop()
        if isinstance(node, _TensorRef):
            refs[id(node)] = node
            aliases[id(node)] = aliases.get(id(node), 0) + 1
        elif isinstance(node, dict):
            if depth > MAX_DEPTH:
                raise CheckpointError(f"the dicts nest more than {MAX_DEPTH} deep: not a state dict")
            if id(node) in seen:
                continue
            seen.add(id(node))
            todo.extend((v, depth + 1) for v in node.values())
    return list(refs.values()), aliases


def _materialize(obj, budget):
    """Replace every _TensorRef in a (nested) dict by a NumPy array, each distinct tensor copied once.

    budget: the most bytes the copies may take together (from what the file really holds)."""
    refs, aliases = _tensor_refs(obj)
    if aliases and max(aliases.values()) > MAX_ALIASES:
        raise CheckpointError(f"one tensor appears under {max(aliases.values())} names; a state dict shares a "
                              f"tensor between a few names at most (tied weights)")
    total = sum(ref.check() for ref in refs)
    if total > budget:
        raise CheckpointError(f"the tensors would take {total} bytes, more than the {budget} the file's data "
                              f"allows: many tensors view the same storage")
    arrays = {id(ref): ref.to_numpy() for ref in refs}
    converted, open_ = {}, set()

    def convert(node):              # at most MAX_DEPTH deep (checked above), so the recursion is shallow
        if isinstance(node, _TensorRef):
            return arrays[id(node)]
        if isinstance(node, dict):
            if id(node) in open_:
                raise CheckpointError("a dict contains itself: not a state dict")
            if id(node) not in converted:
                open_.add(id(node))
                converted[id(node)] = {k: convert(v) for k, v in node.items()}
                open_.discard(id(node))
            return converted[id(node)]
        return node
    return convert(obj)


def _budget(storages):
    """Twice the bytes of all storages (tied weights share a storage), and at least 1 MB."""
    data = sum(s.numel * np.dtype(STORAGE_DTYPES[s.type_name]).itemsize for s in storages.values()
               if not isinstance(s, _View))
    return max(2 * data, 2 ** 20)


def _read_member(archive, info, expected, path):
    """A zip member's bytes, at most ``expected``: refused before reading if it says it is larger,
    and read through a bounded stream in case it lies (a member can inflate a thousandfold)."""
    if info.flag_bits & 0x1:
        raise CheckpointError(f"{path}: member {info.filename} is encrypted; torch.save never encrypts")
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        raise CheckpointError(f"{path}: member {info.filename} uses compression method {info.compress_type}; "
                              f"torch.save stores its members uncompressed")
    if info.file_size > expected:
        raise CheckpointError(f"{path}: member {info.filename} holds {info.file_size} bytes, expected at most "
                              f"{expected}: the file is corrupt or hostile")
    with archive.open(info) as member:
        data = member.read(expected + 1)
    if len(data) > expected:
        raise CheckpointError(f"{path}: member {info.filename} inflates beyond the {expected} bytes it may hold")
    return data


def _read_zip(path):
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, zlib.error, ValueError, OSError, EOFError) as e:
        raise CheckpointError(f"{path}: a zip archive that is truncated or corrupt ({e})") from e
    with archive:
        infos = {info.filename: info for info in archive.infolist()}
        pkl = [n for n in infos if n.endswith("data.pkl") and n.count("/") == 1]
        if not pkl:
            raise CheckpointError(f"{path}: a zip archive without <folder>/data.pkl: not a torch.save file")
        top = pkl[0].split("/")[0]
        storages = {}
        try:
            if f"{top}/byteorder" in infos and _read_member(archive, infos[f"{top}/byteorder"], 16,
                                                            path).strip() != b"little":
                raise CheckpointError(f"{path}: big-endian checkpoints are not supported")
            data = _read_member(archive, infos[pkl[0]], MAX_PICKLE_BYTES, path)
            obj = _unpickle(io.BytesIO(data), len(data), storages)
            for key, storage in storages.items():
                dtype = np.dtype(STORAGE_DTYPES[storage.type_name])
                name = f"{top}/data/{key}"
                if name not in infos:
                    raise CheckpointError(f"{path}: the archive lacks {name!r}: the file is incomplete")
                expected = storage.numel * dtype.itemsize
                raw = _read_member(archive, infos[name], expected, path)
                if len(raw) < expected:
                    raise CheckpointError(f"{path}: storage {key} holds {len(raw)} bytes, expected {expected}: "
                                          f"the file is truncated or corrupt")
                storage.array = np.frombuffer(raw, dtype=dtype, count=storage.numel)
        except CheckpointError:
            raise
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError, RuntimeError, NotImplementedError) as e:
            raise CheckpointError(f"{path}: a zip archive that is truncated or corrupt ({type(e).__name__}: "
                                  f"{e})") from e
        return _materialize(obj, _budget(storages))


def _read_legacy(path):
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        def left():
            return size - f.tell()
        if _unpickle(f, left()) != LEGACY_MAGIC:
            raise CheckpointError(f"{path}: wrong magic number: not a PyTorch checkpoint")
        if _unpickle(f, left()) != LEGACY_PROTOCOL:
            raise CheckpointError(f"{path}: unsupported legacy protocol version")
        sys_info = _unpickle(f, left())
        if isinstance(sys_info, dict) and not sys_info.get("little_endian", True):
            raise CheckpointError(f"{path}: big-endian checkpoints are not supported")
        storages = {}
        obj = _unpickle(f, left(), storages)
        keys = _unpickle(f, left())
        if not isinstance(keys, list):
            raise CheckpointError(f"{path}: the storage key list is corrupt")
        for key in keys:
            storage = storages.get(key) if isinstance(key, (str, int)) else None
            if storage is None:
                raise CheckpointError(f"{path}: the file lists storage {key!r:.60} that no tensor uses")
            header = f.read(8)
            if len(header) < 8:
                raise CheckpointError(f"{path}: the file ends before storage {key!r}: it is truncated")
            (numel,) = struct.unpack("<q", header)
            if numel != storage.numel:
                raise CheckpointError(f"{path}: storage {key!r} has {numel} elements, the pickle says "
                                      f"{storage.numel}: the file is corrupt")
            dtype = np.dtype(STORAGE_DTYPES[storage.type_name])
            if numel * dtype.itemsize > left():                  # checked before allocating
                raise CheckpointError(f"{path}: the file ends inside storage {key!r}: it is truncated")
            array = np.empty(numel, dtype=dtype)
            if f.readinto(memoryview(array).cast("B")) != array.nbytes:
                raise CheckpointError(f"{path}: the file ends inside storage {key!r}: it is truncated")
            storage.array = array
        return _materialize(obj, _budget(storages))


def load_torch_checkpoint(path):
    """Read a ``torch.save``-d state dict -> ``{name: np.ndarray}``, without PyTorch.

    Both formats (zip and legacy) are read. A file holding
    ``{"state_dict": {...}}`` is unwrapped. Raises FileNotFoundError for a
    missing file and CheckpointError (a ValueError) for anything that is not a
    readable state dict: wrong magic, truncated, corrupt, a pickle that names
    a global outside the allowed few (refused, never executed), or one that
    asks for more memory than the file's data can fill. Nothing a file does
    outlives its load.
    """
    path = str(path)
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except FileNotFoundError:
        raise
    except OSError as e:
        raise CheckpointError(f"{path}: cannot be read ({e.strerror or e})") from e
    try:
        if head.startswith(b"PK"):
            obj = _read_zip(path)
        elif head[:1] == b"\x80":
            obj = _read_legacy(path)
        else:
            raise CheckpointError(f"{path}: neither a torch zip checkpoint nor a legacy one (it starts with "
                                  f"{head!r}); expected a file written by torch.save")
    except CheckpointError:
        raise
    except MemoryError as e:
        raise CheckpointError(f"{path}: reading it needs more memory than this machine has") from e
    except Exception as e:                     # anything else a malformed file provokes, named
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(e).__name__}: {e!s:.200})") from e
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(k, str) and isinstance(v, np.ndarray)
                                            for k, v in obj.items()):
        raise CheckpointError(f"{path}: expected a state dict (names -> tensors), got {type(obj).__name__}")
    return dict(obj)
