"""Where a benchmark measures: a fresh child process per measured run (so that its peak RSS is
its own), that process's peak RSS, and the host: its CPU and its matrix-multiply speed."""

from __future__ import annotations

import multiprocessing as mp
import platform
import resource
import time
from pathlib import Path

import torch


def peak_rss_mb() -> float:
    """The peak resident set size of this process so far, in MB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def in_child(fn, *args):
    """`fn(*args)` run in a fresh spawned child process; its return value (picklable).

    The pool is closed and joined, not terminated (as leaving a `with Pool` block does): a
    terminated child skips its exit handlers, so a named semaphore it made (tqdm's write lock,
    for one) stays registered with multiprocessing's resource tracker, which then warns of
    "leaked semaphore objects" when the run ends."""
    pool = mp.get_context("spawn").Pool(1)
    try:
        return pool.apply(fn, args)
    finally:
        pool.close()
        pool.join()


def host_gemm_gflops(threads: int, size: int = 1024, seconds: float = 2.0) -> float:
    """The host's float32 matrix-multiply speed (GFLOP/s) with the training's thread count: seconds
    per epoch measured on two hosts of the same kind differ with it (cloud CPUs of one kind have
    differed by 2x here), so the benchmark records it beside them."""
    torch.set_num_threads(threads)
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        a @ b
        n += 1
    return round(2 * size**3 * n / (time.perf_counter() - t0) / 1e9, 1)


def host_cpu() -> str:
    """The host's CPU model and how many CPUs this process sees, e.g. "AMD EPYC, 2 CPUs": what a
    benchmark's seconds (and, across kinds of CPU, a model's last bits) depend on. The model
    name from /proc/cpuinfo on Linux, else what the platform module knows."""
    name = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    name = " ".join(name.split()) or platform.processor() or platform.machine() or "unknown CPU"
    return f"{name}, {mp.cpu_count()} CPUs"


def pyplot():
    """matplotlib.pyplot on the file-only Agg backend (imported on first use: it is slow to
    import, and only the benchmarks' plots need it)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
