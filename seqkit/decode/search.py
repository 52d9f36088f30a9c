"""Generation from a loaded :class:`CharLM`: sampling, beam search, the prediction tree, scores.

Sampling runs the prime and its whole loop inside one compiled graph; beam search keeps
every beam in one batch and reorders the states when beams are chosen; the tree expands one
level per batched call.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import tensorflow as tf

from seqkit.decode.lm import CharLM
from seqkit.decode.sampling import Sampler, filter_logits
from seqkit.errors import SeqkitError
from seqkit.text.vocab import describe


def _check_length(length: int) -> None:
    if length < 1:
        raise SeqkitError("--length must be at least 1.")


def sample(lm: CharLM, prime_ids: np.ndarray, length: int, sampler: Sampler, seed: int = 0) -> str:
    """``length`` characters continuing the prime, drawn by ``sampler``."""
    _check_length(length)
    if sampler not in lm.sample_loops:
        lm.sample_loops[sampler] = _compile_sample_loop(lm, sampler)
    # Padded to a power of two, so that primes of similar lengths share one XLA program.
    padded = np.zeros(max(16, 1 << (prime_ids.size - 1).bit_length()), np.int32)
    padded[: prime_ids.size] = prime_ids
    ids = lm.sample_loops[sampler](padded, tf.constant(prime_ids.size), tf.constant(length), tf.constant([seed, 0], tf.int64))
    return lm.vocab.decode(ids.numpy())


def _compile_sample_loop(lm: CharLM, sampler: Sampler):
    native = lm.steps_natively()

    @tf.function(reduce_retracing=True, autograph=False, jit_compile=True)
    def loop(prime, prime_length, length, seed):
        packed = lm.encoder.pack_step_weights(lm.step_weights_dtype) if native else None
        # The prime runs through the same loop, one step per character, rather than as a
        # separate call over the whole sequence (which took 6 of 40 ms for 300 characters).
        def body(i, log_probs, states, out):
            drawn = sampler(log_probs, tf.random.experimental.stateless_fold_in(seed, i - prime_length))
            ids = tf.where(i < prime_length, prime[tf.minimum(i, prime_length - 1)][None], drawn)
            log_probs, states = lm.step_fn(ids, states, packed, i)
            out = tf.tensor_scatter_nd_update(out, [[tf.maximum(i - prime_length, 0)]], ids)
            return i + 1, log_probs, states, out

        start = (0, tf.zeros([1, lm.vocab.size]), lm.encoder.get_initial_state(1), tf.zeros([length], tf.int32))
        return tf.while_loop(lambda i, *_: i < prime_length + length, body, start)[3]

    return loop


@dataclass
class Beam:
    """One continuation: its text, total log-probability (nats) and score per character."""

    text: str
    log_prob: float

    @property
    def per_char(self) -> float:
        return self.log_prob / max(1, len(self.text))


def beam_search(lm: CharLM, prime_ids: np.ndarray, width: int, length: int) -> list[Beam]:
    """The ``width`` most likely continuations of ``length`` characters found, best first."""
    _check_length(length)
    if width < 1:
        raise SeqkitError("--beam must be at least 1.")
    log_probs, states = lm.prime(prime_ids)
    allowed = filter_logits(log_probs, 1.0, 0, 1.0)[0].numpy()  # the unknown id at -inf
    width = min(width, int(np.isfinite(allowed).sum()) ** length)
    scores = np.zeros(1)
    tokens = np.zeros((1, 0), np.int32)
    for _ in range(length):
        candidates = scores[:, None] + filter_logits(log_probs, 1.0, 0, 1.0).numpy()
        flat = candidates.ravel()
        keep = min(width, int(np.isfinite(flat).sum()))
        best = np.argsort(-flat, kind="stable")[:keep]
        rows, ids = best // candidates.shape[1], (best % candidates.shape[1]).astype(np.int32)
        tokens = np.concatenate([tokens[rows], ids[:, None]], axis=1)
        scores = flat[best]
        states = [tf.gather(s, rows) for s in states]
        log_probs, states = lm.step(ids, states)
    return [Beam(lm.vocab.decode(t), float(s)) for t, s in zip(tokens, scores)]


@dataclass
class Node:
    """A node of the prediction tree: a character, its probability given its parent, the
    probability of the whole path from the prime, and its children."""

    char: str
    prob: float
    path_prob: float
    children: list["Node"] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "char": self.char,
            "prob": self.prob,
            "path_prob": self.path_prob,
            "children": [c.to_dict() for c in self.children],
        }


def prediction_tree(lm: CharLM, prime_ids: np.ndarray, width: int, depth: int) -> list[Node]:
    """The ``width`` likeliest next characters, each expanded again, ``depth`` levels deep."""
    if width < 1 or depth < 1:
        raise SeqkitError("--width and --depth must be at least 1.")
    log_probs, states = lm.prime(prime_ids)
    frontier: list[Node] = []
    roots: list[Node] = []
    path_logp = np.zeros(1)
    for level in range(depth):
        logp = filter_logits(log_probs, 1.0, 0, 1.0).numpy()
        k = min(width, int(np.isfinite(logp[0]).sum()))
        top = np.argsort(-logp, axis=1, kind="stable")[:, :k]
        children, rows, ids, new_logp = [], [], [], []
        for row in range(logp.shape[0]):
            for i in top[row]:
                node = Node(lm.vocab.decode([i]), math.exp(logp[row, i]), math.exp(path_logp[row] + logp[row, i]))
                (frontier[row].children if level else roots).append(node)
                children.append(node)
                rows.append(row)
                ids.append(i)
                new_logp.append(path_logp[row] + logp[row, i])
        if level == depth - 1:
            break
        states = [tf.gather(s, rows) for s in states]
        log_probs, states = lm.step(np.asarray(ids, np.int32), states)
        frontier, path_logp = children, np.asarray(new_logp)
    return roots


def score(lm: CharLM, text: str) -> dict:
    """How likely the model finds ``text``: every character after the first is predicted."""
    unknown = lm.vocab.unknown_chars(text)
    if unknown:
        raise SeqkitError(f"The text has characters the model never saw: {describe(unknown)}.")
    ids = lm.vocab.encode(text)
    if len(ids) < 2:
        raise SeqkitError("Give at least two characters to score.")
    logp = lm.log_probs(ids)
    total = float(logp.sum())
    nats = -total / len(logp)
    return {
        "characters_scored": len(logp),
        "log_prob_nats": total,
        "nats_per_char": nats,
        "bits_per_char": nats / math.log(2),
        "perplexity": math.exp(nats),
        "surprisal_bits": [
            {"char": lm.vocab.decode([i]), "bits": float(-lp / math.log(2))} for i, lp in zip(ids[1:], logp)
        ],
    }
