"""Issue 23: a class batch holding a hostile submission of every class of attack (tests/hostile_submissions.py)
gives none of them marks they did not earn, changes no file outside its own copy, finishes within its
deadlines and writes its table, while the honest solutions beside them keep full marks."""
import csv
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

import attribution
from attribution.sandbox import landlock_abi
from hostile_submissions import make_class

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 3                  # seconds per function: the hangs cost this much each


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    base = tmp_path_factory.mktemp("class")
    folder = base / "submissions"
    folder.mkdir()
    marker = base / "pickle_ran"
    marker_arg = f"left-behind-{os.getpid()}-{time.time_ns()}"
    decoy = Path(attribution.__file__).parent / "_vandal_was_here.py"         # a file the grader would import
    attacks = make_class(folder, folder / "zoe.py", marker, marker_arg, decoy)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    sources = {p.name: p.read_bytes() for p in (ROOT / "attribution").glob("*.py")}
    table = base / "grades.csv"
    start = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "attribution.grade", "relu_maxpool", str(folder), "--csv",
                             str(table), "--timeout", str(TIMEOUT), "--submission-timeout", "30"],
                            capture_output=True, text=True, timeout=600, cwd=base)
    elapsed = time.monotonic() - start
    rows = {r["student"]: r for r in csv.DictReader(table.open())} if table.exists() else {}
    yield dict(result=result, rows=rows, attacks=attacks, folder=folder, before=before, marker=marker,
               marker_arg=marker_arg, decoy=decoy, sources=sources, elapsed=elapsed)
    if decoy.exists():
        decoy.unlink()


def test_the_batch_finishes_and_writes_every_row(batch):
    result, rows = batch["result"], batch["rows"]
    assert result.returncode == 1, result.stdout + result.stderr            # 1: not everyone has full marks
    assert set(rows) == set(batch["attacks"]) | {"alice", "zoe"}, result.stdout + result.stderr
    # 16 files, 4 functions; a hang costs one function's deadline, never more
    assert batch["elapsed"] < 240, batch["elapsed"]


def test_honest_students_keep_full_marks(batch):
    for student in ("alice", "zoe"):
        assert float(batch["rows"][student]["total points"]) == 7, batch["rows"][student]


@pytest.mark.parametrize("attack", sorted(__import__("hostile_submissions").ATTACKS))
def test_no_attack_earns_a_mark(batch, attack):
    row = batch["rows"][attack]
    assert float(row["total points"]) == 0, (batch["attacks"][attack], row)


def test_each_attack_is_named_in_its_row(batch):
    rows = batch["rows"]
    guided = {name: rows[name]["relu_backward_guided reason"] for name in rows}
    assert "not a result" in guided["malformed"] or "not implemented" in guided["malformed"], guided["malformed"]
    assert "still running" in guided["busy_thread"] or "not a result" in guided["busy_thread"]
    assert "MemoryError" in guided["memory_hog"] or "ended the grading process" in guided["memory_hog"]
    assert "calls the library's own answer (minicnn.layers.ReLU)" in guided["hidden_library"]
    assert "calls the library's own answer (minicnn.layers.ReLU)" in rows["hidden_library"][
        "relu_backward_gradient reason"]
    assert "__import__ (names built at run time cannot be checked)" in guided["dynamic_import"]
    assert "float32" in rows["dtype_only"]["relu_backward_gradient reason"] or \
        "relative error" in rows["dtype_only"]["relu_backward_gradient reason"]


def test_reasons_are_one_short_line(batch):
    for row in batch["rows"].values():
        for key, value in row.items():
            assert len(value) <= 400 and "\n" not in value, (key, value[:80])
    assert "ValueError: xxx" in batch["rows"]["huge_message"]["relu_backward_guided reason"]


def test_nothing_the_students_print_reaches_the_report(batch):
    result = batch["result"]
    out = result.stdout + result.stderr
    assert "14/14 cases" not in out and "relu_backward_guided     3/3" not in out, out
    lines = result.stdout.splitlines()
    assert all(line.startswith(tuple(batch["rows"])) or line.startswith("wrote ") for line in lines), lines


def test_no_pickle_from_a_student_is_ever_loaded(batch):
    assert not batch["marker"].exists()


def test_no_process_outlives_the_batch(batch):
    if not hasattr(os, "fork"):
        pytest.skip("no fork on this platform")
    alive = []
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else []:
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        if batch["marker_arg"].encode() in cmdline:
            alive.append(entry)
    assert not alive, alive


def test_graded_copies_are_read_before_any_student_runs(batch):
    """Whatever "vandal" does to zoe.py, zoe is graded from the bytes read before anyone ran."""
    assert float(batch["rows"]["zoe"]["total points"]) == 7


