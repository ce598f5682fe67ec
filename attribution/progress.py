"""Progress of long work (SmoothGrad, Integrated Gradients, occlusion, LIME, SHAP): off by default in the API.

    attr.smoothgrad(..., progress=True)                  # a line on stderr: done/total, elapsed, time left
    attr.lime(..., progress=lambda done, total: ...)     # or your own callable

Always stderr, never stdout: piped output stays clean. On a terminal the line rewrites itself; into a
file or pipe it prints at most about ten lines per task.
"""
import sys
import time


class Progress:
    """``Progress(what, total, progress)``: call ``update(done)`` as work finishes, ``close()`` at the end.

    progress: False/None (silent), True (a line on stderr) or a callable ``f(done, total)``."""

    def __init__(self, what, total, progress=False, stream=None):
        if not (progress is None or isinstance(progress, bool) or callable(progress)):
            raise ValueError(f"progress must be True, False or a callable f(done, total), got {progress!r}")
        self.what, self.total, self.progress = what, max(int(total), 1), progress
        self.stream = stream or sys.stderr
        self.start = time.perf_counter()
        self.shown = -1
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())

    def update(self, done):
        if not self.progress:
            return
        if callable(self.progress) and self.progress is not True:
            self.progress(done, self.total)
            return
        tenth = 10 * done // self.total
        if not self.tty and (tenth == self.shown and done < self.total):
            return                                     # into a file: about ten lines, not one per step
        self.shown = tenth
        elapsed = time.perf_counter() - self.start
        left = elapsed / done * (self.total - done) if done else float("nan")
        line = f"{self.what}: {done}/{self.total}, {elapsed:.1f} s, ~{left:.1f} s left"
        print(("\r" + line) if self.tty else line, end="" if self.tty else "\n", file=self.stream, flush=True)

    def close(self):
        if self.progress is True and self.tty:
            print(file=self.stream, flush=True)
