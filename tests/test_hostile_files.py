"""Issue 12: every hostile or broken checkpoint in the corpus (tests/hostile_checkpoints.py) gives a
CheckpointError from the API and `error: ...` with exit status 2 from `python -m minicnn convert`, within
seconds, under 500 MB of peak memory, and a valid file still reads correctly afterwards in the same process.

The files are fed to one child process that limits its own address space (resource.setrlimit, Unix only:
this is a test tool, the package itself never uses it) and reports as JSON."""
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from hostile_checkpoints import make_corpus, valid_checkpoint

resource = pytest.importorskip("resource", reason="the memory limit needs the Unix resource module")

CHILD = textwrap.dedent("""
    import contextlib, io, json, resource, sys, time
    from pathlib import Path
    limit = 3 * 2 ** 30                   # address space: numpy and BLAS threads reserve much more than they touch
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    import numpy as np
    from minicnn import CheckpointError, load_torch_checkpoint
    from minicnn.cli import main
    folder, valid = Path(sys.argv[1]), sys.argv[2]
    report = {}
    for path in sorted(folder.glob("*.pth")):
        entry = {}
        start = time.perf_counter()
        try:
            load_torch_checkpoint(path)
            entry["api"] = "loaded without error"
        except CheckpointError as e:
            entry["api"] = "CheckpointError"
            entry["message"] = str(e)
        except BaseException as e:
            entry["api"] = f"raw {type(e).__name__}: {e}"[:300]
        entry["seconds"] = time.perf_counter() - start
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            try:
                code = main(["convert", "vgg16", str(path), "-o", str(folder / "out.npz")])
            except BaseException as e:
                code = f"raised {type(e).__name__}"
        entry["convert_exit"], entry["convert_stderr"] = code, err.getvalue()[:400]
        report[path.name] = entry
    state = load_torch_checkpoint(valid)
    report["__valid__"] = {"w": state["w"].tolist(), "dtype": str(state["w"].dtype)}
    # VmHWM: this program's own peak (ru_maxrss would carry the pytest parent's peak across fork + exec)
    with open("/proc/self/status") as f:
        peak = [int(line.split()[1]) for line in f if line.startswith("VmHWM:")]
    report["__peak_mb__"] = (peak[0] if peak else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) / 1024
    print(json.dumps(report))
""")


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hostile")
    made = make_corpus(folder)
    valid = folder / "valid.ckpt"
    valid_checkpoint(valid)
    result = subprocess.run([sys.executable, "-c", CHILD, str(folder), str(valid)], capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return made, json.loads(result.stdout)


def test_the_corpus_is_large_and_covers_every_class(report):
    made, _ = report
    assert len(made) >= 50
    for words in ("memory bomb", "shared state", "BUILD", "recursion", "overflow", "type:", "zip:", "zlib",
                  "encrypted", "compression", "CRC", "legacy", "memo", "inflat", "many paths", "referenced"):
        assert any(words in what for what in made.values()), words


def test_every_file_is_a_checkpoint_error_from_the_api(report):
    made, got = report
    wrong = {name: got[name]["api"] for name in made if got[name]["api"] != "CheckpointError"}
    assert not wrong, wrong
    # refused before allocating: nothing ran into the memory limit
    ran_out = [name for name in made if "more memory than this machine has" in got[name]["message"]]
    assert not ran_out, ran_out


def test_every_file_fails_convert_with_exit_2_and_a_message(report):
    made, got = report
    for name in made:
        entry = got[name]
        assert entry["convert_exit"] == 2, (name, entry)
        assert entry["convert_stderr"].startswith("error: ") and "Traceback" not in entry["convert_stderr"], name


def test_each_file_is_refused_within_seconds_and_memory_stays_low(report):
    made, got = report
    slow = {name: round(got[name]["seconds"], 2) for name in made if got[name]["seconds"] > 5}
    assert not slow, slow
    assert got["__peak_mb__"] < 500, got["__peak_mb__"]


def test_a_valid_file_still_reads_correctly_after_the_corpus(report):
    _, got = report
    assert got["__valid__"] == {"w": [[0.0, 1.0], [2.0, 3.0]], "dtype": "float32"}


def test_the_messages_name_the_problem(report):
    _, got = report
    expect = {"zero_strides.pth": "overlapping or zero strides", "build_on_storage_type.pth": "sets state on",
              "encrypted.pth": "encrypted", "compression_unknown.pth": "compression method 99",
              "inflating_pickle.pth": "expected at most", "legacy_huge_count.pth": "truncated",
              "self_reference.pth": "contains itself", "huge_memo_1.pth": "corrupt",
              "bad_crc.pth": "CRC", "one_tensor_many_refs.pth": "appears under 20000 names",
              "deep_dicts.pth": "nest more than",
              "float_size.pth": "non-negative integer", "many_views_of_one_storage.pth": "more than the"}
    import re
    for name, pattern in expect.items():
        assert re.search(pattern, got[name]["message"]), (name, got[name]["message"])


def test_corpus_files_that_are_npz_weights_are_refused_too(tmp_path):
    """A truncated or bomb .npz given as --model (or found in the cache) is an error too, not a traceback."""
    import numpy as np

    from minicnn.weights import read_weights
    good = tmp_path / "good.npz"
    np.savez(good, w=np.arange(4, dtype=np.float32))
    data = good.read_bytes()
    (tmp_path / "cut.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="not a readable .npz"):
        read_weights(tmp_path / "cut.npz")
    # a member whose .npy header declares 2^40 elements over 16 bytes of data
    header = "{'descr': '<f4', 'fortran_order': False, 'shape': (1099511627776,), }".ljust(117) + "\n"
    npy = b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header.encode() + b"\0" * 16
    import zipfile
    with zipfile.ZipFile(tmp_path / "bomb.npz", "w") as z:
        z.writestr("w.npy", npy)
    with pytest.raises(ValueError, match="declares .* bytes but holds"):
        read_weights(tmp_path / "bomb.npz")
    assert read_weights(good)["w"].tolist() == [0, 1, 2, 3]
    result = subprocess.run([sys.executable, "-m", "attribution", "explain", str(Path(__file__).parent /
                             "fixtures" / "tiny_vgg16_zip.pth"), "--model", str(tmp_path / "cut.npz"),
                             "--out", str(tmp_path / "x.png")], capture_output=True, text=True)
    assert result.returncode == 2 and "error:" in result.stderr and "Traceback" not in result.stderr
