"""seqkit's C++ kernels, built for this machine on first use.

Two libraries: the LSTM loops for training and inference (``lstm_kernel.cc``; TensorFlow
has no CPU LSTM kernel that beats XLA's loop, see docs/performance.md), and the decoding
step as an XLA custom call (``lstm_step.cc``), which the sampling loop runs on every core.
A wheel of compiled ops would have to match the user's TensorFlow build exactly; so the
sources ship with the package and are compiled against the installed TensorFlow with the
system's C++ compiler (``$CXX``, else ``c++``) into the user cache, once per source,
TensorFlow version, compiler and CPU. Where that fails, seqkit keeps the XLA loops.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import platform
import shutil
import subprocess
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import tensorflow as tf

from seqkit import machine
from seqkit.core.cells import LSTMCell
from seqkit.errors import SeqkitError
from seqkit.fileio import atomic_path, user_cache_dir

BUILD_TIMEOUT_S = 600


@dataclass(frozen=True)
class Library:
    """One of the C++ sources and how to build it."""

    stem: str  # of the source
    cache: str  # of the cached library
    what: str  # for messages
    remedy: str  # what a user does where it cannot be built
    instead: str  # what runs where it cannot be built, for the fallback note
    xla: bool = False  # needs XLA's headers and libtensorflow_cc (an XLA op)

    @property
    def source(self) -> Path:
        return Path(__file__).with_name(f"{self.stem}.cc")


LOOPS = Library("lstm_kernel", "lstm", "native LSTM kernels", "train without them", "LSTM layers run XLA's loops")
STEP = Library("lstm_step", "lstm-step", "native decoding step", "sample without it", "sampling runs XLA's step", True)


def _build_command(library: Library, compiler: str, output: Path) -> list[str]:
    # -march=native: the library is built on, and cached for, this CPU alone.
    flags = ["-shared", "-fPIC", "-O3", "-march=native", "-Wno-deprecated-declarations"]
    extra = []
    if library.xla:  # headers the wheel keeps apart, and the library with XLA's registries
        include = Path(tf.sysconfig.get_include()) / "external"
        extra = [
            f"-I{include / 'highwayhash'}",
            f"-I{include / 'farmhash_archive' / 'src'}",
            "-l:libtensorflow_cc.so.2",
        ]
    return [
        compiler,
        *flags,
        str(library.source),
        "-o",
        str(output),
        *tf.sysconfig.get_compile_flags(),
        *tf.sysconfig.get_link_flags(),
        *extra,
    ]


def kernels():
    """The loaded op library (``seqkit_lstm_forward``, ``seqkit_lstm_backward``,
    ``seqkit_lstm_inference``), built first if this machine has none yet; raises
    :class:`SeqkitError` where it cannot be built."""
    return _loaded(LOOPS)


def step_kernel():
    """The loaded ``seqkit_lstm_step`` op (for XLA programs on a CPU only), built first if
    this machine has none yet; raises :class:`SeqkitError` where it cannot be built."""
    return _loaded(STEP)


def _loaded(library: Library):
    loaded = _load(library)
    if isinstance(loaded, SeqkitError):
        raise loaded
    return loaded


@cache
def _load(library: Library):
    """The library, or the error that says why there is none (kept, so a failed build is
    not retried within a process)."""
    try:
        return _build_and_load(library)
    except SeqkitError as err:
        return err


def _cache_key(library: Library, compiler: str, compiler_version: str) -> str:
    """What the built library depends on: the source, TensorFlow's build, the compiler, its
    command and the CPU. Where seqkit and TensorFlow are installed is left out of the
    command, so that another checkout or environment of the same versions reuses the build."""
    command = " ".join(_build_command(library, compiler, Path("library.so")))
    for place, name in ((str(library.source.parent), "<seqkit>"), (tf.sysconfig.get_lib(), "<tensorflow>")):
        command = command.replace(place, name)
    parts = [
        library.source.read_text(),
        tf.__version__,
        tf.version.GIT_VERSION,
        compiler_version,
        command,
        " ".join(machine.cpu_flags()) or platform.processor(),
    ]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]


def _build_and_load(library: Library):
    compiler = shutil.which(os.environ.get("CXX", "c++"))
    if compiler is None:
        raise SeqkitError(
            f"Building seqkit's {library.what} needs a C++ compiler (set CXX, or install g++): {library.remedy}."
        )
    try:
        version = subprocess.run([compiler, "--version"], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError) as err:
        raise SeqkitError(f"Cannot run the C++ compiler {compiler} ({err}): {library.remedy}.") from None
    path = user_cache_dir() / "kernels" / f"{library.cache}-{_cache_key(library, compiler, version)}.so"
    failed = path.with_suffix(".failed")  # a failed build is not retried by every process
    if failed.exists():
        raise SeqkitError(f"{failed.read_text().strip()} (delete {failed} to retry)")
    if not path.exists():
        print(
            f"Building seqkit's {library.what} for this machine (once; it is cached in {path.parent}) ...",
            file=sys.stderr,
            flush=True,
        )
        with atomic_path(path, suffix=".so") as tmp:
            try:
                built = subprocess.run(
                    _build_command(library, compiler, tmp), capture_output=True, text=True, timeout=BUILD_TIMEOUT_S
                )
            except subprocess.TimeoutExpired:
                # Recorded: the next process would wait as long again for the same outcome.
                message = f"Building seqkit's {library.what} with {compiler} took over {BUILD_TIMEOUT_S} s"
                _record_failure(failed, f"{message}: {library.remedy}.")
            except (OSError, subprocess.SubprocessError) as err:
                raise SeqkitError(f"Building seqkit's {library.what} failed ({err}): {library.remedy}.") from None
            if built.returncode < 0:  # killed by a signal: nothing is known of the source, retry next time
                raise SeqkitError(
                    f"Building seqkit's {library.what} was stopped by signal {-built.returncode}: {library.remedy}."
                )
            if built.returncode > 0:
                first = next(
                    (line for line in built.stderr.splitlines() if "error" in line), built.stderr.strip()[-200:]
                )
                message = f"Building seqkit's {library.what} with {compiler} failed ({first.strip()})"
                _record_failure(failed, f"{message}: {library.remedy}.")
    try:
        return tf.load_op_library(str(path))
    except (tf.errors.NotFoundError, OSError) as err:
        raise SeqkitError(f"Cannot load seqkit's {library.what} from {path} ({err}): delete it and retry.") from None


def _record_failure(failed: Path, message: str) -> None:
    """Keep a compiler's error (or time-out) beside the cache entry, so that no other process
    builds the same source again for the same outcome; raise it."""
    with contextlib.suppress(OSError):
        failed.write_text(message + "\n")
    raise SeqkitError(message)


def failure(library: Library = LOOPS) -> str | None:
    """Why ``library`` cannot be loaded here (building it first if need be), without the
    remedy; None where it loads."""
    loaded = _load(library)
    if not isinstance(loaded, SeqkitError):
        return None
    return str(loaded).replace(f": {library.remedy}.", "").rstrip(".")


def available(library: Library = LOOPS) -> bool:
    """Whether ``library`` loads here (building it first if need be)."""
    try:
        _loaded(library)
    except SeqkitError:
        return False
    return True


STEP_UNITS = 16  # units per block of the decoding step's packed kernels (lstm_step.cc)


def steps(cell) -> bool:
    """Whether the decoding step op can run ``cell``: a plain float32 LSTM whose width is
    a multiple of :data:`STEP_UNITS`."""
    return (
        type(cell) is LSTMCell
        and cell.units % STEP_UNITS == 0
        and cell.variable_dtype == cell.compute_dtype == "float32"
    )


def pack_step_weights(cell, dtype: tf.DType = tf.float32) -> tuple[tf.Tensor, tf.Tensor]:
    """``cell``'s kernels in the decoding step's layout: [W; R] as [units/16, rows, 64] of
    ``dtype`` (float32, or float16: half the bytes a step reads), each block the i, f, g, o
    columns of 16 units, and the bias as [units/16, 64]. Made once per compiled loop,
    before it: XLA does not hoist it out of the loop by itself."""
    blocks = cell.units // STEP_UNITS
    stacked = tf.concat([cell.kernel, cell.recurrent_kernel], 0)
    rows = stacked.shape[0]
    packed = tf.transpose(tf.reshape(stacked, [rows, 4, blocks, STEP_UNITS]), [2, 0, 1, 3])
    bias = tf.transpose(tf.reshape(cell.bias, [4, blocks, STEP_UNITS]), [1, 0, 2])
    return tf.cast(tf.reshape(packed, [blocks, rows, 4 * STEP_UNITS]), dtype), tf.reshape(
        bias, [blocks, 4 * STEP_UNITS]
    )


def lstm_step(x: tf.Tensor, states, packed: tuple[tf.Tensor, tf.Tensor], index=0) -> tuple[tf.Tensor, tf.Tensor]:
    """One LSTM step of ``x`` [batch, features] from ``states`` (h, c) with the weights of
    :func:`pack_step_weights`; equals ``cell.step(cell.project(x), states)``. Inside an XLA
    program on a CPU only. ``index``, the decoding loop's step count, sets the order in
    which the step reads the weights (alternate steps reverse it, to reuse the cache)."""
    return tuple(step_kernel().seqkit_lstm_step(x, *states, *packed, tf.cast(index, tf.int32)))
