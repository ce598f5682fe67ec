"""Running untrusted code -- a student's submission -- in a separate process that the grader does not trust.

The grader (``attribution.grade``) keeps everything it trusts in its own process: the cases, the expected
values, the comparisons, the report. The student's process gets only what a function is called with and
sends back only arrays. The two directions are deliberately different:

* grader -> student: pickle. The student's process unpickles what the trusted side wrote (inputs, small
  models); that is safe for the grader, and nothing secret is in it.
* student -> grader: never pickle. One message is a length (8 bytes), a JSON header and NumPy's own ``.npy``
  bytes, read with ``allow_pickle=False``; lengths are capped before anything is allocated, and every field
  is checked (``decode_reply``). A message that breaks a rule stops the student's process.

The student's process (``python -m attribution.sandbox``, ``child_main``) runs in a fresh temporary folder
holding only a copy of the submission, with an environment of its own, stdout and stderr sent to the null
device (nothing it prints reaches the grader's output), and, before the student's file is imported, the
limits the platform allows (``apply_limits``):

* Linux and macOS: address space (memory), CPU time, file size, no core files (``resource``); no new
  processes or threads (``RLIMIT_NPROC``; not enforced for root).
* Linux 5.13 and later: Landlock (``restrict_writes``) -- the process may write only inside its own
  temporary folder (and ``/dev/null``); from Linux 6.7 it cannot open TCP connections, and from 6.12 it
  cannot send signals to processes outside itself (the grader).
* Windows: none of the above; the wall-clock deadlines still hold and the process is killed.

The grading side (``Child``) enforces deadlines by the clock, whatever the student's process does, kills its
whole process group at the end and, on Linux, every process it left behind (the grader is made a
"subreaper" while it grades, so orphans come back to it).
"""
import io
import json
import os
import pickle
import queue
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

MAX_REPLY_BYTES = 16 << 20          # one message from the student's process: results are small arrays
MAX_HEADER_BYTES = 64 << 10
MAX_ARRAYS = 16
MAX_REASON = 300                     # characters of a reason the grader keeps
ARRAY_KINDS = "biuf"                 # bool, int, uint, float: what a result may be


class ProtocolError(Exception):
    """The student's process sent something that is not a well-formed reply."""


def clean_reason(text, limit=MAX_REASON):
    """One printable line of at most ``limit`` characters: what the grader keeps of a text the student's code
    produced (an exception message), so that it cannot fill the table or imitate report lines."""
    text = "".join(c if c.isprintable() else " " for c in str(text))
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


# --------------------------------------------------------------------------
# The format: frames of bytes
# --------------------------------------------------------------------------

def encode_reply(header, arrays=()):
    """The bytes of one reply: 8-byte length, 4-byte header length, JSON header, then each array's ``.npy``."""
    blobs = []
    for a in arrays:
        buffer = io.BytesIO()
        np.lib.format.write_array(buffer, np.ascontiguousarray(a), allow_pickle=False)
        blobs.append(buffer.getvalue())
    head = json.dumps({**header, "sizes": [len(b) for b in blobs]}).encode("utf-8")
    body = struct.pack(">I", len(head)) + head + b"".join(blobs)
    return struct.pack(">Q", len(body)) + body


def decode_reply(body):
    """(header, [arrays]) from one reply's body; ProtocolError names the rule it breaks. Nothing here runs
    code from the message: JSON, then ``np.lib.format.read_array(..., allow_pickle=False)``."""
    if len(body) < 4:
        raise ProtocolError("a message shorter than its own header length")
    (n,) = struct.unpack(">I", body[:4])
    if n > MAX_HEADER_BYTES or 4 + n > len(body):
        raise ProtocolError(f"a header of {n} bytes (at most {MAX_HEADER_BYTES}, within the message)")
    try:
        header = json.loads(body[4:4 + n].decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise ProtocolError(f"a header that is not JSON ({type(e).__name__})") from None
    if not isinstance(header, dict):
        raise ProtocolError("a header that is not a JSON object")
    sizes = header.get("sizes", [])
    if (not isinstance(sizes, list) or len(sizes) > MAX_ARRAYS
            or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in sizes)
            or 4 + n + sum(sizes) != len(body)):
        raise ProtocolError("array sizes that do not add up to the message")
    arrays, at = [], 4 + n
    for size in sizes:
        try:
            a = np.lib.format.read_array(io.BytesIO(body[at:at + size]), allow_pickle=False)
        except Exception as e:                      # a malformed .npy header, short data, an object dtype
            raise ProtocolError(f"an array that is not valid .npy ({clean_reason(e, 80)})") from None
        if a.dtype.kind not in ARRAY_KINDS or a.ndim > 8:
            raise ProtocolError(f"an array of dtype {a.dtype} and {a.ndim} dimensions (numbers only, at most 8)")
        arrays.append(a)
        at += size
    return header, arrays


