"""The course kit: a student release of this repository, without the answers.

    python -m attribution.course release OUT/ [--source REPO]

As nbgrader does, the instructor's source holds the answers between markers, and the release is generated
from it (``minicnn/assignments.py`` shows the markers). The release:

- replaces every marked block in the library by a call of the student's own function
  (``minicnn.assignments.student_solution``): finishing an assignment unlocks what is built on it;
- removes the instructor's answers to the written questions of the tutorials and assignments (between
  ``BEGIN ANSWER`` and ``END ANSWER`` lines, in scripts and notebooks alike);
- leaves out the reference solutions (``tests/solutions/``), the grader and the tests that read either (the
  grader runs from the instructor's installation: ``python -m attribution.grade ASSIGNMENT FILE``), the git
  history, caches and compiled files;
- is checked before it is kept: no marker and no line of a marked block may survive in any file, notebooks
  and documents included. It is written to a temporary folder next to OUT and renamed, so a failed release
  leaves nothing behind.
"""
import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

BEGIN = re.compile(r"^(?P<indent>\s*)# BEGIN SOLUTION (?P<assignment>\w+)\.(?P<function>\w+)\((?P<args>.*)\)\s*$")
END = re.compile(r"^\s*# END SOLUTION\s*$")
# An instructor's answer to a written question, in a tutorial's or an assignment's text (a markdown cell of
# a `# %%` script, where the lines start with "# ", or of a notebook, where they do not).
BEGIN_ANSWER = re.compile(r"^\s*(# )?BEGIN ANSWER\s*$")
END_ANSWER = re.compile(r"^\s*(# )?END ANSWER\s*$")
ANSWER_LEFT = "(Your answer. The instructor's is not in this copy.)"

# What a student release leaves out: the answers, the grader, the tests that read them, and what is not source.
LEFT_OUT = ("tests/solutions/", "attribution/grade.py", "attribution/course.py", "tests/test_grading.py",
            "tests/test_grader_attacks.py", "tests/hostile_submissions.py", "tests/test_course.py")
NOT_SOURCE = (".git/", "__pycache__/", ".pytest_cache/", "build/", "dist/", ".ipynb_checkpoints/")


def source_files(root):
    """The repository's files (relative paths): git's list of tracked and untracked-but-not-ignored files where
    ``root`` is a git checkout, else every file under it except caches and compiled files."""
    root = Path(root)
    try:
        listed = subprocess.run(["git", "-C", str(root), "ls-files", "--cached", "--others", "--exclude-standard"],
                                capture_output=True, text=True, check=True).stdout.splitlines()
        files = [f for f in listed if (root / f).is_file()]
    except (OSError, subprocess.CalledProcessError):
        files = [p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()]
    return sorted(f for f in files if not any(part in f"/{f}" for part in [f"/{n}" for n in NOT_SOURCE])
                  and not f.endswith((".pyc", ".pyo")) and ".egg-info/" not in f)


def _replace_blocks(text, name, begin, end, what, replacement):
    """(the text with each block from a ``begin`` line to an ``end`` line replaced by ``replacement(the begin
    line's match)``, [the removed blocks]). ValueError naming the line for a block inside another, an end
    without its begin or a begin without its end; ``what`` names the marker (SOLUTION, ANSWER)."""
    out, removed, block = [], [], None                       # block: (match, line number, its lines)
    for number, line in enumerate(text.splitlines(keepends=True), 1):
        start = begin.match(line)
        if start:
            if block is not None:
                raise ValueError(f"{name}:{number}: a BEGIN {what} inside another (line {block[1]})")
            block = (start, number, [])
        elif end.match(line):
            if block is None:
                raise ValueError(f"{name}:{number}: END {what} without its BEGIN {what}")
            out.append(replacement(block[0]))
            removed.append("".join(block[2]))
            block = None
        else:
            (block[2] if block is not None else out).append(line)
    if block is not None:
        raise ValueError(f"{name}:{block[1]}: BEGIN {what} without its END {what}")
    return "".join(out), removed


