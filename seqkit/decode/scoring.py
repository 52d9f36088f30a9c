"""Scoring a text: how likely a loaded :class:`CharLM` finds each of its characters."""

from __future__ import annotations

import math

from seqkit.decode.lm import CharLM
from seqkit.errors import SeqkitError
from seqkit.text.vocab import describe


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
