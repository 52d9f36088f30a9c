"""A trained character model loaded for decoding: incremental steps with carried state.

The prime is run through the model once; every further character costs one step of the
recurrent core (:meth:`SequenceEncoder.step`), not a re-run of the whole prefix.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tensorflow as tf

from seqkit.core import cudnn, dispatch
from seqkit.errors import SeqkitError
from seqkit.text.run_folder import RunFolder
from seqkit.text.vocab import UNKNOWN_ID, Vocabulary, describe


class CharLM:
    """A character model and its vocabulary.

    Args:
        model: the Keras model of :func:`seqkit.text.char_model.build_char_model`.
        vocab: its vocabulary.
        native_step: run the sampling loop's steps as seqkit's native step, on every core:
            None (the default) where the encoder can (``SequenceEncoder.steps_natively()``).
        half_weights: give the native step its weights rounded to float16, which halves
            what each character reads (docs/performance.md). None (the default): wherever
            the native step runs, the CPU converts float16 (F16C) and every weight fits;
            False keeps float32 (the same text for a seed as XLA's step).
    """

    def __init__(self, model, vocab: Vocabulary, native_step: bool | None = None, half_weights: bool | None = None):
        self.model, self.vocab, self.native_step, self.half_weights = model, vocab, native_step, half_weights
        self.embedding = model.get_layer("embedding")
        self.encoder = model.get_layer("encoder")
        self.logits_layer = model.get_layer("logits")
        signature = dict(reduce_retracing=True, autograph=False)
        self._prime = tf.function(self._prime_fn, **signature)
        self._step = tf.function(self.step_fn, **signature)
        self._log_probs = tf.function(
            self._log_probs_fn, input_signature=[tf.TensorSpec([1, None], tf.int32)], autograph=False
        )
        self.sample_loops: dict = {}  # compiled sampling loops, one per sampler

    @classmethod
    def load(cls, path: str | Path) -> CharLM:
        """Load a run folder (``seqkit train-char``'s output): model.keras, else the weights
        of its best checkpoint."""
        model, vocab = RunFolder(path).load()
        return cls(model, vocab)

    # -- compiled pieces -----------------------------------------------------------------------
    def _prime_fn(self, ids):
        """Run prime ids [batch, time]; return the last step's log-probs and the states."""
        with dispatch.kernels(cudnn=cudnn.available()):
            out, states = self.encoder.run(self.embedding(ids))
        return tf.nn.log_softmax(self.logits_layer(out[:, -1])), states

    def step_fn(self, ids, states, packed=None, index=0):
        """One character per row: ids [batch] -> log-probs [batch, vocab], new states.

        Uncompiled, for use inside other compiled graphs (the sampling loop, the export);
        :meth:`step` is its compiled form. ``packed`` and ``index``: see
        ``SequenceEncoder.step``."""
        out, states = self.encoder.step(self.embedding(ids), states, packed, index)
        return tf.nn.log_softmax(self.logits_layer(out)), states

    def steps_natively(self) -> bool:
        """Whether the sampling loop runs the native step (``native_step`` and
        ``half_weights``, resolved)."""
        if self.native_step is None:
            self.native_step = self.encoder.steps_natively()
        elif self.native_step and not self.encoder.steps_natively():
            raise SeqkitError(
                "The native decoding step is for float32 LSTMs as wide as a multiple of 16, on a "
                "CPU where it builds: sample without it."
            )
        if self.half_weights is None:
            self.half_weights = dispatch.half_weights_by_default(self.encoder, self.native_step)
        elif self.half_weights and (problem := dispatch.half_weights_problem(self.encoder, self.native_step)):
            raise SeqkitError(problem)
        return self.native_step

    def packed_step_weights(self) -> list:
        """The native step's weights, packed once (``SequenceEncoder.pack_step_weights``, in
        :attr:`step_weights_dtype`), for every sampling loop of this model."""
        if "packed" not in self.sample_loops:
            self.steps_natively()
            self.sample_loops["packed"] = self.encoder.pack_step_weights(self.step_weights_dtype)
        return self.sample_loops["packed"]

    @property
    def step_weights_dtype(self) -> tf.DType:
        """The dtype the sampling loop packs the native step's weights in (after
        :meth:`steps_natively`)."""
        return tf.float16 if self.half_weights else tf.float32

    # -- public --------------------------------------------------------------------------------
    def encode_prime(self, prime: str, drop_unknown: bool = False) -> np.ndarray:
        """Ids of a prime; characters the model never saw are an error (or dropped)."""
        unknown = self.vocab.unknown_chars(prime)
        if unknown and not drop_unknown:
            raise SeqkitError(
                f"The prime has characters the model never saw: {describe(unknown)}; remove them "
                "or pass `drop_unknown`."
            )
        ids = self.vocab.encode(prime)
        ids = ids[ids != UNKNOWN_ID]
        if ids.size == 0:
            newline = self.vocab.encode("\n")
            ids = newline if newline[0] != UNKNOWN_ID else np.array([1], np.int32)
        return ids.astype(np.int32)

    def prime(self, ids: np.ndarray):
        """Log-probs [1, vocab] of the next character after ``ids``, and the states."""
        return self._prime(tf.constant(ids[None, :], tf.int32))

    def step(self, ids, states):
        return self._step(tf.convert_to_tensor(ids, tf.int32), list(states))

    def log_probs(self, ids: np.ndarray) -> np.ndarray:
        """Log-probability of each id after the first, given its prefix: [len(ids) - 1]."""
        return self._log_probs(tf.constant(ids[None, :], tf.int32)).numpy()

    def _log_probs_fn(self, ids):
        logits = self.model(ids, training=False)[0]
        return tf.gather(tf.nn.log_softmax(logits[:-1]), ids[0, 1:], batch_dims=1)
