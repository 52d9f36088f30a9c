"""The character language model: embedding -> sequence core -> dense over the vocabulary."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import keras

from seqkit.core import SequenceEncoder


@dataclass
class CharModelConfig:
    """Shape of the character model.

    Args:
        vocab_size: ids, the unknown id included (training sets it from the vocabulary).
        embedding: width of the character embedding.
        cell: ``lstm``, ``gru``, ``rnn`` or ``peephole``.
        layers: stacked recurrent layers.
        units: state size of each layer.
        dropout: dropout on each layer's output while training.
        weight_drop: DropConnect rate on the recurrent kernels while training.
    """

    vocab_size: int | None = None
    embedding: int = 64
    cell: str = "lstm"
    layers: int = 2
    units: int = 256
    dropout: float = 0.25
    weight_drop: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


def build_char_model(config: CharModelConfig, seed: int | None = None) -> keras.Model:
    """ids [batch, time] -> next-character logits [batch, time, vocab_size].

    The layers are named (``embedding``, ``encoder``, ``logits``) so that a decoder can call
    them one step at a time with the encoder's carried state.
    """
    ids = keras.Input(shape=(None,), dtype="int32", name="ids")
    embedded = keras.layers.Embedding(config.vocab_size, config.embedding, name="embedding")(ids)
    encoded = SequenceEncoder(
        config.units,
        cell=config.cell,
        layers=config.layers,
        dropout=config.dropout,
        weight_drop=config.weight_drop,
        return_sequences=True,
        seed=seed,
        name="encoder",
    )(embedded)
    logits = keras.layers.Dense(config.vocab_size, name="logits")(encoded)
    return keras.Model(ids, logits, name="char_lm")
