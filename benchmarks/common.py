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
