"""How many BLAS threads on a shared machine? `attribution demo` with all cores' threads and with one, on an
idle machine and while other processes keep every core busy.

    python benchmarks/bench_threads.py [--rounds 3] [--busy 2]

Each round times the whole command (a fresh process: imports, the model, every method, the figure) with the
default threads and with ``--threads 1``, in alternating order. "Busy": ``--busy`` child processes spin on
pure Python meanwhile, as classmates' jobs would on a lab server. Prints the median of each and their ratio.
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))
from common import threads_note, use_native_kernels  # noqa: E402

use_native_kernels()

SPIN = "import time\nend = time.time() + 600\nwhile time.time() < end:\n    pass\n"


def run_demo(threads, out):
    command = [sys.executable, "-m", "attribution", "demo", "--out", out]
    if threads:
        command += ["--threads", str(threads)]
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--busy", type=int, default=os.cpu_count() or 2, help="spinning processes (default: cores)")
    args = parser.parse_args()
    print(f"{threads_note()}; {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory() as folder:
        out = os.path.join(folder, "demo.png")
        for load in ("idle", "busy"):
            spinners = [subprocess.Popen([sys.executable, "-c", SPIN]) for _ in range(args.busy if load == "busy"
                                                                                      else 0)]
            try:
                times = {"all threads": [], "--threads 1": []}
                for r in range(args.rounds):
                    order = list(times) if r % 2 == 0 else list(times)[::-1]
                    for side in order:
                        time.sleep(0.25)
                        times[side].append(run_demo(1 if side == "--threads 1" else None, out))
            finally:
                for p in spinners:
                    p.kill()
                    p.wait()
            a, b = statistics.median(times["all threads"]), statistics.median(times["--threads 1"])
            what = f"{args.busy} busy processes" if load == "busy" else "idle"
            print(f"{what:>18}: attribution demo {a:6.1f} s with all threads, {b:6.1f} s with --threads 1 "
                  f"(ratio {b / a:.2f}; medians of {args.rounds} alternating rounds)", flush=True)


if __name__ == "__main__":
    main()
