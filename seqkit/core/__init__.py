"""The sequence core: recurrent cells, the stacked encoder layer, and the training loop."""

from seqkit.core.cells import CELLS, GRUCell, LSTMCell, PeepholeLSTMCell, TanhCell, make_cell
from seqkit.core.recurrent import SequenceEncoder

__all__ = [
    "CELLS",
    "GRUCell",
    "LSTMCell",
    "PeepholeLSTMCell",
    "SequenceEncoder",
    "TanhCell",
    "make_cell",
]
