"""Shared helpers for the benchmarks: native kernels, timing by median, the matrix-product peak, peak memory.

Every benchmark calls ``use_native_kernels()`` before it imports NumPy.
"""
import os
import statistics
import subprocess
import sys
import time

PINNING = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")


def use_native_kernels():
    """Run this benchmark with OpenBLAS on its own choice of kernels.

    Some machines pin OpenBLAS to older kernels through OPENBLAS_CORETYPE and
    OPENBLAS_L2_SIZE (a safety default that halves NumPy's matrix speed on an
    AVX-512 CPU and leaves PyTorch alone). OpenBLAS reads them once, when
    NumPy loads it, so the benchmark runs again, as a child, without them:
    only this process and its children, never the tests or CI.
    """
    if not any(name in os.environ for name in PINNING):
        return
    if "numpy" in sys.modules:
        raise RuntimeError("use_native_kernels() must run before NumPy is imported")
    env = {k: v for k, v in os.environ.items() if k not in PINNING}
    command = getattr(sys, "orig_argv", [sys.executable] + sys.argv)[1:]     # as started, -c or -m included
    sys.exit(subprocess.run([sys.executable] + command, env=env).returncode)


def median_time(fn, repeat=5, warmup=1):
    """Median wall time of fn() over `repeat` runs, after `warmup` untimed runs."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


SETTLE = 0.25        # seconds of rest before each timed sample (see settled_rounds)


def settled_rounds(sides, rounds=5, warmup=2):
    """{side: [seconds per round]} for ``sides`` = {name: fn}, timed in alternating rounds.

    Each sample starts after SETTLE seconds of rest: OpenBLAS's worker threads
    spin about 0.1 s after each product (and torch's OpenMP threads likewise),
    and a product started in that window by the *other* library runs 2-6x
    slower. The order of the sides rotates from round to round, so neither
    always goes first. Every side runs ``warmup`` times untimed first.
    """
    names = list(sides)
    for name in names:
        for _ in range(warmup):
            sides[name]()
    times = {name: [] for name in names}
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            time.sleep(SETTLE)
            start = time.perf_counter()
            sides[name]()
            times[name].append(time.perf_counter() - start)
    return times


def ratio_summary(ours, theirs):
    """'median (min-max)' of the per-round ratios ours/theirs, and the median ratio."""
    ratios = sorted(a / b for a, b in zip(ours, theirs))
    return f"{statistics.median(ratios):.2f} ({ratios[0]:.2f}-{ratios[-1]:.2f})", statistics.median(ratios)


def route(direct):
    """``with route(direct):`` runs minicnn with the Winograd route off (every convolution by the direct route)
    when direct is true, and as chosen by default otherwise."""
    import contextlib

    from minicnn import winograd
    return winograd.disabled() if direct else contextlib.nullcontext()


def minicnn_step(model, x, grad, direct=False):
    """One forward pass of a minicnn model on x; with grad, also the input gradient of logit 1. direct: with
    the Winograd route switched off (``route``)."""
    import numpy as np

    with route(direct):
        logits = model.forward(x)
        if grad:
            dout = np.zeros_like(logits)
            dout[:, 1] = 1
            model.backward(dout)


def torch_step(net, x, grad):
    """The same in PyTorch: a forward pass without autograd, or forward + the input gradient of logit 1."""
    import torch
    if not grad:
        with torch.no_grad():
            net(x)
        return
    x = x.detach().requires_grad_(True)
    net(x)[:, 1].sum().backward()


def child_peak(script, side, case, n_images):
    """Peak RSS in MB of one case run by ``script --memory-child side case n_images`` in a fresh process (so that
    neither side counts the other's memory), or NaN (with the reason on stderr) if it failed."""
    out = subprocess.run([sys.executable, script, "--memory-child", side, case, str(n_images)],
                         capture_output=True, text=True)
    if out.returncode != 0:
        reason = "killed (out of memory?)" if out.returncode < 0 else out.stderr.strip()[-500:]
        print(f"{side} {case} on {n_images} images failed: {reason}", file=sys.stderr)
        return float("nan")
    return float(out.stdout.strip().splitlines()[-1])


def matmul_peak_gflops(size=2048, repeat=5):
    """NumPy's float32 matrix-product speed on one large square product, in GFLOP/s: the "peak"
    each case's share is measured against (what one sample's products could reach at best)."""
    import numpy as np
    a = np.random.default_rng(0).standard_normal((size, size)).astype(np.float32)
    out = np.empty_like(a)
    seconds = median_time(lambda: np.matmul(a, a, out=out), repeat, warmup=2)
    return 2 * size ** 3 / seconds / 1e9


def peak_rss_mb():
    """Peak resident memory of this process so far, in MB.

    Linux's VmHWM, which a new program starts afresh (ru_maxrss would carry the
    parent's peak across fork + exec)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def blas_kernel():
    """The BLAS NumPy uses and its kernel, e.g. "openblas 0.3.31 SkylakeX kernels, 2 threads"."""
    import numpy  # noqa: F401  (loads the BLAS that threadpoolctl then reports)
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "BLAS kernel unknown (pip install threadpoolctl to print it)"
    blas = [i for i in threadpool_info() if i.get("user_api") == "blas"]
    if not blas:
        return "no BLAS library found by threadpoolctl"
    return "; ".join(f"{i['internal_api']} {i.get('version')} {i.get('architecture', '?')} kernels, "
                     f"{i.get('num_threads')} threads" for i in blas)


def threads_note():
    import numpy as np
    pinned = [f"{k}={os.environ[k]}" for k in PINNING if k in os.environ]
    return (f"cpus={os.cpu_count()} numpy {np.__version__} ({blas_kernel()})"
            + (f" PINNED by {', '.join(pinned)}" if pinned else ""))


def report_worst_errors(nets, seed, one_net, against):
    """The parity scripts' loop: ``one_net(k) -> (description, {name: error})`` for each of ``nets`` nets, a
    progress line per net on stderr, then the largest error per name on stdout."""
    worst = {}
    for k in range(nets):
        what, errors = one_net(k)
        print(f"net {k + 1:2d}/{nets}: {what}: worst {max(errors.values()):.1e}", file=sys.stderr)
        for name, e in errors.items():
            worst[name] = max(worst.get(name, 0.0), e)
    print(f"largest error over {nets} random nets (seed {seed}), {against}:")
    width = max(map(len, worst)) + 2
    for name, e in worst.items():
        print(f"  {name:{width}s} {e:.1e}")
    return worst
