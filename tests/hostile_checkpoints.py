"""A corpus of hostile and broken ``.pth`` files, written by hand (no PyTorch): pickles assembled opcode by
opcode, zips with patched headers. ``make_corpus(folder)`` writes them all and returns
{file name: what it attacks}. ``tests/test_hostile_files.py`` feeds each to the reader and the commands.

Classes: memory bombs from tiny files (zero and overlapping strides, huge memo indices, one tensor referenced
thousands of times, dicts shared along many paths, zip members that inflate, huge declared counts and
lengths); state that would outlive a load (BUILD on allowed globals); everything that used to escape as a raw
exception (recursion, overflow, wrong types, zip and zlib errors, encryption, unknown compression, CRC).
"""
import io
import pickle
import struct
import zipfile
import zlib

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


# --------------------------------------------------------------------------
# A tiny pickle assembler
# --------------------------------------------------------------------------

class P:
    """Pickle opcodes, appended in order: ``P().proto().empty_dict()...stop().bytes``."""

    def __init__(self):
        self.out = io.BytesIO()

    def raw(self, b):
        self.out.write(b)
        return self

    def proto(self, v=2):
        return self.raw(pickle.PROTO + bytes([v]))

    def glob(self, module, name):
        return self.raw(pickle.GLOBAL + f"{module}\n{name}\n".encode())

    def mark(self):
        return self.raw(pickle.MARK)

    def tuple(self):
        return self.raw(pickle.TUPLE)

    def reduce(self):
        return self.raw(pickle.REDUCE)

    def int(self, n):
        if 0 <= n < 2 ** 31:
            return self.raw(pickle.BININT + struct.pack("<i", n))
        data = n.to_bytes((n.bit_length() + 8) // 8, "little", signed=True)
        return self.raw(pickle.LONG1 + bytes([len(data)]) + data)

    def str(self, s):
        data = s.encode()
        return self.raw(pickle.BINUNICODE + struct.pack("<I", len(data)) + data)

    def false(self):
        return self.raw(pickle.NEWFALSE)

    def none(self):
        return self.raw(pickle.NONE)

    def float(self, v):
        return self.raw(pickle.BINFLOAT + struct.pack(">d", v))

    def empty_dict(self):
        return self.raw(pickle.EMPTY_DICT)

    def empty_list(self):
        return self.raw(pickle.EMPTY_LIST)

    def setitem(self):
        return self.raw(pickle.SETITEM)

    def put(self, i):
        return self.raw(pickle.LONG_BINPUT + struct.pack("<I", i))

    def get(self, i):
        return self.raw(pickle.LONG_BINGET + struct.pack("<I", i))

    def build(self):
        return self.raw(pickle.BUILD)

    def persid(self):
        return self.raw(pickle.BINPERSID)

    def pop(self):
        return self.raw(pickle.POP)

    def stop(self):
        return self.raw(pickle.STOP).out.getvalue()

    # --- torch's pieces ---

    def storage(self, key="0", numel=4, kind="FloatStorage", view=None):
        """The persistent id ('storage', torch.<kind>, key, 'cpu', numel[, view])."""
        self.mark().str("storage").glob("torch", kind).str(key).str("cpu").int(numel)
        if view is not None:
            self.mark().str(key).int(view[0]).int(view[1]).tuple()
        return self.tuple().persid()

    def ints(self, values):
        self.mark()
        for v in values:
            self.int(v) if isinstance(v, int) else self.float(v) if isinstance(v, float) else self.str(v)
        return self.tuple()

    def tensor(self, size=(2, 2), stride=(2, 1), offset=0, key="0", numel=4, kind="FloatStorage"):
        """torch._utils._rebuild_tensor_v2(storage, offset, size, stride, False, OrderedDict())."""
        self.glob("torch._utils", "_rebuild_tensor_v2").mark()
        self.storage(key, numel, kind).int(offset).ints(size).ints(stride).false()
        self.glob("collections", "OrderedDict").mark().tuple().reduce()
        return self.tuple().reduce()


def state_pickle(tensors):
    """{name: tensor} with tensors given as dicts of P.tensor keyword arguments."""
    p = P().proto().glob("collections", "OrderedDict").mark().tuple().reduce()
    for name, spec in tensors.items():
        p.str(name).tensor(**spec).setitem()
    return p.stop()


def zip_checkpoint(path, pkl, storages, members=None, compress=zipfile.ZIP_STORED, byteorder="little"):
    """A torch zip checkpoint: archive/data.pkl, archive/byteorder, archive/data/<key>, archive/version."""
    with zipfile.ZipFile(path, "w", compression=compress) as z:
        z.writestr("archive/data.pkl", pkl)
        z.writestr("archive/byteorder", byteorder)
        for key, data in storages.items():
            z.writestr(f"archive/data/{key}", data)
        for name, data in (members or {}).items():
            z.writestr(name, data)
        z.writestr("archive/version", "3\n")


def legacy_checkpoint(path, obj_pickle, keys, storages, sys_info=None):
    """A legacy checkpoint: magic, protocol, sys info, the object, the key list, then count + bytes per key."""
    with open(path, "wb") as f:
        for obj in (LEGACY_MAGIC, 1001, sys_info or {"little_endian": True, "protocol_version": 1001}):
            pickle.dump(obj, f, protocol=2)
        f.write(obj_pickle)
        pickle.dump(keys, f, protocol=2)
        for count, data in storages:
            f.write(struct.pack("<q", count) + data)


def _floats(n):
    return struct.pack(f"<{n}f", *range(n))


def _patch_zip(path, member, **fields):
    """Overwrite header fields of ``member`` in both its local header and the central directory:
    flags (2 bytes), method (2 bytes), size (uncompressed size, 4 bytes)."""
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as z:
        info = z.getinfo(member)
    local = info.header_offset
    central = data.rfind(b"PK\x01\x02", 0, data.rfind(member.encode()) + 1)
    central = data.find(b"PK\x01\x02" + data[central + 4:central + 8], central)
    for base, (flag_at, method_at, size_at) in ((local, (6, 8, 22)), (central, (8, 10, 24))):
        if "flags" in fields:
            data[base + flag_at:base + flag_at + 2] = struct.pack("<H", fields["flags"])
        if "method" in fields:
            data[base + method_at:base + method_at + 2] = struct.pack("<H", fields["method"])
        if "size" in fields:
            data[base + size_at:base + size_at + 4] = struct.pack("<I", fields["size"])
    path.write_bytes(bytes(data))


# --------------------------------------------------------------------------
# The corpus
# --------------------------------------------------------------------------

def make_corpus(folder):
    """Write every hostile file into ``folder``; returns {file name: what it attacks}."""
    made = {}
    ok = {"w": {}}                                             # a valid 2x2 float tensor over storage "0"

    def add(name, what, writer):
        writer(folder / name)
        made[name] = what

    def zipped(pkl, storages=None, **kw):
        return lambda path: zip_checkpoint(path, pkl, {"0": _floats(4)} if storages is None else storages, **kw)

    # --- memory bombs: a tensor bigger than its storage ---
    add("zero_strides.pth", "memory bomb: size 100000x100000 with strides 0 over one element",
        zipped(state_pickle({"w": dict(size=(100000, 100000), stride=(0, 0), numel=1)}), {"0": _floats(1)}))
    add("overlapping_strides.pth", "memory bomb: overlapping strides, 2^30 elements over 2^10",
        zipped(state_pickle({"w": dict(size=(2 ** 20, 2 ** 10), stride=(1, 1), numel=2 ** 11)}),
               {"0": _floats(2 ** 11)}))
    add("overlapping_strides_legacy.pth", "memory bomb: overlapping strides in a legacy file",
        lambda p: legacy_checkpoint(p, state_pickle({"w": dict(size=(2 ** 16, 2 ** 12), stride=(1, 1),
                                                                numel=2 ** 13)}),
                                    ["0"], [(2 ** 13, _floats(2 ** 13))]))
    add("huge_size_one_dim.pth", "memory bomb: size 2^40 with stride 0",
        zipped(state_pickle({"w": dict(size=(2 ** 40,), stride=(0,), numel=4)})))
    for i, index in enumerate((2 ** 31 - 1, 2 ** 32 - 1, 10 ** 9)):
        # a C unpickler allocates a memo table up to the index at PUT; the GET of another index then fails
        pkl = P().proto().empty_dict().put(index).str("w").tensor().setitem().get(index - 1).stop()
        add(f"huge_memo_{i}.pth", f"memory bomb: memo index {index}", zipped(pkl))
    # one 1 MB tensor referenced 20000 times (20 GB if copied per reference)
    p = P().proto().empty_dict().put(0).str("t0").tensor(size=(2 ** 18,), stride=(1,), numel=2 ** 18).put(1)
    p.setitem()
    for i in range(1, 20000):
        p.get(0).str(f"t{i}").get(1).setitem().pop()
    add("one_tensor_many_refs.pth", "memory bomb: one tensor referenced 20000 times",
        zipped(p.stop(), {"0": _floats(2 ** 18)}))
    # many distinct tensors, each viewing the whole 1 MB storage: 4000 x 1 MB
    tensors = {f"t{i}": dict(size=(2 ** 18,), stride=(1,), numel=2 ** 18) for i in range(4000)}
    add("many_views_of_one_storage.pth", "memory bomb: 4000 tensors viewing one 1 MB storage",
        zipped(state_pickle(tensors), {"0": _floats(2 ** 18)}))
    # billion laughs: d_k = {a: d_{k-1}, b: d_{k-1}}, 2^40 paths to the tensor, and a wide variant
    for depth, label in ((40, "deep"), (6, "shallow")):
        p = P().proto().empty_dict().put(0).str("t").tensor().setitem()
        for k in range(1, depth + 1):
            p.empty_dict().put(k)
            for key in "abcdefgh"[:2 if label == "deep" else 8]:
                p.str(key).get(k - 1).setitem()
        add(f"billion_laughs_{label}.pth", f"memory/time bomb: dicts shared along many paths ({label})",
            zipped(p.stop()))
    # a zip member that inflates: honest header (1 GB) and lying header (claims 16 bytes)
    bomb = zlib.compress(b"\0" * 2 ** 27, 9)
    add("inflating_storage.pth", "memory bomb: a storage member that inflates to 128 MB",
        lambda path: zip_checkpoint(path, state_pickle({"w": {}}), {"0": b"\0" * 2 ** 27},
                                    compress=zipfile.ZIP_DEFLATED))
    add("inflating_pickle.pth", "memory bomb: data.pkl inflating to 128 MB",
        lambda path: zip_checkpoint(path, b"\x80\x02" + b"N" * 2 ** 27, {}, compress=zipfile.ZIP_DEFLATED))

    def lying(path):
        zip_checkpoint(path, state_pickle({"w": {}}), {"0": b"\0" * 2 ** 27}, compress=zipfile.ZIP_DEFLATED)
        _patch_zip(path, "archive/data/0", size=16)
    add("inflating_storage_lying_header.pth", "memory bomb: a member whose header hides its 128 MB", lying)
    del bomb
    # legacy: a storage whose declared element count is huge
    add("legacy_huge_count.pth", "memory bomb: a legacy storage declaring 2^40 elements",
        lambda p: legacy_checkpoint(p, state_pickle({"w": dict(numel=2 ** 40)}), ["0"], [(2 ** 40, _floats(4))]))
    add("legacy_huge_count_mismatch.pth", "memory bomb: the header's count differs from the pickle's",
        lambda p: legacy_checkpoint(p, state_pickle({"w": {}}), ["0"], [(2 ** 40, _floats(4))]))
    # pickles that declare huge lengths
    for name, op in (("binunicode8", pickle.BINUNICODE8), ("binbytes8", pickle.BINBYTES8),
                     ("bytearray8", pickle.BYTEARRAY8)):
        pkl = P().proto(5).raw(op + struct.pack("<Q", 2 ** 40) + b"abc").stop()
        add(f"huge_{name}.pth", f"memory bomb: {name} declaring 2^40 bytes", zipped(pkl))
    add("huge_long4.pth", "memory bomb: LONG4 declaring 2^31 bytes",
        zipped(P().proto().raw(pickle.LONG4 + struct.pack("<i", 2 ** 31 - 1) + b"\x01").stop()))
    add("huge_frame.pth", "memory bomb: a protocol-4 FRAME declaring 2^40 bytes",
        zipped(P().proto(4).raw(pickle.FRAME + struct.pack("<Q", 2 ** 40)).raw(b"N.").out.getvalue()))

    # --- state that would outlive the load ---
    p = P().proto().glob("torch", "FloatStorage").empty_dict().str("name").str("DoubleStorage").setitem()
    add("build_on_storage_type.pth", "shared state: BUILD renames torch.FloatStorage for later loads",
        zipped(p.build().pop().raw(state_pickle({"w": {}})[2:]).out.getvalue()))
    p = P().proto().glob("torch._utils", "_rebuild_tensor_v2").empty_dict().str("__defaults__").str("x")
    add("build_on_function.pth", "shared state: BUILD on the tensor rebuild function",
        zipped(p.setitem().build().pop().empty_dict().stop()))
    p = P().proto().glob("collections", "OrderedDict").none().empty_dict().str("x").int(1).setitem()
    add("build_slotstate_on_global.pth", "shared state: BUILD with slot state on an allowed global",
        zipped(p.mark().raw(b"").tuple().pop().build().stop()))
    add("build_on_int.pth", "BUILD on an object that has no state",
        zipped(P().proto().int(5).empty_dict().build().stop()))
    add("build_on_none.pth", "BUILD on None", zipped(P().proto().none().empty_dict().build().stop()))

    # --- everything that used to escape as a raw exception ---
    p = P().proto()
    for _ in range(200000):
        p.raw(pickle.EMPTY_LIST).raw(pickle.MARK)
    add("deep_lists.pth", "recursion: 200000 nested lists", zipped(p.stop()))
    p = P().proto().empty_dict()
    for _ in range(3000):
        p.str("d").empty_dict()
    for _ in range(3000):                          # each SETITEM puts the dict on top into the one below it
        p.setitem()
    add("deep_dicts.pth", "recursion: 3000 nested dicts", zipped(p.stop()))
    add("self_reference.pth", "recursion: a dict that contains itself",
        zipped(P().proto().empty_dict().put(0).str("me").get(0).setitem().stop()))
    add("huge_stride.pth", "overflow: stride 2^70",
        zipped(state_pickle({"w": dict(size=(2, 2), stride=(2 ** 70, 1))})))
    add("huge_offset.pth", "overflow: offset 2^70", zipped(state_pickle({"w": dict(offset=2 ** 70)})))
    add("negative_stride.pth", "a negative stride", zipped(state_pickle({"w": dict(stride=(-2, 1))})))
    add("negative_size.pth", "a negative size", zipped(state_pickle({"w": dict(size=(-2, 2))})))
    add("float_size.pth", "type: sizes that are floats", zipped(state_pickle({"w": dict(size=(2.5, 2))})))
    add("string_size.pth", "type: sizes that are strings", zipped(state_pickle({"w": dict(size=("2", 2))})))
    add("size_stride_mismatch.pth", "type: size and stride of different lengths",
        zipped(state_pickle({"w": dict(size=(2, 2), stride=(1,))})))
    add("past_the_end.pth", "a view past the end of its storage",
        zipped(state_pickle({"w": dict(offset=3)})))
    add("storage_numel_string.pth", "type: a storage count that is a string",
        zipped(P().proto().empty_dict().str("w").glob("torch._utils", "_rebuild_tensor_v2").mark()
               .mark().str("storage").glob("torch", "FloatStorage").str("0").str("cpu").str("4").tuple().persid()
               .int(0).ints((2, 2)).ints((2, 1)).tuple().reduce().setitem().stop()))
    add("tensor_of_non_storage.pth", "type: a tensor over an int instead of a storage",
        zipped(P().proto().empty_dict().str("w").glob("torch._utils", "_rebuild_tensor_v2").mark().int(7)
               .int(0).ints((2, 2)).ints((2, 1)).tuple().reduce().setitem().stop()))
    add("ordered_dict_bad_args.pth", "type: OrderedDict called with an int",
        zipped(P().proto().glob("collections", "OrderedDict").mark().int(5).tuple().reduce().stop()))
    add("unknown_storage_type.pth", "a storage type that does not exist",
        zipped(state_pickle({"w": dict(kind="EvilStorage")})))
    add("bad_persistent_id.pth", "a persistent id that is not a storage",
        zipped(P().proto().empty_dict().str("w").str("nonsense").persid().setitem().stop()))
    add("memo_get_missing.pth", "a memo lookup of an index never stored",
        zipped(P().proto().get(12345).stop()))
    add("stack_underflow.pth", "opcodes with an empty stack", zipped(P().proto().setitem().stop()))
    add("long_text.pth", "a decimal LONG of 100000 digits",
        zipped(P().proto().raw(pickle.LONG + b"9" * 100000 + b"L\n").stop()))
    add("not_a_dict.pth", "a list where the state dict belongs", zipped(P().proto().empty_list().stop()))
    add("int_keys.pth", "a dict with an integer key",
        zipped(P().proto().empty_dict().int(3).tensor().setitem().stop()))
    add("missing_storage_member.pth", "the archive lacks the storage's member", zipped(state_pickle(ok), {}))
    add("short_storage_member.pth", "a storage member shorter than its count", zipped(state_pickle(ok),
                                                                                   {"0": _floats(2)}))
    add("big_endian.pth", "byteorder big", lambda p: zip_checkpoint(p, state_pickle(ok), {"0": _floats(4)},
                                                                     byteorder="big"))
    add("no_data_pkl.pth", "a zip without data.pkl",
        lambda p: zipfile.ZipFile(p, "w").close() or _write_zip(p, {"x/other": b"1"}))

    def truncated_zip(path):
        zip_checkpoint(path, state_pickle(ok), {"0": _floats(4)})
        data = path.read_bytes()
        path.write_bytes(data[:len(data) - 30])
    add("truncated_zip.pth", "zip: the central directory cut off", truncated_zip)

    def crc(path):
        zip_checkpoint(path, state_pickle(ok), {"0": _floats(4)})
        data = bytearray(path.read_bytes())
        at = data.find(_floats(4))
        data[at + 5] ^= 0xFF
        path.write_bytes(bytes(data))
    add("bad_crc.pth", "zip: a storage whose CRC does not match", crc)

    def bad_deflate(path):
        zip_checkpoint(path, state_pickle(ok), {"0": _floats(4) * 64}, compress=zipfile.ZIP_DEFLATED)
        with zipfile.ZipFile(path) as z:
            info = z.getinfo("archive/data/0")
        data = bytearray(path.read_bytes())
        start = info.header_offset + 30 + len(info.filename)
        for i in range(start, start + info.compress_size):
            data[i] = 0xFF
        path.write_bytes(bytes(data))
    add("corrupt_deflate.pth", "zlib: a deflate stream of garbage", bad_deflate)

    def encrypted(path):
        zip_checkpoint(path, state_pickle(ok), {"0": _floats(4)})
        _patch_zip(path, "archive/data.pkl", flags=0x1)
    add("encrypted.pth", "zip: an encrypted member", encrypted)

    def method(code, label):
        def write(path):
            zip_checkpoint(path, state_pickle(ok), {"0": _floats(4)})
            _patch_zip(path, "archive/data.pkl", method=code)
        add(f"compression_{label}.pth", f"zip: compression method {code} ({label})", write)
    method(99, "unknown")
    method(12, "bzip2")
    method(14, "lzma")
    add("legacy_truncated_pickle.pth", "legacy: the object pickle cut short",
        lambda p: legacy_checkpoint(p, state_pickle(ok)[:40], [], []))
    add("legacy_keys_not_list.pth", "legacy: the key list is a dict",
        lambda p: legacy_checkpoint(p, state_pickle(ok), {"0": 1}, []))
    add("legacy_unknown_key.pth", "legacy: a key no tensor uses",
        lambda p: legacy_checkpoint(p, state_pickle(ok), ["9"], [(4, _floats(4))]))
    add("legacy_unhashable_key.pth", "legacy: a key that is a list",
        lambda p: legacy_checkpoint(p, state_pickle(ok), [["0"]], [(4, _floats(4))]))
    add("legacy_view_past_root.pth", "legacy: a storage view past its root",
        lambda p: legacy_checkpoint(p, P().proto().empty_dict().str("w").glob("torch._utils", "_rebuild_tensor")
                                    .mark().storage("0", 4, view=(2, 100)).int(0).ints((2,)).ints((1,)).tuple()
                                    .reduce().setitem().stop(), ["0"], [(4, _floats(4))]))
    add("legacy_big_endian.pth", "legacy: big-endian sys info",
        lambda p: legacy_checkpoint(p, state_pickle(ok), ["0"], [(4, _floats(4))],
                                    sys_info={"little_endian": False}))
    add("legacy_wrong_protocol.pth", "legacy: protocol version 7", lambda p: _legacy_protocol(p, 7))
    add("empty.pth", "an empty file", lambda p: p.write_bytes(b""))
    add("only_proto.pth", "a pickle with no STOP", lambda p: p.write_bytes(b"\x80\x02"))
    add("random_bytes.pth", "random bytes after a pickle header",
        lambda p: p.write_bytes(b"\x80\x02" + bytes(range(256)) * 8))
    return made


def _write_zip(path, members):
    with zipfile.ZipFile(path, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)


def _legacy_protocol(path, version):
    with open(path, "wb") as f:
        pickle.dump(LEGACY_MAGIC, f, protocol=2)
        pickle.dump(version, f, protocol=2)


def valid_checkpoint(path):
    """A small valid zip checkpoint {"w": [[0, 1], [2, 3]]} (float32), for the check after the corpus."""
    zip_checkpoint(path, state_pickle({"w": {}}), {"0": _floats(4)})
