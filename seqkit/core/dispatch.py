"""Kernel dispatch: which implementation the recurrent layers run, decided in one place.

A recurrent layer can run as XLA loops (the portable default), as seqkit's C++ kernels on a
CPU (:mod:`seqkit.core.native`), or as NVIDIA cuDNN calls on a GPU
(:mod:`seqkit.core.cudnn`); on a CPU with bf16 dot products, the LSTM's large gradient
products and its loops' step products can take bfloat16 values. Which of these pays
depends on the model, the machine and the user's settings, so it is resolved here, once
per compiled function (training step, inference, decoding loop), into a :class:`Kernels`.

The layers learn the choice while they are traced, from :func:`kernels`, a context
manager over a context variable: their call signatures stay Keras's, and a model traced
outside it (an exported SavedModel, a caller's own XLA function) runs the portable loops.
"""

from __future__ import annotations

import contextlib
import contextvars
import sys
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from seqkit import machine
from seqkit.core import cudnn as cudnn_layers
from seqkit.core import native as native_library
from seqkit.errors import SeqkitError


@dataclass(frozen=True)
class Kernels:
    """How the recurrent layers run while a function is traced.

    Args:
        cudnn: each LSTM, GRU and tanh RNN layer as one cuDNN call (a GPU; not under XLA).
        native: the fused LSTM's loops as seqkit's C++ kernels (a CPU).
        bf16_gradients: the fused LSTM's weight and input gradients (the large matmuls
            after the backward loop) from bfloat16 values, summed in float32, outside XLA.
        bf16_recurrence: the native loops' step products from bfloat16 values.
    """

    cudnn: bool = False
    native: bool = False
    bf16_gradients: bool = False
    bf16_recurrence: bool = False

    def __post_init__(self) -> None:
        if self.bf16_recurrence and not self.native:
            raise SeqkitError("bf16 recurrence is a mode of the native kernels: turn them on too.")

    @property
    def split(self) -> bool:
        """Whether the fused LSTM's loops leave the caller's XLA program."""
        return self.native or self.bf16_gradients

    @property
    def compiles_whole(self) -> bool:
        """Whether a function traced with these kernels can be one XLA program."""
        return not (self.cudnn or self.split)

    def describe(self) -> str:
        """What runs beyond the default, for a run's start line ("; native LSTM kernels")."""
        notes = (
            ["cuDNN kernels"] * self.cudnn
            + ["native LSTM kernels"] * self.native
            + ["bf16 weight gradients"] * self.bf16_gradients
            + ["bf16 recurrence"] * self.bf16_recurrence
        )
        return "".join(f"; {note}" for note in notes)


_CURRENT: contextvars.ContextVar[Kernels] = contextvars.ContextVar("seqkit_kernels", default=Kernels())  # noqa: B039 (frozen)


@contextlib.contextmanager
def kernels(cudnn: bool = False, native: bool = False, bf16_gradients: bool = False, bf16_recurrence: bool = False):
    """While tracing inside this block, the recurrent layers run the given kernels."""
    with using(Kernels(bool(cudnn), bool(native), bool(bf16_gradients), bool(bf16_recurrence))):
        yield


@contextlib.contextmanager
def using(chosen: Kernels):
    """:func:`kernels` with a resolved :class:`Kernels`."""
    token = _CURRENT.set(chosen)
    try:
        yield
    finally:
        _CURRENT.reset(token)


def current() -> Kernels:
    """The kernels of the function being traced (all off outside :func:`kernels`)."""
    return _CURRENT.get()


def cudnn_active() -> bool:
    """Whether recurrent layers run as cuDNN kernels here: while tracing with ``cudnn`` on,
    or eagerly on a GPU (nothing to compile or export there)."""
    return _CURRENT.get().cudnn or (tf.executing_eagerly() and cudnn_layers.available())


# -- resolving settings ------------------------------------------------------------------------
_NOTED: set[str] = set()


def note(message: str) -> None:
    """Say on stderr, once per process, that a fast path this machine should have had fell
    back to a slower one, and why (``note: ...``)."""
    if message not in _NOTED:
        _NOTED.add(message)
        print(f"note: {message}", file=sys.stderr, flush=True)


def _library_fallback(library: native_library.Library) -> Callable[[], None]:
    def say() -> None:
        reason = native_library.failure(library)
        if reason:
            note(f"{reason}; {library.instead} instead.")

    return say


def _encoders(model) -> list:
    import keras

    from seqkit.core.recurrent import SequenceEncoder

    pending, found = [model], []
    while pending:
        layer = pending.pop()
        if isinstance(layer, SequenceEncoder):
            found.append(layer)
        if isinstance(layer, keras.Model):
            pending.extend(layer.layers)
    return found


def resolve(
    model,
    setting: bool | None,
    what: str,
    pays: Callable[[], bool],
    gpu: bool = False,
    fallback: Callable[[], None] | None = None,
) -> bool:
    """One setting of how ``model``'s recurrent layers run: the fused LSTM's split loops on
    a CPU (native kernels, bf16 gradients), or cuDNN on a GPU (``gpu``). None (auto) is on
    where ``pays()``, the device is of that kind and every recurrent layer can run that way
    (``fallback()`` is called where all but ``pays()`` hold, to say why not); True is
    refused (before any step) for layers that cannot, and for cuDNN without a GPU."""
    encoders = _encoders(model)
    fits = (lambda e: e.runs_cudnn) if gpu else (lambda e: e.trains_fused)
    others = [f"{e.name} ({e.cell})" for e in encoders if not fits(e)]
    if setting is None:
        if not (encoders and not others and machine.gpu_visible() == gpu):
            return False
        if pays():
            return True
        if fallback is not None:
            fallback()
        return False
    needs = "LSTM, GRU and tanh RNN layers (in float16, 32 or 64; not unrolled)" if gpu else "the fused LSTM"
    if setting and others:
        raise SeqkitError(f"{what} are for {needs}, and {', '.join(others)} is not one: train without them.")
    if setting and gpu and not pays():
        raise SeqkitError(f"{what} need an NVIDIA GPU that TensorFlow sees: train without them on this machine.")
    return bool(setting)