def _write_frame(f, payload):
    f.write(struct.pack(">Q", len(payload)) + payload)
    f.flush()


def _read_exact(f, n):
    chunks, left = [], n
    while left:
        chunk = f.read(min(left, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


# --------------------------------------------------------------------------
# The student's side: python -m attribution.sandbox
# --------------------------------------------------------------------------

def _rlimits(memory_bytes, cpu_seconds):
    """Set what ``resource`` allows; returns the names of the limits that took effect."""
    try:
        import resource
    except ImportError:                                     # Windows
        return []
    applied = []

    def limit(name, what, value):
        kind = getattr(resource, what, None)
        if kind is None:
            return
        try:
            soft, hard = resource.getrlimit(kind)
            value = value if hard == resource.RLIM_INFINITY else min(value, hard)
            resource.setrlimit(kind, (value, hard if what != "RLIMIT_CPU" else value + 5))
            applied.append(name)
        except (ValueError, OSError):
            pass
    vm = _virtual_size()
    limit("memory", "RLIMIT_AS", vm + memory_bytes)
    limit("cpu time", "RLIMIT_CPU", max(1, int(cpu_seconds)))
    limit("file size", "RLIMIT_FSIZE", 64 << 20)
    limit("core files", "RLIMIT_CORE", 0)
    if hasattr(os, "getuid") and os.getuid() != 0:          # root is not held to RLIMIT_NPROC
        limit("processes", "RLIMIT_NPROC", 0)
    return applied


def _virtual_size():
    """This process's address space in bytes now (Linux; 0 elsewhere), so the memory limit is on top of it."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmSize:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


# Landlock (Linux >= 5.13): an unprivileged process restricts itself and every process it starts.
_LANDLOCK_CREATE_RULESET, _LANDLOCK_ADD_RULE, _LANDLOCK_RESTRICT_SELF = 444, 445, 446
_WRITE_FILE, _TRUNCATE = 1 << 1, 1 << 14
_WRITES = {1: sum(1 << b for b in (1, 4, 5, 6, 7, 8, 9, 10, 11, 12)),   # write, remove, make (v1)
           2: 1 << 13,                                                    # refer: rename across folders (v2)
           3: _TRUNCATE}                                                  # truncate (v3)


def landlock_abi():
    """The kernel's Landlock ABI version, 0 where there is none (not Linux, too old, or disabled)."""
    if not sys.platform.startswith("linux"):
        return 0
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        version = libc.syscall(_LANDLOCK_CREATE_RULESET, None, ctypes.c_size_t(0), ctypes.c_uint32(1))
        return max(int(version), 0)
    except (OSError, AttributeError):
        return 0


def restrict_writes(folder):
    """Landlock: from now on this process (and any it starts) may create, change or delete files only under
    ``folder`` and write to ``/dev/null``; where the kernel allows, no TCP and no signals outside itself.
    Returns the restrictions applied ([] where Landlock is missing)."""
    abi = landlock_abi()
    if abi < 1:
        return []
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    writes = sum(bits for version, bits in _WRITES.items() if abi >= version)
    net = 0b11 if abi >= 4 else 0                           # bind and connect TCP
    scoped = 0b11 if abi >= 6 else 0                        # abstract unix sockets, signals
    attr = struct.pack("<QQQ", writes, net, scoped)[:8 * (1 + (abi >= 4) + (abi >= 6))]
    ruleset = libc.syscall(_LANDLOCK_CREATE_RULESET, ctypes.c_char_p(attr), ctypes.c_size_t(len(attr)),
                           ctypes.c_uint32(0))
    if ruleset < 0:
        return []
    try:
        for path, allowed in ((folder, writes), (os.devnull, (_WRITE_FILE | _TRUNCATE) & writes)):
            fd = os.open(path, getattr(os, "O_PATH", 0) | os.O_CLOEXEC)
            try:
                rule = struct.pack("<Qi", allowed, fd)                      # packed struct: 12 bytes
                if libc.syscall(_LANDLOCK_ADD_RULE, ctypes.c_int(ruleset), ctypes.c_int(1),
                                ctypes.c_char_p(rule), ctypes.c_uint32(0)) < 0:
                    return []
            finally:
                os.close(fd)
        if libc.prctl(38, 1, 0, 0, 0) < 0:                                 # PR_SET_NO_NEW_PRIVS
            return []
        if libc.syscall(_LANDLOCK_RESTRICT_SELF, ctypes.c_int(ruleset), ctypes.c_uint32(0)) < 0:
            return []
    finally:
        os.close(ruleset)
    return ["writes only in its folder"] + (["no TCP"] if net else []) + (["no signals out"] if scoped else [])


def apply_limits(folder, memory_bytes, cpu_seconds):
    """Every limit this platform allows, on this process; returns their names."""
    return _rlimits(memory_bytes, cpu_seconds) + restrict_writes(folder)


def _describe_failure(e, file_name):
    """One line for an exception raised by the student's code, with the line of their file where it was."""
    import traceback
    if isinstance(e, NotImplementedError):
        return "not implemented yet (it raises NotImplementedError)"
    if isinstance(e, SystemExit):
        return f"the code calls sys.exit({e.code!r}); a function must return its result"
    if isinstance(e, KeyboardInterrupt):
        return "KeyboardInterrupt raised inside the code"
    frames = [f for f in traceback.extract_tb(e.__traceback__) if os.path.basename(f.filename) == file_name]
    where = f" (line {frames[-1].lineno} of {file_name})" if frames else ""
    return f"{type(e).__name__}: {e}"[:MAX_REASON] + where


class NotArrays(Exception):
    """The student's function returned something that cannot be sent back as arrays of numbers."""


def _as_arrays(result):
    """(arrays, is_tuple): a tuple or list of arrays is sent as several, anything else as one array."""
    parts = list(result) if isinstance(result, (tuple, list)) and result and all(
        isinstance(r, np.ndarray) for r in result) else None
    if parts is not None and len(parts) > MAX_ARRAYS:
        raise NotArrays(f"returned {len(parts)} arrays; at most {MAX_ARRAYS} can be sent back")
    arrays = []
    for part in parts if parts is not None else [result]:
        if part is None:
            raise NotArrays("returned None, not an array (a missing return?)")
        try:
            a = np.asarray(part)
        except Exception as e:
            raise NotArrays(f"returned {type(part).__name__}, which is not an array ({type(e).__name__})")
        if a.dtype.kind not in ARRAY_KINDS:
            raise NotArrays(f"returned {type(part).__name__} of dtype {a.dtype}, not an array of numbers")
        arrays.append(a)
    return arrays, parts is not None


def child_main():
    """The student's process: read the setup, apply the limits, import the file, answer each call."""
    requests = os.fdopen(os.dup(0), "rb")
    replies = os.fdopen(os.dup(1), "wb")
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    sys.stdin, sys.stdout, sys.stderr = open(os.devnull), open(os.devnull, "w"), open(os.devnull, "w")
    sys.dont_write_bytecode = True

    def read():
        head = _read_exact(requests, 8)
        return None if head is None else pickle.loads(_read_exact(requests, struct.unpack(">Q", head)[0]))

    def send(header, arrays=()):
        replies.write(encode_reply(header, arrays))
        replies.flush()
    setup = read()
    import importlib
    import importlib.util
    importlib.import_module("minicnn")         # the inputs hold minicnn objects: imported before the limits
    applied = apply_limits(os.getcwd(), setup["memory_bytes"], setup["cpu_seconds"])
    send({"status": "limits", "applied": applied})
    try:
        spec = importlib.util.spec_from_file_location("student_submission", setup["file"])
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    except BaseException as e:
        send({"status": "import_error", "reason": f"the file cannot be imported: {type(e).__name__}: {e}"})
        return
    send({"status": "ready"})
    file_name = os.path.basename(setup["file"])
    while True:
        request = read()
        if request is None:
            return
        case, name, args = request["case"], request["function"], request["args"]
        fn = getattr(module, name, None)
        if not callable(fn):
            send({"case": case, "status": "missing"})
            continue
        before = [a.copy() if isinstance(a, np.ndarray) else None for a in args]
        try:
            arrays, is_tuple = _as_arrays(fn(*args))
        except BaseException as e:
            reason = str(e) if isinstance(e, NotArrays) else _describe_failure(e, file_name)
            send({"case": case, "status": "error", "reason": reason})
            continue
        modified = [i for i, (a, b) in enumerate(zip(args, before))
                    if b is not None and not (isinstance(a, np.ndarray) and a.shape == b.shape
                                              and np.array_equal(a, b, equal_nan=True))]
        send({"case": case, "status": "ok", "tuple": bool(is_tuple), "modified": modified}, arrays)


# --------------------------------------------------------------------------
# The grader's side
# --------------------------------------------------------------------------

class Reply:
    """What came back for one request: kind is "ok", "error", "missing", "import_error", "hang", "died" or
    "protocol"; ``value`` (an array, or a tuple of arrays), ``modified`` and ``reason`` as they apply."""

    def __init__(self, kind, value=None, modified=(), reason=None, case=None):  # noqa: D107
        self.kind, self.value, self.modified, self.reason, self.case = kind, value, list(modified), reason, case


def _child_env(folder):
    """The student's process's environment: only what Python needs, the package importable, one thread."""
    keep = ("PATH", "SYSTEMROOT", "SYSTEMDRIVE", "WINDIR", "LANG", "LC_ALL", "VIRTUAL_ENV")
    env = {k: os.environ[k] for k in keep if k in os.environ}
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env.update(PYTHONPATH=root, PYTHONDONTWRITEBYTECODE="1", PYTHONNOUSERSITE="1", HOME=folder, TMPDIR=folder,
               TEMP=folder, TMP=folder, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    return env


class Child:
    """One student's process, in ``folder`` (which holds the copy of the file). ``call`` sends a request and
    waits for its reply until a deadline (time.monotonic()); ``close`` kills it and everything it started."""

    def __init__(self, folder, file_name, memory_bytes, cpu_seconds, deadline):
        flags = {"start_new_session": True} if os.name == "posix" else {
            "creationflags": getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0)}
        self.proc = subprocess.Popen([sys.executable, "-m", "attribution.sandbox"], cwd=folder,
                                     env=_child_env(folder), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, **flags)
        self.replies = queue.Queue()
        self.outbox = queue.Queue()
        threading.Thread(target=self._reader, daemon=True).start()
        threading.Thread(target=self._writer, daemon=True).start()
        self._send({"file": os.path.join(folder, file_name), "memory_bytes": memory_bytes,
                    "cpu_seconds": cpu_seconds})
        self.limits = []
        first = self._next(deadline)
        if first.kind == "limits":
            self.limits = first.value
            first = self._next(deadline)
        self.start = first              # "ready", "import_error", "hang", "died" or "protocol"

    def _reader(self):
        """Frames from the child's stdout onto the queue; stops at the first broken one."""
        f = self.proc.stdout
        try:
            while True:
                head = _read_exact(f, 8)
                if head is None:
                    self.replies.put(("eof", None))
                    return
                (n,) = struct.unpack(">Q", head)
                if n > MAX_REPLY_BYTES:
                    self.replies.put(("protocol", f"a message of {n} bytes (at most {MAX_REPLY_BYTES})"))
                    return
                body = _read_exact(f, n)
                if body is None:
                    self.replies.put(("eof", None))
                    return
                try:
                    self.replies.put(("message", decode_reply(body)))
                except ProtocolError as e:
                    self.replies.put(("protocol", str(e)))
                    return
        except (OSError, ValueError):
            self.replies.put(("eof", None))

    def _writer(self):
        while True:
            payload = self.outbox.get()
            if payload is None:
                return
            try:
                _write_frame(self.proc.stdin, payload)
            except (OSError, ValueError):
                return

    def _send(self, obj):
        self.outbox.put(pickle.dumps(obj, protocol=4))

    def _next(self, deadline):
        """The next reply, or a Reply for a hang, a dead process or a broken message."""
        try:
            kind, content = self.replies.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            return Reply("hang")
        if kind == "eof":
            try:
                code = self.proc.wait(5)
            except subprocess.TimeoutExpired:
                code = None
            return Reply("died", reason=f"exit status {code}")
        if kind == "protocol":
            return Reply("protocol", reason=content)
        header, arrays = content
        status = header.get("status")
        if status == "limits":
            applied = header.get("applied")
            return Reply("limits", [clean_reason(a, 40) for a in applied] if isinstance(applied, list) else [])
        case = header.get("case")
        case = case if isinstance(case, int) and not isinstance(case, bool) else None
        if status in ("ready", "missing"):
            return Reply(status, case=case)
        if status in ("import_error", "error"):
            return Reply(status, reason=clean_reason(header.get("reason", "")), case=case)
        if status == "ok":
            modified = header.get("modified", [])
            if not isinstance(modified, list) or not all(isinstance(i, int) for i in modified) or not arrays:
                return Reply("protocol", reason="a result without arrays or with a malformed header")
            value = tuple(arrays) if header.get("tuple") is True or len(arrays) > 1 else arrays[0]
            return Reply("ok", value, modified=modified[:MAX_ARRAYS], case=case)
        return Reply("protocol", reason=f"a message of unknown status {clean_reason(status, 40)!r}")

    def call(self, case, function, args, deadline):
        """Run ``function(*args)`` in the child; the Reply, which must answer this very case."""
        self._send({"case": case, "function": function, "args": args})
        while True:
            reply = self._next(deadline)
            if reply.kind in ("hang", "died", "protocol"):
                return reply
            if reply.kind in ("ok", "error", "missing"):
                return reply if reply.case == case else Reply("protocol", reason="a reply to another case")
            return Reply("protocol", reason=f"an unexpected {reply.kind!r} message")

    def close(self):
        """Kill the process, its process group and (Linux) whatever it left behind; wait for them."""
        self.outbox.put(None)
        if os.name == "posix":
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        try:
            self.proc.kill()
        except OSError:
            pass
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            pass
        for stream in (self.proc.stdin, self.proc.stdout):
            try:
                stream.close()
            except OSError:
                pass


class BranchBackward:
    """A picklable ``g -> d(branch)/d(x)^T g`` for one branch of a residual block after its forward pass: one
    of the callables the grader hands to a student's ``residual_backward``. ``as_dtype`` casts what it returns."""

    def __init__(self, block, branch, dtype=None):
        self.block, self.branch, self.dtype = block, branch, dtype

    def __call__(self, g):
        from minicnn.blocks import BackwardContext
        out = self.block.chain_back(getattr(self.block, self.branch), g, BackwardContext())
        return out if self.dtype is None else out.astype(self.dtype)

    def as_dtype(self, dtype):
        return BranchBackward(self.block, self.branch, dtype)


class Scale:
    """A picklable ``g -> factor * g``: the backward of a branch that multiplies by ``factor``."""

    def __init__(self, factor):
        self.factor = factor

    def __call__(self, g):
        return self.factor * g


class Reaper:
    """``with Reaper() as reaper: ... reaper.sweep()``: on Linux the grader becomes a "subreaper" while it
    grades, so that processes a submission leaves behind (even after a double fork and ``setsid``) become
    its children; ``sweep`` kills and reaps every child that was not there when grading began. Elsewhere
    it does nothing (killing the process group is all there is)."""

    def __enter__(self):
        self.active = False
        if sys.platform.startswith("linux"):
            try:
                import ctypes
                self.libc = ctypes.CDLL(None, use_errno=True)
                self.active = self.libc.prctl(36, 1, 0, 0, 0) == 0          # PR_SET_CHILD_SUBREAPER
            except (OSError, AttributeError):
                pass
        self.known = set(self._children()) if self.active else set()
        return self

    def _children(self):
        me, found = os.getpid(), []
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    with open(f"/proc/{entry}/stat", "rb") as f:
                        stat = f.read()
                except OSError:
                    continue
                fields = stat[stat.rfind(b")") + 2:].split()
                if len(fields) > 1 and int(fields[1]) == me:
                    found.append(int(entry))
        return found

    def sweep(self):
        """Kill and reap the processes left behind; returns how many there were."""
        if not self.active:
            return 0
        count = 0
        for _ in range(20):                        # each round may bring the orphans of the one before
            strays = [pid for pid in self._children() if pid not in self.known]
            if not strays:
                break
            for pid in strays:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            for pid in strays:
                try:
                    os.waitpid(pid, 0)
                except ChildProcessError:
                    pass
                count += 1
        return count

    def __exit__(self, *exc):
        if self.active:
            self.sweep()
            self.libc.prctl(36, 0, 0, 0, 0)
        return False


def child_file_name(name):
    """The name the copy of a submission gets: the original's, in letters, digits, ``_``, ``-`` and ``.``."""
    import re
    base = re.sub(r"[^A-Za-z0-9_.-]", "_", os.path.basename(str(name))) or "submission"
    return base if base.endswith(".py") else base + ".py"


def make_folder(file_name, source):
    """A fresh temporary folder holding only ``source`` saved as ``file_name``; remove with ``remove_folder``."""
    folder = tempfile.mkdtemp(prefix="grade-")
    with open(os.path.join(folder, file_name), "wb") as f:
        f.write(source)
    return folder


def remove_folder(folder):
    shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    child_main()
