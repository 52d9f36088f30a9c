"""Character vocabulary: Unicode code points (after optional NFC normalization) <-> ids.

Id 0 stands for any character the training text never had; ids 1..N are the training
text's characters in code-point order. The vocabulary is saved beside the model as JSON.
"""

from __future__ import annotations

import json
import os
import unicodedata
from dataclasses import dataclass

import numpy as np

from seqkit.errors import SeqkitError
from seqkit.fileio import read_json, write_json

UNKNOWN_ID = 0
UNKNOWN_SYMBOL = "\ufffd"  # how an unknown id decodes
NORMALIZATIONS = ("NFC", "none")


def codepoints(text: str) -> np.ndarray:
    """The code points of a string, as uint32."""
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)


@dataclass(frozen=True)
class Vocabulary:
    """Sorted code points of the training text; ``id = 1 + index``, 0 for unknown.

    Args:
        points: the known code points, sorted ascending.
        normalization: ``NFC`` (texts are NFC-normalized before encoding) or ``none``.
    """

    points: tuple[int, ...]
    normalization: str = "NFC"

    def __post_init__(self) -> None:
        if self.normalization not in NORMALIZATIONS:
            raise SeqkitError(f"Unknown normalization {self.normalization!r}: use NFC or none.")
        if list(self.points) != sorted(set(self.points)):
            raise SeqkitError("A vocabulary's code points must be sorted and distinct.")

    @classmethod
    def from_points(cls, points: np.ndarray, normalization: str = "NFC") -> Vocabulary:
        return cls(tuple(int(p) for p in np.unique(points)), normalization)

    @property
    def size(self) -> int:
        """Number of ids, the unknown id included (the model's output width)."""
        return len(self.points) + 1

    @property
    def chars(self) -> list[str]:
        return [chr(p) for p in self.points]

    def normalize(self, text: str) -> str:
        return unicodedata.normalize("NFC", text) if self.normalization == "NFC" else text

    def ids_of_points(self, points: np.ndarray) -> np.ndarray:
        """Map code points to ids (int32); points not in the vocabulary become 0."""
        table = np.asarray(self.points, dtype=np.uint32)
        if table.size == 0:
            return np.zeros(len(points), np.int32)
        index = np.minimum(np.searchsorted(table, points), table.size - 1)
        return np.where(table[index] == points, index + 1, UNKNOWN_ID).astype(np.int32)

    def encode(self, text: str) -> np.ndarray:
        """Ids of a text, normalized first; unknown characters become id 0."""
        return self.ids_of_points(codepoints(self.normalize(text)))

    def unknown_chars(self, text: str) -> list[str]:
        """The distinct characters of ``text`` (normalized) that the vocabulary lacks."""
        text = self.normalize(text)
        ids = self.ids_of_points(codepoints(text))
        return sorted({ch for ch, i in zip(text, ids) if i == UNKNOWN_ID})

    def decode(self, ids) -> str:
        """Text of a sequence of ids; id 0 (or out of range) decodes as U+FFFD."""
        chars = self.chars
        return "".join(chars[i - 1] if 0 < i <= len(chars) else UNKNOWN_SYMBOL for i in map(int, ids))

    def save(self, path: str | os.PathLike) -> None:
        write_json(path, {"normalization": self.normalization, "chars": "".join(self.chars)})

    @classmethod
    def load(cls, path: str | os.PathLike) -> Vocabulary:
        obj = read_json(path, "vocabulary")
        try:
            return cls.from_points(codepoints(obj["chars"]), obj.get("normalization", "NFC"))
        except (KeyError, TypeError) as err:
            raise SeqkitError(f"The vocabulary {path} is damaged ({err}): retrain.") from None


def describe(chars: list[str]) -> str:
    """Characters shown visibly for a message: 'a', '\\n', U+00A0."""
    return ", ".join(json.dumps(c, ensure_ascii=False) if c.isprintable() else f"U+{ord(c):04X}" for c in chars)
