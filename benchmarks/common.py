"""Shared helpers for the benchmarks: timing by median, thread settings, peak memory."""
import os
import resource
import statistics
import time


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
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def threads_note():
    import numpy as np
    try:
        from threadpoolctl import threadpool_info
        blas = ", ".join(f"{i['internal_api']} {i.get('num_threads')} threads" for i in threadpool_info())
    except ImportError:
        blas = "threadpoolctl not installed"
    return f"cpus={os.cpu_count()} numpy {np.__version__} ({blas})"
