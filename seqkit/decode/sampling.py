"""Sampling strategies over next-character log-probabilities, one interface for all.

``filter_logits`` turns a distribution into the one a strategy samples from (temperature,
top-k, top-p); ``Sampler`` draws from it, or takes the argmax when greedy. The unknown id
is never drawn. Seeds are explicit (stateless RNG), so a seed reproduces a sample.
"""

from __future__ import annotations

from dataclasses import dataclass

import tensorflow as tf

from seqkit.errors import SeqkitError
from seqkit.text.vocab import UNKNOWN_ID


def filter_logits(logits: tf.Tensor, temperature: float, top_k: int, top_p: float) -> tf.Tensor:
    """Logits [batch, vocab] with the excluded ids at -inf (top_k 0 and top_p 1 turn those off)."""
    logits = logits / temperature
    vocab = tf.shape(logits)[-1]
    neg_inf = tf.fill(tf.shape(logits), tf.constant(-float("inf"), logits.dtype))
    logits = tf.where(tf.range(vocab)[None, :] == UNKNOWN_ID, neg_inf, logits)
    if top_k > 0:
        kth = tf.math.top_k(logits, k=tf.minimum(top_k, vocab)).values[:, -1:]
        logits = tf.where(logits < kth, neg_inf, logits)
    if top_p < 1.0:
        ordered = tf.sort(logits, direction="DESCENDING")
        mass_before = tf.math.cumsum(tf.nn.softmax(ordered), axis=-1, exclusive=True)
        # keep the smallest prefix whose mass reaches top_p (the top id is always kept)
        kept = tf.where(mass_before < top_p, ordered, neg_inf)
        threshold = tf.reduce_min(tf.where(tf.math.is_inf(kept), tf.fill(tf.shape(kept), float("inf")), kept), -1, keepdims=True)
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
    """

    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    greedy: bool = False

    def __post_init__(self) -> None:
        if self.temperature <= 0:
            raise SeqkitError("--temperature must be above 0; for the most likely characters use --greedy.")
        if self.top_k < 0:
            raise SeqkitError("--top-k must be 0 (off) or more.")
        if not 0.0 < self.top_p <= 1.0:
            raise SeqkitError("--top-p must be in (0, 1].")

    def __call__(self, log_probs: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
        """Next ids [batch] from log-probs [batch, vocab] with a stateless seed [2]."""
        if self.greedy:
            return tf.argmax(filter_logits(log_probs, 1.0, 0, 1.0), -1, output_type=tf.int32)
        logits = filter_logits(log_probs, self.temperature, self.top_k, self.top_p)
        return draw(logits, seed)


def draw(logits: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """Ids [batch] drawn from logits [batch, vocab] (-inf: never) with a stateless seed [2].

    By the inverse of the running sum of the probabilities: one uniform number a row,
    where ``tf.random.stateless_categorical`` takes one and two logarithms an id, which
    cost the sampling loop about 7% of its speed (benchmarks/README.md)."""
    probs = tf.exp(logits - tf.reduce_max(logits, -1, keepdims=True))
    cumulative = tf.math.cumsum(probs, axis=-1)
    point = tf.random.stateless_uniform([tf.shape(logits)[0], 1], seed) * cumulative[:, -1:]
    ids = tf.reduce_sum(tf.cast(cumulative <= point, tf.int32), -1)  # the first id whose sum passes the point
    # The point rounds up to the total about once in 2**24 draws: the last drawable id then.
    last = tf.shape(logits)[-1] - 1 - tf.argmax(tf.reverse(probs > 0, [-1]), -1, output_type=tf.int32)
    return tf.minimum(ids, last)
