"""The models that ship inside the package, so that decoding works before any training.

Each is a run folder under ``seqkit/data/models/NAME`` (``model.keras``, ``vocab.json``,
``config.json``, ``metrics.json``) with a card: ``card.json`` for programs (how it was
made, its size, the data's licence, and its loss on a fixed slice of held-out text, which
a test reproduces) and ``CARD.md`` for people. Commands that take ``--model`` use
:data:`DEFAULT` when it is left out. ``scripts/bundle_model.py`` remakes it.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from seqkit.errors import SeqkitError
from seqkit.fileio import read_json

DEFAULT = "shakespeare"
REINSTALL = "reinstall seqkit (pip install --force-reinstall seqkit)"


def root() -> Path:
    """The folder the bundled models live in."""
    return Path(str(resources.files("seqkit.data") / "models"))


@dataclass
class BundledModel:
    """One bundled model: its name, folder and card."""

    name: str
    path: Path

    @property
    def card(self) -> dict:
        try:
            return read_json(self.path / "card.json", "model card")
        except SeqkitError:
            raise SeqkitError(f"The bundled model's card {self.path / 'card.json'} is damaged: {REINSTALL}.") from None

    def describe(self) -> str:
        """One line: what it is and how good."""
        card = self.card
        return (
            f"{card['description']}; {card['val_loss_nats']:.4f} nats/char on its validation text; "
            f"{card['size_bytes'] / 1e6:.1f} MB"
        )


def models() -> list[BundledModel]:
    """Every bundled model, by name."""
    folder = root()
    found = sorted(p for p in folder.iterdir() if (p / "card.json").is_file()) if folder.is_dir() else []
    return [BundledModel(p.name, p) for p in found]


def path(name: str = DEFAULT) -> Path:
    """The folder of the bundled model ``name``."""
    folder = root() / name
    if not folder.is_dir():
        known = ", ".join(m.name for m in models()) or "none"
        raise SeqkitError(f"No bundled model is called {name} (bundled: {known}): {REINSTALL} if it should be.")
    return folder


def is_bundled(folder: str | Path) -> bool:
    """Whether ``folder`` is one of the bundled models."""
    try:
        return Path(folder).resolve().is_relative_to(root().resolve())
    except OSError:
        return False
