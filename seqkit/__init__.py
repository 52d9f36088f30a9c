"""seqkit: a character-level sequence-model toolkit on TensorFlow 2 / Keras 3.

Importing the package stays cheap (no TensorFlow); import the submodules you need:
``seqkit.core`` (recurrent layers and training loop), ``seqkit.mnist`` (row-sequence MNIST),
``seqkit.datasets`` (data lookup and verification).
"""

from seqkit.errors import SeqkitError

__version__ = "0.1.0"
__all__ = ["SeqkitError", "__version__"]
