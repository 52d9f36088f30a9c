"""Probes of the machine a process runs on: CPU features, matmul speed, peak memory.

Everything that asks the hardware lives here, so that a decision that depends on it (which
kernels run, how a benchmark is normalised) has one place to look and one to fake in tests.
"""

from __future__ import annotations

import resource
import time
from functools import lru_cache


@lru_cache(maxsize=1)
def cpu_flags() -> tuple[str, ...]:
    """This (Linux) machine's CPU feature flags from /proc/cpuinfo, in its order; empty
    where unreadable."""
    try:
        with open("/proc/cpuinfo") as info:
            return tuple(next((line.split() for line in info if line.startswith("flags")), []))
    except OSError:
        return ()


def cpu_has_bf16() -> bool:
    """Whether the CPU has bf16 dot-product instructions (AVX512-BF16 or AMX)."""
    flags = cpu_flags()
    return "avx512_bf16" in flags or "amx_bf16" in flags


def cpu_has_f16c() -> bool:
    """Whether the CPU converts float16 (F16C), which the decoding step's float16 weights need."""
    return "f16c" in cpu_flags()


def gpu_visible() -> bool:
    """Whether TensorFlow sees a GPU."""
    import tensorflow as tf

    return bool(tf.config.list_logical_devices("GPU"))


def matmul_gflops(seconds: float = 1.0, n: int = 512, windows: int = 5) -> float:
    """Single-precision matmul throughput of this machine now (GFLOP/s), a speed reference:
    the median of ``windows`` windows of ``seconds / windows`` each, so that one stall of
    a shared machine does not move it."""
    import statistics

    import tensorflow as tf

    a = tf.random.normal([n, n])
    b = tf.random.normal([n, n])
    product = tf.function(lambda a, b: tf.reduce_sum(tf.matmul(a, b)))
    product(a, b).numpy()
    rates = []
    for _ in range(windows):
        count, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds / windows:
            product(a, b).numpy()
            count += 1
        rates.append(2 * n**3 * count / (time.perf_counter() - start) / 1e9)
    return statistics.median(rates)


def peak_memory_mib() -> float:
    """Peak resident memory of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
