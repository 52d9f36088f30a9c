"""`seqkit train-char`: train a character language model into an output directory.

``--out`` ends up holding everything ``seqkit generate`` needs: ``config.json``,
``vocab.json``, ``checkpoints/`` (periodic) and ``best/`` (best by validation loss),
``model.keras`` (the best weights), ``metrics.json``, ``history.csv``, TensorBoard logs in
``logs/`` and ``curves.png``. Running the same command again resumes from the last
checkpoint, data position included; ``--fresh`` starts over.
"""

from __future__ import annotations

import csv
import io
import math
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

from seqkit.core.trainer import Record, TrainConfig
from seqkit.errors import SeqkitError
from seqkit.fileio import atomic_path, read_json, with_defaults, write_json, write_text
from seqkit.text.char_model import CharModelConfig
from seqkit.text.vocab import Vocabulary

NATS_PER_BIT = math.log(2.0)
OUTPUTS = ("checkpoints", "best", "logs", "history.csv", "metrics.json", "model.keras", "curves.png")


@dataclass
class CharConfig:
    """Everything one `train-char` run is configured by.

    Args:
        embedding, cell, layers, units, dropout, weight_drop: the model (see CharModelConfig).
        seq_len: characters per training window (the targets are shifted by one).
        batch_size: windows per step (the global batch).
        val_fraction: the last part of the text held out for validation.
        normalization: ``NFC`` or ``none``.
        eval_every: steps between evaluations and checkpoints.
        max_time: training seconds allowed in all (evaluation excluded); None for no limit.
        seed: seeds initialization, dropout and the order of windows.
        train: optimizer and schedule settings.
    """

    embedding: int = 64
    cell: str = "lstm"
    layers: int = 2
    units: int = 256
    dropout: float = 0.25
    weight_drop: float = 0.0
    seq_len: int = 64
    batch_size: int = 16
    val_fraction: float = 0.1
    normalization: str = "NFC"
    eval_every: int = 200
    max_time: float | None = None
    seed: int = 1
    train: TrainConfig = field(
        default_factory=lambda: TrainConfig(epochs=20, lr=5e-3, warmup_steps=100, clip=5.0)
    )

    def model_config(self, vocab: Vocabulary) -> CharModelConfig:
        return CharModelConfig(
            vocab.size, self.embedding, self.cell, self.layers, self.units, self.dropout, self.weight_drop
        )

    def identity(self, vocab: Vocabulary) -> dict:
        """What a resumed run must share with the saved one: model shape, data stream, and
        whether its checkpoints hold weight averages (their decay may change, like --lr)."""
        return {
            **self.model_config(vocab).to_dict(),
            "ema": self.train.ema > 0,
            "vocab": "".join(vocab.chars),
            "normalization": self.normalization,
            "seq_len": self.seq_len,
            "batch_size": self.batch_size,
            "val_fraction": self.val_fraction,
            "seed": self.seed,
        }

    def to_dict(self) -> dict:
        return asdict(self)


