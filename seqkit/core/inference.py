"""A model's forward pass compiled for repeated calls on batches.

Inference keeps nothing for a backward pass, so it can take other kernels than training:
seqkit's native forward loop where training would use the native kernels, else one XLA
program (on a GPU too, where it beats cuDNN for inference; see docs/performance.md).
"""

from __future__ import annotations

from collections.abc import Callable

import keras
import tensorflow as tf

from seqkit.core import dispatch


def compile_inference(fn: Callable, chosen: dispatch.Kernels, jit_compile: bool = True) -> Callable:
    """``fn``, which calls a model with ``training=False``, as one ``tf.function`` traced
    with the ``chosen`` kernels; one XLA program where they allow it."""

    def traced(*args):
        with dispatch.using(chosen):
            return fn(*args)

    jit = jit_compile and chosen.compiles_whole
    return tf.function(traced, jit_compile=jit, reduce_retracing=True, autograph=False)


def inference_function(
    model: keras.Model, native_kernels: bool | None = None, gpu: bool = False
) -> Callable[[tf.Tensor], tf.Tensor]:
    """``model(x, training=False)`` compiled for repeated calls on batches, the fastest way
    seqkit has.

    Args:
        model: a Keras model whose recurrent layers are :class:`SequenceEncoder` layers.
        native_kernels: None (the default) uses seqkit's native forward loop where training
            would (every recurrent layer a fused LSTM, a CPU, the kernels build).
        gpu: run the recurrent layers as cuDNN kernels (a GPU); by default inference is one
            XLA program there too.
    """
    chosen = dispatch.for_inference(model, native_kernels, gpu)
    return compile_inference(lambda x: model(x, training=False), chosen)
