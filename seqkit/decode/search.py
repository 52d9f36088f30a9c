"""Searches over a loaded :class:`CharLM`'s continuations: beam search and the prediction tree.

Beam search keeps every beam in one batch and reorders the states when beams are chosen;
the tree expands one level per batched call. Neither ever proposes the unknown id.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import tensorflow as tf

from seqkit.decode.lm import CharLM
from seqkit.decode.sampling import mask_unknown
from seqkit.decode.streams import check_stops
from seqkit.errors import SeqkitError


@dataclass
class Beam:
    """One continuation: its text, total log-probability (nats) and score per character."""

    text: str
    log_prob: float

    @property
    def per_char(self) -> float:
        return self.log_prob / max(1, len(self.text))


def beam_search(
    lm: CharLM,
    prime_ids: np.ndarray,
    width: int,
    length: int,
    stop: Sequence[str] = (),
    include_stop: bool = False,
) -> list[Beam]:
    """The ``width`` most likely continuations of ``length`` characters found, best first
    by total log-probability. A beam that produces one of the ``stop`` strings ends there
    (its text without the stop string, unless ``include_stop``)."""
    if length < 1:
        raise SeqkitError("`length` must be at least 1.")
    if width < 1:
        raise SeqkitError("`width` must be at least 1.")
    stops = check_stops(lm, stop)
    log_probs, states = lm.prime(prime_ids)
    allowed = mask_unknown(log_probs)[0].numpy()
    width = min(width, int(np.isfinite(allowed).sum()) ** length)
    scores = np.zeros(1)
    tokens = np.zeros((1, 0), np.int32)
    finished: list[Beam] = []
    for _ in range(length):
        candidates = scores[:, None] + mask_unknown(log_probs).numpy()
        flat = candidates.ravel()
        keep = min(width - len(finished), int(np.isfinite(flat).sum()))
        best = np.argsort(-flat, kind="stable")[:keep]
        rows, ids = best // candidates.shape[1], (best % candidates.shape[1]).astype(np.int32)
        tokens = np.concatenate([tokens[rows], ids[:, None]], axis=1)
        scores = flat[best]
        going = np.ones(len(rows), bool)
        for row, row_tokens in enumerate(tokens):
            text = lm.vocab.decode(row_tokens)
            ending = next((s for s in stops if text.endswith(s)), None)
            if ending is not None:
                finished.append(Beam(text if include_stop else text[: -len(ending)], float(scores[row])))
                going[row] = False
        if not going.any() or len(finished) >= width:
            break
        tokens, scores, rows, ids = tokens[going], scores[going], rows[going], ids[going]
        states = [tf.gather(s, rows) for s in states]
        log_probs, states = lm.step(ids, states)
    else:
        finished += [Beam(lm.vocab.decode(t), float(s)) for t, s in zip(tokens, scores)]
    return sorted(finished, key=lambda beam: -beam.log_prob)[:width]


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


def prediction_tree(
    lm: CharLM,
    prime_ids: np.ndarray,
    width: int,
    depth: int,
    stop: Sequence[str] = (),
    mass: float | None = None,
) -> list[Node]:
    """The ``width`` likeliest next characters, each expanded again, ``depth`` levels deep;
    a node whose path completes one of the ``stop`` strings is not expanded. With ``mass``,
    each node keeps only its likeliest children that together hold that much probability
    (at most ``width``)."""
    if width < 1 or depth < 1:
        raise SeqkitError("`width` and `depth` must be at least 1.")
    stops = check_stops(lm, stop)
    prime = lm.vocab.decode(prime_ids)
    log_probs, states = lm.prime(prime_ids)
    frontier: list[tuple[Node, str]] = []
    roots: list[Node] = []
    path_logp = np.zeros(1)
    for level in range(depth):
        logp = mask_unknown(log_probs).numpy()
        k = min(width, int(np.isfinite(logp[0]).sum()))
        top = np.argsort(-logp, axis=1, kind="stable")[:, :k]
        children, rows, ids, new_logp = [], [], [], []
        for row in range(logp.shape[0]):
            parent, text = frontier[row] if level else (None, prime)
            chosen = top[row]
            if mass is not None:
                held = np.cumsum(np.exp(logp[row, chosen]))
                chosen = chosen[: int(np.searchsorted(held, mass)) + 1]
            for i in chosen:
                node = Node(lm.vocab.decode([i]), math.exp(logp[row, i]), math.exp(path_logp[row] + logp[row, i]))
                (parent.children if parent is not None else roots).append(node)
                path = text + node.char
                if any(path.endswith(s) for s in stops):
                    continue  # the stream would end here: a leaf
                children.append((node, path))
                rows.append(row)
                ids.append(i)
                new_logp.append(path_logp[row] + logp[row, i])
        if level == depth - 1 or not children:
            break
        states = [tf.gather(s, rows) for s in states]
        log_probs, states = lm.step(np.asarray(ids, np.int32), states)
        frontier, path_logp = children, np.asarray(new_logp)
    return roots