def _check_out(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        with atomic_path(out / ".write-test"):
            pass
        (out / ".write-test").unlink()
    except (OSError, SeqkitError) as err:
        raise SeqkitError(f"Cannot write to --out {out} ({err}): choose a writable folder.") from None


def saved_identity(folder: Path) -> dict:
    """The identity that a train-char folder's config.json records, plus the default of each
    field it lacks, so that a run written before a field existed still resumes and loads."""
    identity = read_json(folder / "config.json", "saved configuration").get("identity", {})
    if not isinstance(identity, dict):
        raise SeqkitError(f"{folder / 'config.json'} is damaged: retrain.")
    return with_defaults({"ema": False, **identity}, CharModelConfig)


def _check_same_model(out: Path, identity: dict) -> None:
    saved = saved_identity(out)
    differ = sorted(k for k in set(saved) | set(identity) if saved.get(k) != identity.get(k))
    if differ:
        raise SeqkitError(
            f"{out} holds a model of another configuration ({', '.join(differ)} differ): use "
            "another --out, or --fresh to replace it."
        )


def _read_history(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8") as f:
        return [{k: (float(v) if v not in ("", None) else None) for k, v in row.items()} for row in csv.DictReader(f)]


def _write_history(path: Path, rows: list[dict]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    write_text(path, buffer.getvalue())


def _row(record: Record) -> dict:
    row = record.to_dict()
    row["val_bits_per_char"] = None if record.val_loss is None else record.val_loss / NATS_PER_BIT
    return row


def train_char(
    corpus_path: str | Path,
    out_dir: str | Path,
    config: CharConfig | None = None,
    fresh: bool = False,
    encoding: str = "utf-8",
    verbose: bool = True,
    strategy: str = "auto",
    worker_timeout: float = 300.0,
) -> dict:
    """Train (or resume training) a character model; return the contents of metrics.json.

    ``strategy`` names a :func:`seqkit.distribute.make_strategy` strategy; in a cluster
    every worker runs this same call, and only the chief writes to ``out_dir``.
    """
    from seqkit.distribute import distributed

    with distributed(strategy, worker_timeout) as distribution:  # before any other TF operation
        return _train(corpus_path, Path(out_dir), config or CharConfig(), fresh, encoding, verbose, distribution)


def _train(corpus_path, out: Path, config: CharConfig, fresh: bool, encoding: str, verbose: bool, strategy) -> dict:
    import keras
    import tensorflow as tf

    from seqkit.core.trainer import Trainer
    from seqkit.distribute import is_chief
    from seqkit.text.corpus import eval_windows, read_corpus, train_windows, windows_per_epoch
    from seqkit.text.char_model import build_char_model

    chief = is_chief(strategy)
    verbose = verbose and chief
    corpus = read_corpus(corpus_path, config.val_fraction, config.normalization, encoding)
    identity = config.identity(corpus.vocab)
    if chief:
        _check_out(out)
        if (out / "config.json").is_file() and not fresh:
            _check_same_model(out, identity)
        if fresh:
            for name in OUTPUTS:
                target = out / name
                shutil.rmtree(target) if target.is_dir() else target.unlink(missing_ok=True)
        corpus.vocab.save(out / "vocab.json")
        write_json(out / "config.json", {"identity": identity, "config": config.to_dict()})
    steps_per_epoch = max(1, windows_per_epoch(len(corpus.train_ids), config.seq_len) // config.batch_size)

    keras.utils.set_random_seed(config.seed)
    model_config = config.model_config(corpus.vocab)
    trainer = Trainer(
        lambda: build_char_model(model_config, seed=config.seed),
        config.train,
        steps_per_epoch,
        strategy=strategy,
        checkpoint_dir=out,
        unit="chars",
    )
    resumed = not fresh and trainer.restore()
    trainer.check_workers_agree()
    train_ds = train_windows(corpus.train_ids, config.seq_len, config.batch_size, config.seed, trainer.step)
    val_ds = eval_windows(corpus.val_ids, config.seq_len, config.batch_size) if len(corpus.val_ids) > 1 else None
    if verbose:
        print(
            f"{'Resuming at step ' + str(trainer.step) if resumed else 'Training'}: {len(corpus.train_ids):,} "
            f"training and {len(corpus.val_ids):,} validation characters, {corpus.vocab.size - 1} distinct; "
            f"{config.layers} x {config.cell} {config.units}, {trainer.model.count_params():,} parameters; "
            f"{steps_per_epoch} steps per epoch, "
            + (f"{trainer.total_steps} in all" if trainer.total_steps is not None else "as many as fit")
            + (f", at most {config.max_time:g} s" if config.max_time else "")
            + trainer.step_notes,
            flush=True,
        )

    if not chief:  # a worker of a cluster: the chief writes everything
        trainer.fit(train_ds, val_ds, eval_every=config.eval_every, max_seconds=config.max_time, verbose=False)
        return {"chief": False, "steps": trainer.step, "train_seconds": float(trainer.seconds.numpy())}

    # Records past the restored step were made after the last checkpoint: they are redone.
    history = [r for r in _read_history(out / "history.csv") if r["step"] <= trainer.step] if resumed else []
    writer = tf.summary.create_file_writer(str(out / "logs"))

    def on_eval(record: Record) -> None:
        row = _row(record)
        history.append(row)
        _write_history(out / "history.csv", history)
        with writer.as_default(step=record.step):
            tf.summary.scalar("loss_nats/train", record.loss)
            tf.summary.scalar("chars_per_sec", record.samples_per_sec)
            tf.summary.scalar("learning_rate", record.lr)
            if record.val_loss is not None:
                tf.summary.scalar("loss_nats/val", record.val_loss)
                tf.summary.scalar("bits_per_char/val", row["val_bits_per_char"])
        writer.flush()

    trainer.fit(train_ds, val_ds, eval_every=config.eval_every, max_seconds=config.max_time, on_eval=on_eval, verbose=verbose)
    return _finish(trainer, out, history)


def _finish(trainer, out: Path, history: list[dict]) -> dict:
    """Restore the best checkpoint; write model.keras, metrics.json and curves.png."""
    from seqkit.plots import plot_curves

    steps, seconds = trainer.step, float(trainer.seconds.numpy())
    best = trainer.restore("best")
    if not best:  # no validation chose the weights: keep the averages, which a best would hold
        trainer.use_averages()
    best_step = trainer.step if best else steps
    # The best checkpoint carries its own validation loss: no second evaluation pass.
    val_loss = float(trainer.best_val_loss.numpy()) if best else None
    with atomic_path(out / "model.keras", suffix=".keras") as tmp:
        trainer.model.save(tmp)
    config = trainer.config
    chars = sum(row["samples"] for row in history)
    metrics = {
        "val_loss_nats": val_loss,
        "val_bits_per_char": None if val_loss is None else val_loss / NATS_PER_BIT,
        "best_step": best_step,
        "steps": steps,
        "train_seconds": seconds,
        "train_chars_per_sec": chars / sum(row["seconds"] for row in history) if history else None,
        "epochs": steps / trainer.steps_per_epoch,
        "final_train_loss_nats": history[-1]["loss"] if history else None,
        "parameters": int(trainer.model.count_params()),
        "lr": config.lr,
    }
    write_json(out / "metrics.json", metrics)
    if history:
        plot_curves(
            history,
            out / "curves.png",
            [
                ("loss (nats/char)", [("loss", "train"), ("val_loss", "validation")]),
                ("chars/s", [("samples_per_sec", "training")]),
            ],
            title="character model",
            x_key="step",
        )
    return metrics