def strip_solutions(text, name="a file"):
    """(the text with each marked block replaced by a call of the student's function, [the removed blocks]).
    ValueError for a marker without its end, or an end without its marker."""
    text, removed = _replace_blocks(
        text, name, BEGIN, END, "SOLUTION",
        lambda m: f'{m["indent"]}return student_solution("{m["assignment"]}", "{m["function"]}")({m["args"]})\n')
    if removed and "student_solution" not in text.split("def ", 1)[0]:
        text = _import_student_solution(text)
    return text, removed


def strip_answers(text, name="a file"):
    """(the text with each BEGIN ANSWER ... END ANSWER block replaced by one line asking for the student's
    answer, [the removed answers]). ValueError for an unpaired marker."""
    return _replace_blocks(text, name, BEGIN_ANSWER, END_ANSWER, "ANSWER",
                           lambda m: f"{m.group(1) or ''}{ANSWER_LEFT}\n")


OUTPUT_LEFT = "(This output is not in the student release: it showed code you are to write.)\n"


def _output_text(output):
    """The text a notebook output shows: a stream's text, or a result's text/plain."""
    text = output.get("text", output.get("data", {}).get("text/plain", ""))
    return "".join(text) if isinstance(text, list) else str(text)


def notebook_text(nb):
    """Everything a notebook shows as text: its cells' sources and their outputs' text."""
    parts = []
    for cell in nb.get("cells", []):
        source = cell.get("source", "")
        parts.append("".join(source) if isinstance(source, list) else source)
        parts += [_output_text(o) for o in cell.get("outputs", [])]
    return "\n".join(parts)


def strip_notebook_answers(data, name="a notebook", telltale_lines=()):
    """A notebook's JSON text with the answers removed from every cell (``strip_answers``) and every output
    that shows a telltale line of a graded body (an executed notebook that printed the library's source)
    replaced by a note; and the answers."""
    import json
    nb = json.loads(data)
    removed = []
    for cell in nb.get("cells", []):
        source = cell.get("source", "")
        text = "".join(source) if isinstance(source, list) else source
        stripped, answers = strip_answers(text, name)
        if answers:
            cell["source"] = stripped
            removed += answers
        for i, output in enumerate(cell.get("outputs", [])):
            shown = _output_text(output)
            if any(line in shown for line in telltale_lines):
                cell["outputs"][i] = {"output_type": "stream", "name": "stdout", "text": OUTPUT_LEFT}
    return json.dumps(nb, indent=1, ensure_ascii=False) + "\n", removed


def _import_student_solution(text):
    """The module's text with ``from minicnn.assignments import student_solution`` after its first imports."""
    lines = text.splitlines(keepends=True)
    last_import = max((i for i, line in enumerate(lines) if line.startswith(("import ", "from "))), default=-1)
    lines.insert(last_import + 1, "from minicnn.assignments import student_solution  # a student release\n")
    return "".join(lines)


def _code_lines(text):
    """The stripped lines of ``text`` that are code (not blank, not a comment)."""
    return [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]


def _all_lines(text):
    """Every non-blank line of ``text``, stripped, a leading comment sign too (a markdown line of a script)."""
    return [line.strip().lstrip("#").strip() for line in text.splitlines() if line.strip().lstrip("#").strip()]


def telltales(stripped_text, removed, prose=False):
    """The lines of a file's removed blocks that would give an answer away if found anywhere: their lines of 15
    characters or more (code lines; with ``prose``, the answers' text lines, of 25 or more) that the file's
    remaining text does not also have (a prologue such as ``N, C, H, W = x.shape``, shared with the function
    beside it, gives nothing away)."""
    generic = set(_all_lines(stripped_text))
    lines = (_all_lines if prose else _code_lines)
    return {line for block in removed for line in lines(block)
            if len(line) >= (25 if prose else 15) and line not in generic}