def _native_kernels(model, setting: bool | None) -> bool:
    loops = native_library.LOOPS
    return resolve(model, setting, "Native kernels", native_library.available, fallback=_library_fallback(loops))


def for_training(
    model,
    cudnn: bool | None = None,
    native_kernels: bool | None = None,
    bf16_gradients: bool | None = None,
    bf16_recurrence: bool = False,
) -> Kernels:
    """The kernels of ``model``'s training step (None: automatic; see ``TrainConfig``)."""
    on_gpu = resolve(model, cudnn, "cuDNN kernels", cudnn_layers.available, gpu=True)
    native = _native_kernels(model, native_kernels)
    if native:
        native_library.kernels()  # the build's error, if any, before the first step
    bf16 = resolve(model, bf16_gradients, "bf16 weight gradients", machine.cpu_has_bf16)
    if bf16_recurrence and not (native and machine.cpu_has_bf16()):
        raise SeqkitError(
            "bf16 recurrence runs in the native LSTM kernels on a CPU with bf16 dot products "
            "(AVX512-BF16, AMX): train without it, or with native kernels on such a CPU."
        )
    return Kernels(on_gpu, native, bf16, bool(bf16_recurrence))


def for_inference(model, native_kernels: bool | None = None, gpu: bool = False) -> Kernels:
    """The kernels of ``model``'s inference: native where training would use them; cuDNN
    only when asked (``gpu``), since one XLA program runs inference faster on a GPU."""
    on_gpu = bool(gpu) and resolve(model, True, "cuDNN kernels", cudnn_layers.available, gpu=True)
    native = _native_kernels(model, native_kernels)
    return Kernels(cudnn=on_gpu, native=native)


def code_path(model, chosen: Kernels) -> dict:
    """What really runs ``model``'s recurrent layers in training with the ``chosen``
    kernels: the device, each encoder's cell and implementation, and the bf16 options. Two
    runs' speeds compare only where their paths are equal."""
    layers = []
    for encoder in _encoders(model):
        if chosen.cudnn and encoder.runs_cudnn:
            how = "cudnn"
        elif encoder.trains_fused:
            how = "native" if chosen.native else "xla-fused"
        else:
            how = "xla"
        layers.append(f"{encoder.cell} {how}")
    return {
        "device": "gpu" if machine.gpu_visible() else "cpu",
        "layers": layers,
        "bf16_gradients": chosen.bf16_gradients,
        "bf16_recurrence": chosen.bf16_recurrence,
    }


def path_name(path: dict) -> str:
    """A code path in a few words: ``cpu, lstm native, bf16 gradients``."""
    parts = [path.get("device", "?"), *dict.fromkeys(path.get("layers", []))]
    parts += [name.replace("_", " ") for name in ("bf16_gradients", "bf16_recurrence") if path.get(name)]
    return ", ".join(parts)


# -- the decoding step -------------------------------------------------------------------------
def steps_natively(encoder) -> bool:
    """Whether ``encoder``'s decoding step can run as seqkit's native step here: every layer
    a plain float32 LSTM as wide as a multiple of 16, no GPU in sight, and the op builds."""
    if encoder.bidirectional or machine.gpu_visible():
        return False
    if not all(native_library.steps(cell) for cell in encoder.cells):
        return False
    if native_library.available(native_library.STEP):
        return True
    _library_fallback(native_library.STEP)()
    return False


def half_weights_by_default(encoder, native_step: bool) -> bool:
    """Whether the native step takes float16 weights when not told, by a fixed rule from
    the CPU's features (never from a timing: a seed's text must not depend on one).

    float16 halves what each character reads, which pays where a core's share of the
    weights does not fit its cache at float32: it sampled 1.5x to 1.6x faster on the Intel
    Xeons this project ran on (AVX-512 or AVX2, no bf16 dot products), and 0.73x as fast on
    an AMD EPYC with AVX512-BF16 (docs/performance.md). So float16 where the CPU converts it
    (F16C) and has no bf16 dot products, the feature that told those CPUs apart; a CPU
    without F16C, which the step should have had, says so."""
    problem = half_weights_problem(encoder, native_step)
    if problem is not None and native_step and not machine.cpu_has_f16c():
        note("this CPU converts no float16 (no F16C); the native decoding step reads float32 weights instead.")
    return problem is None and not machine.cpu_has_bf16()


def half_weights_problem(encoder, native_step: bool) -> str | None:
    """Why the native step cannot take ``encoder``'s weights as float16 here, or None."""
    if not native_step:
        return (
            "Half-precision weights are for the native decoding step, which this model or machine "
            "cannot run: sample without them."
        )
    if not machine.cpu_has_f16c():
        return "Half-precision weights need a CPU with F16C: sample without them."
    largest = max(float(np.abs(w.numpy()).max()) for w in encoder.weights)
    if largest > float(np.finfo(np.float16).max):
        return f"A weight of {largest:g} does not fit in float16: sample without half-precision weights."
    return None