@pytest.mark.skipif(landlock_abi() < 1, reason="no Landlock on this kernel: the grader cannot stop a write by "
                                               "absolute path (INSTRUCTORS.md: grade in a container)")
def test_no_file_outside_its_own_copy_changes(batch):
    folder = batch["folder"]
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == batch["before"]
    assert not batch["decoy"].exists()
    assert {p.name: p.read_bytes() for p in (ROOT / "attribution").glob("*.py")} == batch["sources"]


@pytest.mark.skipif(landlock_abi() < 6, reason="the kernel's Landlock cannot scope signals (ABI < 6)")
def test_the_grader_survives_a_kill_signal(batch):
    assert "parent_killer" in batch["rows"] and "zoe" in batch["rows"]


# --------------------------------------------------------------------------
# The channel, the options and the batch, one rule at a time
# --------------------------------------------------------------------------

def test_replies_are_parsed_without_pickle_and_every_rule_is_checked():
    import io
    import struct

    import numpy as np

    from attribution.sandbox import ProtocolError, decode_reply, encode_reply
    frame = encode_reply({"status": "ok", "case": 0}, [np.arange(6.0).reshape(2, 3)])
    header, arrays = decode_reply(frame[8:])
    assert header["case"] == 0 and np.array_equal(arrays[0], np.arange(6.0).reshape(2, 3))
    buffer = io.BytesIO()
    np.save(buffer, np.array([{"a": 1}], dtype=object), allow_pickle=True)      # an object array: a pickle
    blob = buffer.getvalue()
    head = b'{"status": "ok", "case": 0, "sizes": [%d]}' % len(blob)
    with pytest.raises(ProtocolError, match="not valid .npy"):
        decode_reply(struct.pack(">I", len(head)) + head + blob)
    for body, words in [(b"\x00", "shorter"), (struct.pack(">I", 1 << 30) + b"{}", "header of"),
                        (struct.pack(">I", 2) + b"[]", "not a JSON object"),
                        (struct.pack(">I", 5) + b"{oops", "not JSON"),
                        (struct.pack(">I", 15) + b'{"sizes": [99]}', "do not add up")]:
        with pytest.raises(ProtocolError, match=words):
            decode_reply(body)


def test_reasons_are_cut_and_kept_on_one_line():
    from attribution.sandbox import clean_reason
    assert clean_reason("a\nb\r\nc\x1b[2J") == "a b c [2J"
    assert len(clean_reason("x" * 10_000)) == 300


@pytest.mark.parametrize("args,words", [
    (["--seed", "-1"], "--seed must be a whole number from 0"),
    (["--timeout", "0"], "--timeout must be a number of seconds above 0"),
    (["--timeout", "nan"], "--timeout must be a number of seconds above 0"),
    (["--submission-timeout", "-5"], "--submission-timeout must be"),
    (["--memory", "1"], "--memory must be a number of megabytes from 64 up"),
])
def test_options_that_make_no_sense_are_refused(args, words):
    result = subprocess.run([sys.executable, "-m", "attribution.grade", "relu_maxpool",
                             str(ROOT / "tests" / "solutions" / "a_relu_maxpool.py")] + args,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and words in result.stderr and "Traceback" not in result.stderr, result.stderr


@pytest.mark.parametrize("csv_name,words", [("missing/grades.csv", "does not exist"), ("grades.txt", "must name a "
                                                                                                      ".csv file")])
def test_the_table_is_checked_before_any_grading(tmp_path, csv_name, words):
    folder = tmp_path / "subs"
    folder.mkdir()
    (folder / "slow.py").write_text("import time\ntime.sleep(60)\n")
    start = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "attribution.grade", "relu_maxpool", str(folder), "--csv",
                             str(tmp_path / csv_name)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and words in result.stderr, result.stderr
    assert time.monotonic() - start < 20                                  # nothing was graded


def test_a_file_that_cannot_be_graded_gets_a_row_that_says_why(tmp_path):
    from attribution.grade import MAX_SOURCE_BYTES, grade_folder
    folder = tmp_path / "subs"
    folder.mkdir()
    (folder / "big.py").write_text("#" * (MAX_SOURCE_BYTES + 1))
    (folder / "ok.py").write_text((ROOT / "tests" / "solutions" / "a_relu_maxpool.py").read_text())
    import io
    reports = grade_folder("relu_maxpool", folder, tmp_path / "g.csv", out=io.StringIO())
    assert all(p == 0 and "not graded" in why and "at most" in why for p, _, why in reports["big.py"].values())
    assert all(p == t for p, t, _ in reports["ok.py"].values())
