"""A character model's run folder: what ``train-char`` writes and every decoder reads.

One folder holds a run: ``config.json`` (the settings, and the *identity* a resumed run
must share), ``vocab.json``, ``checkpoints/`` (periodic) and ``best/`` (best by validation
loss), ``model.keras`` (the best weights, written at the end), ``metrics.json``,
``history.csv``, TensorBoard ``logs/``, ``curves.png``, and the encoded corpus
(``corpus.npy`` and ``corpus.json``, :class:`seqkit.text.corpus.EncodedCorpus`). Training writes it through
:class:`RunFolder`; decoding and serving load a model from it with :meth:`RunFolder.load`
and need nothing of the trainer.
"""

from __future__ import annotations

import csv
import io
import shutil
from pathlib import Path

from seqkit.errors import SeqkitError
from seqkit.fileio import atomic_path, read_json, with_defaults, write_json, write_text
from seqkit.text.bundled import REINSTALL, is_bundled
from seqkit.text.char_model import CharModelConfig
from seqkit.text.vocab import Vocabulary

CONFIG, VOCAB, MODEL, METRICS, HISTORY, CURVES = (
    "config.json",
    "vocab.json",
    "model.keras",
    "metrics.json",
    "history.csv",
    "curves.png",
)
CHECKPOINTS, BEST, LOGS = "checkpoints", "best", "logs"
OUTPUTS = (CHECKPOINTS, BEST, LOGS, HISTORY, METRICS, MODEL, CURVES)  # what a fresh start clears


class RunFolder:
    """One run's folder (it need not exist yet).

    Args:
        path: the folder, ``train-char``'s ``--out``.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    # -- written by training -------------------------------------------------------------------
    def check_writable(self) -> None:
        """Make the folder, and fail early (in one line) where it cannot be written."""
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            with atomic_path(self.path / ".write-test"):
                pass
            (self.path / ".write-test").unlink()
        except (OSError, SeqkitError) as err:
            raise SeqkitError(f"Cannot write to `out_dir` {self.path} ({err}): choose a writable folder.") from None

    def clear_outputs(self) -> None:
        """Delete what a run wrote (a fresh start keeps nothing of the old run)."""
        for name in OUTPUTS:
            target = self.path / name
            shutil.rmtree(target) if target.is_dir() else target.unlink(missing_ok=True)

    def check_same_model(self, identity: dict) -> None:
        """Refuse to resume a run of another configuration in this folder."""
        saved = self.identity()
        differ = sorted(k for k in set(saved) | set(identity) if saved.get(k) != identity.get(k))
        if differ:
            raise SeqkitError(
                f"{self.path} holds a model of another configuration ({', '.join(differ)} differ): use "
                "another `out_dir`, or `fresh` to replace it."
            )

    def write_config(self, identity: dict, config: dict, vocab: Vocabulary) -> None:
        vocab.save(self.path / VOCAB)
        write_json(self.path / CONFIG, {"identity": identity, "config": config})

    def write_metrics(self, metrics: dict) -> None:
        write_json(self.path / METRICS, metrics)

    def read_history(self) -> list[dict]:
        """The evaluation records of ``history.csv`` (numbers; None where empty)."""
        path = self.path / HISTORY
        if not path.is_file():
            return []
        with open(path, newline="", encoding="utf-8") as f:
            rows = csv.DictReader(f)
            return [{k: (float(v) if v not in ("", None) else None) for k, v in row.items()} for row in rows]

    def write_history(self, rows: list[dict]) -> None:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
        write_text(self.path / HISTORY, buffer.getvalue())

    # -- read by everyone ----------------------------------------------------------------------
    def holds_config(self) -> bool:
        return (self.path / CONFIG).is_file()

    def identity(self) -> dict:
        """The identity that config.json records, plus the default of each model field it
        lacks, so that a run written before a field existed still resumes and loads."""
        identity = read_json(self.path / CONFIG, "saved configuration").get("identity", {})
        if not isinstance(identity, dict):
            raise SeqkitError(f"{self.path / CONFIG} is damaged: retrain.")
        return with_defaults({"ema": False, **identity}, CharModelConfig)

    def model_config(self) -> CharModelConfig:
        identity = self.identity()
        try:
            return CharModelConfig(**{k: identity[k] for k in CharModelConfig.__dataclass_fields__})
        except (KeyError, TypeError):
            raise SeqkitError(f"{self.path / CONFIG} is damaged: retrain.") from None

    def load(self):
        """The trained Keras model and its vocabulary: ``model.keras``, else the weights of
        the best (or newest) checkpoint. A bundled model's damaged file is named, with the
        remedy of reinstalling."""
        if not is_bundled(self.path):
            return self._load()
        try:
            return self._load()
        except SeqkitError as err:
            named = [n for n in (MODEL, VOCAB, CONFIG) if str(self.path / n) in str(err)]
            named = named or [n for n in (CONFIG, VOCAB, MODEL) if not (self.path / n).is_file()]
            where = self.path / named[0] if named else self.path
            raise SeqkitError(f"The bundled model's {where} is missing or damaged: {REINSTALL}.") from None

    def _load(self):
        if not (self.path / CONFIG).is_file() or not (self.path / VOCAB).is_file():
            raise SeqkitError(
                f"{self.path} holds no trained model (config.json and vocab.json are missing): "
                "point `model_dir` at a seqkit train-char output folder."
            )
        model_config = self.model_config()  # a damaged config.json fails here, whatever holds the weights
        vocab = Vocabulary.load(self.path / VOCAB)
        model = self._load_keras() if (self.path / MODEL).is_file() else self._load_checkpoint(model_config)
        if model.get_layer("logits").units != vocab.size:
            raise SeqkitError(f"{self.path}: the model and vocab.json do not belong together: retrain.")
        return model, vocab

    def _load_keras(self):
        import keras

        # The layers register themselves with Keras when imported.
        import seqkit.core.recurrent  # noqa: F401

        try:
            return keras.models.load_model(self.path / MODEL)
        except Exception as err:  # noqa: BLE001 (Keras raises many types for a damaged archive)
            raise SeqkitError(
                f"{self.path / MODEL} is damaged ({type(err).__name__}): retrain, or delete it to use the "
                "last checkpoint."
            ) from None

    def _load_checkpoint(self, model_config: CharModelConfig):
        from seqkit.core.checkpoints import restore_newest, weights_checkpoint
        from seqkit.text.char_model import build_char_model

        model = build_char_model(model_config)
        weights = weights_checkpoint(model)
        for kind in (BEST, CHECKPOINTS):
            if restore_newest(weights, self.path / kind, partial=True) is not None:
                return model
        raise SeqkitError(f"{self.path} has no model.keras and no checkpoint yet: train first.")
