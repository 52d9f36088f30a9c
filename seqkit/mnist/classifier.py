"""The row-sequence MNIST classifier: 28 rows of 28 pixels -> sequence core -> 10 logits."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import keras

from seqkit.core import SequenceEncoder


@dataclass
class ClassifierConfig:
    """Shape of the classifier.

    Args:
        cell: ``lstm``, ``gru``, ``rnn`` or ``peephole``.
        layers: stacked recurrent layers.
        units: state size of each layer.
        dropout: dropout on each layer's output while training.
        bidirectional: read the rows both top-down and bottom-up.
    """

    cell: str = "lstm"
    layers: int = 1
    units: int = 128
    dropout: float = 0.0
    bidirectional: bool = False

    def to_dict(self) -> dict:
        return asdict(self)


def build_classifier(config: ClassifierConfig, seed: int | None = None) -> keras.Model:
    """A functional Keras model: images [batch, 28, 28] floats -> logits [batch, 10]."""
    rows = keras.Input(shape=(28, 28), name="rows")
    encoded = SequenceEncoder(
        config.units,
        cell=config.cell,
        layers=config.layers,
        dropout=config.dropout,
        bidirectional=config.bidirectional,
        seed=seed,
        name="encoder",
    )(rows)
    logits = keras.layers.Dense(10, name="logits")(encoded)
    return keras.Model(rows, logits, name="row_mnist")
