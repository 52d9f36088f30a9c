"""`seqkit export`: a TensorFlow SavedModel that serves a character model without seqkit.

Signatures (load with ``tf.saved_model.load(path)``):

- ``serving_default(texts: string [batch])`` -> ``probabilities`` [batch, vocab], the
  next-character distribution after each text, and ``chars`` [vocab], the character of
  each column ("\\ufffd" for the unknown id);
- ``sample(prime: string, length: int32, temperature: float32, seed: int64, top_k: int32,
  top_p: float32)`` -> ``text``, the sampled continuation (``top_k`` 0 and ``top_p`` 1
  turn those off), drawn by the same loop and sampler as ``seqkit generate``: with the
  same settings and seed, the same text as ``generate --float32-weights`` up to float
  rounding between XLA's and TensorFlow's kernels.

The graph holds the vocabulary lookup, so only TensorFlow is needed to load it. Texts
are taken as they are: NFC-normalize them first if the model was trained with NFC (the
default), as NFC needs tensorflow-text's op, which the SavedModel leaves out.
"""

from __future__ import annotations

from pathlib import Path

import tensorflow as tf

from seqkit.decode.lm import CharLM
from seqkit.decode.sampling import Filters, sampling_loop, stream_keys
from seqkit.errors import SeqkitError
from seqkit.fileio import atomic_dir
from seqkit.text.vocab import UNKNOWN_ID, UNKNOWN_SYMBOL


class ServingModule(tf.Module):
    """The SavedModel's signatures as a TensorFlow module of a loaded model (also what
    ``seqkit serve`` answers TensorFlow Serving's predict requests with)."""

    def __init__(self, lm: CharLM):
        super().__init__()
        self.model = lm.model
        self._lm = lm
        points = tf.constant(lm.vocab.points, tf.int32)
        ids = tf.range(1, lm.vocab.size, dtype=tf.int32)
        self.table = tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(points, ids), UNKNOWN_ID)
        self.chars = tf.constant([UNKNOWN_SYMBOL, *lm.vocab.chars])
        self.empty_prime = tf.constant(lm.encode_prime(""), tf.int32)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)], autograph=False)
    def next_char(self, texts):
        ids = tf.ragged.map_flat_values(self.table.lookup, tf.strings.unicode_decode(texts, "UTF-8"))
        lengths = tf.cast(ids.row_lengths(), tf.int32)
        outputs, _ = self._lm.encoder.run(self._lm.embedding(ids.to_tensor()), lengths=lengths)
        last = tf.gather(outputs, tf.maximum(lengths - 1, 0), batch_dims=1)
        return {"probabilities": tf.exp(tf.nn.log_softmax(self._lm.logits_layer(last))), "chars": self.chars}

    @tf.function(
        input_signature=[
            tf.TensorSpec([], tf.string),
            tf.TensorSpec([], tf.int32),
            tf.TensorSpec([], tf.float32),
            tf.TensorSpec([], tf.int64),
            tf.TensorSpec([], tf.int32),
            tf.TensorSpec([], tf.float32),
        ],
        autograph=False,
    )
    def sample(self, prime, length, temperature, seed, top_k, top_p):
        ids = self.table.lookup(tf.strings.unicode_decode(prime, "UTF-8"))
        # An empty prime starts where generate's does (a newline, or the first character).
        ids = tf.concat([ids, self.empty_prime], 0)[: tf.maximum(tf.size(ids), 1)]
        out = self._loop(ids, length, temperature, seed, top_k, top_p)
        return {"text": tf.strings.reduce_join(tf.gather(self.chars, out))}

    @tf.function(jit_compile=True, autograph=False)
    def _loop(self, ids, length, temperature, seed, top_k, top_p):
        """Stream 0 of ``seed``, by the loop generate compiles, as one XLA program too."""
        one = lambda value: tf.reshape(value, [1])  # noqa: E731 (a row of one stream)
        carry = {
            "states": self._lm.encoder.get_initial_state(1),
            "log_probs": tf.zeros([1, self._lm.vocab.size]),
            "position": tf.zeros([1], tf.int32),
            "prime": ids[None, :],
            "prime_length": one(tf.size(ids)),
            "keys": stream_keys(seed, tf.zeros([1], tf.int64)),
            "temperature": one(temperature),
            "top_k": one(top_k),
            "top_p": one(top_p),
            "greedy": tf.zeros([1], tf.bool),
        }
        filters = Filters(top_k=True, top_p=True, greedy=False)
        _, drawn, _ = sampling_loop(self._lm, filters, tf.size(ids) + length, carry)
        return drawn[0, tf.size(ids) :]  # the prime's steps draw nothing


def export(model_dir: str | Path, out_dir: str | Path) -> Path:
    """Write the SavedModel of a trained model to ``out_dir``; return its path."""
    lm = CharLM.load(model_dir)
    if lm.encoder.bidirectional:
        raise SeqkitError("A bidirectional model cannot generate; there is nothing to export.")
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        raise SeqkitError(f"{out} exists and is not empty: choose a new `out_dir`.")
    module = ServingModule(lm)
    signatures = {"serving_default": module.next_char, "sample": module.sample}
    with atomic_dir(out) as tmp:  # a killed export leaves no half-written SavedModel
        try:
            tf.saved_model.save(module, str(tmp), signatures=signatures)
        except tf.errors.OpError as err:
            raise SeqkitError(
                f"Cannot write {out} ({err.message}): make room on the disk or choose another `out_dir`."
            ) from None
    return out
