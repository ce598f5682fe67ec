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
    """Peak resident memory of this process so far, in MB (Linux reports KB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def threads_note():
    import numpy as np
    try:
        from threadpoolctl import threadpool_info
        blas = ", ".join(f"{i['internal_api']} {i.get('num_threads')} threads" for i in threadpool_info())
    except ImportError:
        blas = "threadpoolctl not installed"
    return f"cpus={os.cpu_count()} numpy {np.__version__} ({blas})"
