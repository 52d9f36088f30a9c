"""seqkit's C++ LSTM kernels (``lstm_kernel.cc``), built for this machine on first use.

TensorFlow has no CPU LSTM kernel that beats XLA's loop (see benchmarks/README.md), and a
wheel of compiled ops would have to match the user's TensorFlow build exactly; so the
source ships with the package and is compiled against the installed TensorFlow with the
system's C++ compiler (``$CXX``, else ``c++``) into the user cache, once per source,
TensorFlow version, compiler and CPU. Where that fails, training keeps the XLA loops.
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import subprocess
import sys
from functools import lru_cache
from pathlib import Path

import tensorflow as tf

from seqkit.errors import SeqkitError
from seqkit.fileio import atomic_path, user_cache_dir

SOURCE = Path(__file__).with_name("lstm_kernel.cc")
BUILD_TIMEOUT_S = 600


def cpu_flags() -> list[str]:
    """This (Linux) machine's CPU feature flags from /proc/cpuinfo; empty where unreadable."""
    try:
        with open("/proc/cpuinfo") as info:
            return next((line.split() for line in info if line.startswith("flags")), [])
    except OSError:
        return []


def _build_command(compiler: str, output: Path) -> list[str]:
    # -march=native: the library is built on, and cached for, this CPU alone.
    flags = ["-shared", "-fPIC", "-O3", "-march=native", "-Wno-deprecated-declarations"]
    return [compiler, *flags, str(SOURCE), "-o", str(output), *tf.sysconfig.get_compile_flags(),
            *tf.sysconfig.get_link_flags()]


def kernels():
    """The loaded op library (``seqkit_lstm_forward``, ``seqkit_lstm_backward``,
    ``seqkit_lstm_inference``), built first if this machine has none yet; raises
    :class:`SeqkitError` where it cannot be built."""
    library = _load()
    if isinstance(library, SeqkitError):
        raise library
    return library


@lru_cache(maxsize=1)
def _load():
    """The library, or the error that says why there is none (kept, so a failed build is
    not retried within a process)."""
    try:
        return _build_and_load()
    except SeqkitError as err:
        return err


def _build_and_load():
    compiler = shutil.which(os.environ.get("CXX", "c++"))
    if compiler is None:
        raise SeqkitError(
            "seqkit's native LSTM kernels need a C++ compiler (set CXX, or install g++): "
            "train without them (--no-native-kernels)."
        )
    try:
        version = subprocess.run([compiler, "--version"], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError) as err:
        raise SeqkitError(f"Cannot run the C++ compiler {compiler} ({err}): train without native kernels.") from None
    key = hashlib.sha256(
        "\0".join(
            [SOURCE.read_text(), tf.__version__, version, " ".join(_build_command(compiler, Path("."))),
             " ".join(cpu_flags()) or platform.processor()]
        ).encode()
    ).hexdigest()[:16]
    library = user_cache_dir() / "kernels" / f"lstm-{key}.so"
    if not library.exists():
        print("Building seqkit's native LSTM kernels for this machine (once, about 20 s) ...", file=sys.stderr, flush=True)
        with atomic_path(library, suffix=".so") as tmp:
            try:
                built = subprocess.run(
                    _build_command(compiler, tmp), capture_output=True, text=True, timeout=BUILD_TIMEOUT_S
                )
            except (OSError, subprocess.SubprocessError) as err:
                raise SeqkitError(f"Building seqkit's native LSTM kernels failed ({err}): train without them.") from None
            if built.returncode != 0:
                first = next((line for line in built.stderr.splitlines() if "error" in line), built.stderr.strip()[-200:])
                raise SeqkitError(
                    f"Building seqkit's native LSTM kernels with {compiler} failed ({first.strip()}): "
                    "train without them (--no-native-kernels)."
                )
    try:
        return tf.load_op_library(str(library))
    except (tf.errors.NotFoundError, OSError) as err:
        raise SeqkitError(f"Cannot load seqkit's native LSTM kernels from {library} ({err}): delete it and retry.") from None


def available() -> bool:
    """Whether the kernels load here (building them first if need be)."""
    try:
        kernels()
    except SeqkitError:
        return False
    return True