def check_release(folder, telltale_lines):
    """Raise ValueError naming the file if a marker, a compiled file or a telltale line of a graded body
    (``telltales``) is found anywhere in ``folder``: sources, notebooks and documents alike."""
    for path in Path(folder).rglob("*"):
        if not path.is_file():
            continue
        rel = path.relative_to(folder).as_posix()
        if path.suffix in (".pyc", ".pyo") or "__pycache__" in rel:
            raise ValueError(f"the release holds a compiled file: {rel}")
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue                                              # images, weights: no source in them
        if any(m.match(line) for line in text.splitlines() for m in (BEGIN, END, BEGIN_ANSWER, END_ANSWER)):
            raise ValueError(f"a solution or answer marker survived in {rel}")
        if path.suffix == ".ipynb":
            import json
            text = notebook_text(json.loads(text))                # outputs too: an executed notebook prints
        found = sorted(line for line in telltale_lines if line in text)      # within a longer line too
        if found:
            raise ValueError(f"{rel} still holds a line of a graded body: {found[0]!r}")


STUDENT_NOTE = """# The student release

This copy of minicnn-attribution is made for a course. Some of the library's code is yours to write: the
functions in `tutorials/assignments/`. Where the library needs one of them (the ReLU rules, max pooling's
backward pass, the convolution's backward pass, Grad-CAM, DeepLIFT's rescale rule, LRP's epsilon rule, the
residual block's backward pass, two CAM weightings), it calls your function; until you have
written it, the call stops and says which assignment and which file to finish. Each tutorial runs once the
assignments it builds on are done.

Your instructor grades your files with the course's grader (`python -m attribution.grade ASSIGNMENT FILE`
on their own installation); it is not part of this copy.
"""


def release(out, source=None):
    """Write the student release of the repository at ``source`` (default: the one this package is in) to the
    new folder ``out``. Returns the list of (file, function) blocks replaced."""
    source = Path(source) if source else Path(__file__).resolve().parent.parent
    out = Path(out)
    if out.exists():
        raise ValueError(f"{out} exists; the release goes to a new folder (nothing is overwritten)")
    if not (source / "minicnn").is_dir() or not (source / "attribution").is_dir():
        raise ValueError(f"{source} is not a minicnn-attribution checkout (no minicnn/ and attribution/)")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    replaced, telltale_lines = [], set()
    try:
        files = source_files(source)
        for rel in sorted(files, key=lambda f: f.endswith(".ipynb")):   # the notebooks last: they need the
            # telltale lines of every source file, to drop outputs that printed a graded body
            if any(rel == x or rel.startswith(x) for x in LEFT_OUT):
                continue
            target = staging / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            if rel.endswith(".py"):
                text = (source / rel).read_text(encoding="utf-8")
                text, removed = strip_solutions(text, rel)
                telltale_lines |= telltales(text, removed)
                replaced += [(rel, b) for b in removed]
                text, answers = strip_answers(text, rel)
                telltale_lines |= telltales(text, answers, prose=True)
                target.write_text(text, encoding="utf-8")
            elif rel.endswith(".ipynb"):
                text, answers = strip_notebook_answers((source / rel).read_text(encoding="utf-8"), rel,
                                                       telltale_lines)
                telltale_lines |= telltales(text, answers, prose=True)
                target.write_text(text, encoding="utf-8")
            else:
                shutil.copy2(source / rel, target)
        if not replaced:
            raise ValueError(f"no marked solution blocks in {source}: nothing to release")
        (staging / "STUDENT_RELEASE.md").write_text(STUDENT_NOTE, encoding="utf-8")
        check_release(staging, telltale_lines)
        os.replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return replaced


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m attribution.course", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("release", help="write the student release to a new folder")
    p.add_argument("out", help="the new folder")
    p.add_argument("--source", default=None, help="the instructor's checkout (default: this package's)")
    args = parser.parse_args(argv)
    try:
        replaced = release(args.out, args.source)
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    files = sorted({rel for rel, _ in replaced})
    print(f"wrote {Path(args.out).resolve()}: {len(replaced)} graded bodies replaced in {', '.join(files)}; "
          f"no reference solutions, grader or history")
    return 0


if __name__ == "__main__":
    sys.exit(main())
