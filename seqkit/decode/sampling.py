"""Sampling: the strategies that pick the next character, and the one loop that uses them.

``filter_logits`` turns a distribution into the one a strategy samples from (temperature,
top-k, top-p, and never the unknown id); a :class:`Sampler` draws from it, or takes the
argmax when greedy. :func:`sampling_loop` is the only sampling loop: ``seqkit generate``
compiles it with XLA (and the native decoding step where it runs), and the exported
SavedModel's ``sample`` signature traces the same function with TensorFlow's own ops, so
every setting behaves alike in both. Seeds are explicit (stateless RNG): a seed
reproduces a sample.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from seqkit.errors import SeqkitError
from seqkit.text.vocab import UNKNOWN_ID


def mask_unknown(logits: tf.Tensor) -> tf.Tensor:
    """Logits [batch, vocab] with the unknown id at -inf: it is never drawn or searched."""
    neg_inf = tf.fill(tf.shape(logits), tf.constant(-float("inf"), logits.dtype))
    return tf.where(tf.range(tf.shape(logits)[-1])[None, :] == UNKNOWN_ID, neg_inf, logits)


def _is(value, constant) -> bool:
    """Whether ``value`` is the Python number ``constant`` (a tensor never is)."""
    return isinstance(value, (int, float)) and value == constant


def filter_logits(logits: tf.Tensor, temperature=1.0, top_k=0, top_p=1.0) -> tf.Tensor:
    """Logits [batch, vocab] tempered, with the excluded ids at -inf (``top_k`` 0 and
    ``top_p`` 1 exclude none). Each setting is a Python number or a scalar tensor."""
    logits = mask_unknown(logits if _is(temperature, 1.0) else logits / temperature)
    neg_inf = tf.fill(tf.shape(logits), tf.constant(-float("inf"), logits.dtype))
    vocab = tf.shape(logits)[-1]
    if not _is(top_k, 0):
        k = tf.cast(top_k, tf.int32)
        ordered = tf.sort(logits, direction="DESCENDING")
        kth = tf.gather(ordered, tf.clip_by_value(k, 1, vocab) - 1, axis=-1)[:, None]
        logits = tf.where((k > 0) & (logits < kth), neg_inf, logits)
    if not _is(top_p, 1.0):
        ordered = tf.sort(logits, direction="DESCENDING")
        mass_before = tf.math.cumsum(tf.nn.softmax(ordered), axis=-1, exclusive=True)
        # keep the smallest prefix whose mass reaches top_p (the top id is always kept)
        kept = tf.where((mass_before < top_p) | (top_p >= 1.0), ordered, neg_inf)
        threshold = tf.reduce_min(
            tf.where(tf.math.is_inf(kept), tf.fill(tf.shape(kept), float("inf")), kept), -1, keepdims=True
        )
        logits = tf.where(logits < threshold, neg_inf, logits)
    return logits


@dataclass(frozen=True)
class Sampler:
    """How the next character is chosen.

    Args:
        temperature: > 0; below 1 sharpens the distribution, above 1 flattens it.
        top_k: sample among the k most likely characters only (0: all).
        top_p: sample among the most likely characters holding this much mass (1: all).
        greedy: always take the most likely character.

    The settings are Python numbers, checked here; or scalar tensors (an exported graph's
    inputs), which the graph takes as they come.
    """

    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    greedy: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.temperature, (int, float)) and self.temperature <= 0:
            raise SeqkitError("`temperature` must be above 0; for the most likely characters use `greedy`.")
        if isinstance(self.top_k, int) and self.top_k < 0:
            raise SeqkitError("`top_k` must be 0 (off) or more.")
        if isinstance(self.top_p, (int, float)) and not 0.0 < self.top_p <= 1.0:
            raise SeqkitError("`top_p` must be in (0, 1].")

    def __call__(self, log_probs: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
        """Next ids [batch] from log-probs [batch, vocab] with a stateless seed [2]."""
        if self.greedy:
            return tf.argmax(mask_unknown(log_probs), -1, output_type=tf.int32)
        return draw(filter_logits(log_probs, self.temperature, self.top_k, self.top_p), seed)


def draw(logits: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """Ids [batch] drawn from logits [batch, vocab] (-inf: never) with a stateless seed [2].

    By the inverse of the running sum of the probabilities: one uniform number a row,
    where ``tf.random.stateless_categorical`` takes one and two logarithms an id."""
    probs = tf.exp(logits - tf.reduce_max(logits, -1, keepdims=True))
    cumulative = tf.math.cumsum(probs, axis=-1)
    point = tf.random.stateless_uniform([tf.shape(logits)[0], 1], seed) * cumulative[:, -1:]
    ids = tf.reduce_sum(tf.cast(cumulative <= point, tf.int32), -1)  # the first id whose sum passes the point
    # The point rounds up to the total about once in 2**24 draws: the last drawable id then.
    last = tf.shape(logits)[-1] - 1 - tf.argmax(tf.reverse(probs > 0, [-1]), -1, output_type=tf.int32)
    return tf.minimum(ids, last)


def sampling_loop(lm, sampler: Sampler, prime: tf.Tensor, prime_length, length, seed: tf.Tensor, packed=None):
    """The sampling loop, for tracing: ids [length] continuing ``prime[:prime_length]``.

    The prime runs through the same loop as the drawn characters, one step per character
    (not a separate call over the whole sequence), so the loop is the whole program.
    Draw ``n`` uses the stateless seed ``fold_in(seed, n)``. ``packed``: the native step's
    weights (``SequenceEncoder.pack_step_weights``), or None for the cells' own steps.
    """

    def body(i, log_probs, states, out):
        drawn = sampler(log_probs, tf.random.experimental.stateless_fold_in(seed, i - prime_length))
        ids = tf.where(i < prime_length, prime[tf.minimum(i, prime_length - 1)][None], drawn)
        log_probs, states = lm.step_fn(ids, states, packed, i)
        out = tf.tensor_scatter_nd_update(out, [[tf.maximum(i - prime_length, 0)]], ids)
        return i + 1, log_probs, states, out

    start = (0, tf.zeros([1, lm.vocab.size]), lm.encoder.get_initial_state(1), tf.zeros([length], tf.int32))
    return tf.while_loop(lambda i, *_: i < prime_length + length, body, start)[3]


def sample(lm, prime_ids: np.ndarray, length: int, sampler: Sampler, seed: int = 0) -> str:
    """``length`` characters continuing the prime ids, drawn by ``sampler`` (a
    :class:`~seqkit.decode.lm.CharLM`'s compiled loop, one per sampler)."""
    if length < 1:
        raise SeqkitError("`length` must be at least 1.")
    if sampler not in lm.sample_loops:
        lm.sample_loops[sampler] = _compile(lm, sampler)
    # Padded to a power of two, so that primes of similar lengths share one XLA program.
    padded = np.zeros(max(16, 1 << (prime_ids.size - 1).bit_length()), np.int32)
    padded[: prime_ids.size] = prime_ids
    ids = lm.sample_loops[sampler](
        padded, tf.constant(prime_ids.size), tf.constant(length), tf.constant([seed, 0], tf.int64)
    )
    return lm.vocab.decode(ids.numpy())


def _compile(lm, sampler: Sampler):
    native = lm.steps_natively()

    @tf.function(reduce_retracing=True, autograph=False, jit_compile=True)
    def loop(prime, prime_length, length, seed):
        packed = lm.encoder.pack_step_weights(lm.step_weights_dtype) if native else None
        return sampling_loop(lm, sampler, prime, prime_length, length, seed, packed)

    return loop
