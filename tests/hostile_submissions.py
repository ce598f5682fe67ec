"""A class of hostile submissions for assignment A (relu_maxpool), one per class of attack on the grader
(issue 23). Each is the blank stub (every function raises NotImplementedError, so it has earned nothing)
with an attack added: any point it gets is a point the attack won. ``make_class(folder, ...)`` writes them
beside an honest student (``alice``, the reference solution) and returns {student: the attack}.
``tests/test_grader_attacks.py`` grades the folder as a batch and checks each row. ``zoe`` (the reference
solution too) is graded last, after "vandal" has tried to overwrite her file."""
from pathlib import Path

HERE = Path(__file__).resolve().parent
STUB = (HERE.parent / "tutorials" / "assignments" / "a_relu_maxpool.py").read_text()
SOLUTION = (HERE / "solutions" / "a_relu_maxpool.py").read_text()

# Every file descriptor the student's process might use to talk to the grader.
ALL_FDS = "range(0, 64)"

ATTACKS = {
    "forged_pass": ("forges 'case passed' messages on every channel, old and new format", '''
import os, pickle, struct, json
old = pickle.dumps(("case", "relu_backward_guided", "x", True, None))
head = json.dumps({"status": "ok", "case": 0, "tuple": False, "modified": [], "sizes": []}).encode()
new = struct.pack(">Q", 4 + len(head)) + struct.pack(">I", len(head)) + head
for fd in {fds}:
    for message in (struct.pack(">Q", len(old)) + old, new, b'{"status": "ready"}'):
        try:
            os.write(fd, message)
        except OSError:
            pass
'''),
    "pickle_bomb": ("sends a pickle that would run a command in the grader", '''
import os, pickle, struct
class Boom:
    def __reduce__(self):
        return (os.system, ("touch {marker}",))
payload = pickle.dumps(Boom())
for fd in {fds}:
    try:
        os.write(fd, struct.pack(">Q", len(payload)) + payload)
    except OSError:
        pass
'''),
    "patcher": ("patches numpy, builtins and the grader's own helpers", '''
import builtins, numpy
numpy.allclose = lambda *a, **k: True
numpy.array_equal = lambda *a, **k: True
builtins.abs = lambda x: 0
try:
    import attribution.grade as g
    g.expect_close = lambda *a, **k: None
    g.Case.check = lambda *a, **k: None
    g.POINTS.update({k: 1000 for k in g.POINTS})
except Exception:
    pass
def relu_backward_guided(dout, x):
    return numpy.zeros_like(dout)
'''),
    "frame_reader": ("looks for the expected values in the grader's stack frames", '''
import inspect, numpy
def relu_backward_guided(dout, x):
    for frame in inspect.stack():
        for name in ("expected", "exp", "value"):
            if name in frame.frame.f_locals and isinstance(frame.frame.f_locals[name], numpy.ndarray):
                return frame.frame.f_locals[name]
    return numpy.zeros_like(dout)
'''),
    "vandal": ("rewrites a classmate's file and the grader's source, by absolute and relative paths", '''
import os
def relu_backward_guided(dout, x):
    for path in ({victim!r}, "../zoe.py", "zoe.py", {grader_file!r}):
        try:
            with open(path, "w") as f:
                f.write("raise SystemExit(0)\\n")
        except OSError:
            pass
    raise NotImplementedError
'''),
    "busy_thread": ("a thread that keeps the channel busy so that no deadline would fire", '''
import os, threading, time
def spam():
    while True:
        for fd in {fds}:
            try:
                os.write(fd, b"\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x08junkjunk")
            except OSError:
                pass
        time.sleep(0.01)
try:
    threading.Thread(target=spam, daemon=True).start()
except RuntimeError:
    pass
def relu_backward_guided(dout, x):
    while True:
        time.sleep(0.1)
'''),
    "malformed": ("one malformed message: a huge length, then garbage", '''
import os
def relu_backward_guided(dout, x):
    for fd in {fds}:
        try:
            os.write(fd, b"\\x7f" * 8 + b"garbage")
        except OSError:
            pass
    raise NotImplementedError
'''),
    "memory_hog": ("asks for 64 GB", '''
import numpy
def relu_backward_guided(dout, x):
    hog = numpy.ones(8 << 30)
    return hog[:dout.size].reshape(dout.shape)
'''),
    "fork_leaver": ("starts a process that would outlive the grader (double fork and setsid)", '''
import os, sys
def relu_backward_guided(dout, x):
    if hasattr(os, "fork"):
        try:
            if os.fork() == 0:
                os.setsid()
                if os.fork() == 0:
                    os.execv(sys.executable, [sys.executable, "-c", "import time; time.sleep(600)", {marker_arg!r}])
                os._exit(0)
        except OSError:
            pass
    raise NotImplementedError
'''),
    "huge_message": ("an exception message of 50 MB", '''
def relu_backward_guided(dout, x):
    raise ValueError("x" * 50_000_000)
'''),
    "fake_report": ("prints fake report lines on the grader's stdout and stderr", '''
import os, sys
line = "relu_backward_guided     3/3  1/1 points  ok\\ntotal                    14/14 cases, 7/7 points\\n"
print(line)
print(line, file=sys.stderr)
for fd in (1, 2):
    os.write(fd, line.encode())
sys.__stdout__.write(line)
'''),
    "dtype_only": ("returns its input: right dtype, wrong values (the float32 cases used to check only the dtype)",
                   '''
def relu_backward_gradient(dout, x):
    return dout.copy()
def relu_backward_deconvnet(dout, x):
    return dout.copy()
def relu_backward_guided(dout, x):
    return dout.copy()
def maxpool_backward(dout, x, kernel_size, stride):
    return x.copy()
'''),
    "parent_killer": ("sends SIGKILL to the grader", '''
import os, signal
def relu_backward_guided(dout, x):
    try:
        os.kill(os.getppid(), getattr(signal, "SIGKILL", signal.SIGTERM))
    except OSError:
        pass
    raise NotImplementedError
'''),
    "hidden_library": ("calls the library's answer through a module-level name and a helper", '''
from minicnn.layers import ReLU as _R
_relu = _R()
def _helper(dout, x):
    _relu.forward(x)
    return _relu.backward(dout, rule="guided")
def relu_backward_guided(dout, x):
    return _helper(dout, x)
relu_backward_gradient = lambda dout, x: (_relu.forward(x), _relu.backward(dout, rule="gradient"))[1]
'''),
    "dynamic_import": ("imports the library's answer by a name built at run time", '''
def relu_backward_guided(dout, x):
    layers = __import__("minicnn.lay" + "ers", fromlist=["x"])
    relu = getattr(layers, "Re" + "LU")()
    relu.forward(x)
    return relu.backward(dout, rule="guided")
'''),
}


def make_class(folder, victim, marker, marker_arg, grader_file):
    """Write ``alice.py`` and ``zoe.py`` (the reference solution) and one file per attack into ``folder``."""
    folder = Path(folder)
    (folder / "alice.py").write_text(SOLUTION)
    (folder / "zoe.py").write_text(SOLUTION)
    for name, (_, attack) in ATTACKS.items():
        code = attack
        for key, value in (("{fds}", ALL_FDS), ("{marker}", str(marker)), ("{victim!r}", repr(str(victim))),
                           ("{grader_file!r}", repr(str(grader_file))), ("{marker_arg!r}", repr(marker_arg))):
            code = code.replace(key, value)
        (folder / f"{name}.py").write_text(STUB + "\n" + code)
    return {name: what for name, (what, _) in ATTACKS.items()}
