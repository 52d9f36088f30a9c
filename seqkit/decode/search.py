"""Searches over a loaded :class:`CharLM`'s continuations: beam search and the prediction tree.

Beam search keeps every beam in one batch and reorders the states when beams are chosen;
the tree expands one level per batched call. Neither ever proposes the unknown id.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import tensorflow as tf

from seqkit.decode.lm import CharLM
from seqkit.decode.sampling import mask_unknown
from seqkit.errors import SeqkitError


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
    if length < 1:
        raise SeqkitError("`length` must be at least 1.")
    if width < 1:
        raise SeqkitError("`width` must be at least 1.")
    log_probs, states = lm.prime(prime_ids)
    allowed = mask_unknown(log_probs)[0].numpy()
    width = min(width, int(np.isfinite(allowed).sum()) ** length)
    scores = np.zeros(1)
    tokens = np.zeros((1, 0), np.int32)
    for _ in range(length):
        candidates = scores[:, None] + mask_unknown(log_probs).numpy()
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
    children: list[Node] = field(default_factory=list)

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
        raise SeqkitError("`width` and `depth` must be at least 1.")
    log_probs, states = lm.prime(prime_ids)
    frontier: list[Node] = []
    roots: list[Node] = []
    path_logp = np.zeros(1)
    for level in range(depth):
        logp = mask_unknown(log_probs).numpy()
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
