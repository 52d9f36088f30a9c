"""`seqkit train-char`: train a character language model into a run folder.

The run folder (:mod:`seqkit.text.run_folder`) ends up holding everything ``seqkit
generate`` needs. Running the same command again resumes from the last checkpoint, data
position included; ``fresh`` starts over.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from seqkit.config import override
from seqkit.core.trainer import Record, TrainConfig
from seqkit.errors import SeqkitError
from seqkit.text.char_model import CharModelConfig
from seqkit.text.documents import Documents
from seqkit.text.run_folder import CURVES, LOGS, MODEL, RunFolder
from seqkit.text.vocab import Vocabulary

NATS_PER_BIT = math.log(2.0)


@dataclass
class CharConfig:
    """Everything one `train-char` run is configured by.

    Args:
        model: the model's shape (its ``vocab_size`` comes from the corpus).
        seq_len: characters per training window (the targets are shifted by one).
        batch_size: windows per step (the global batch).
        val_fraction: the last part of the text held out for validation.
        val_chars: the most held-out characters an evaluation reads (evenly spread blocks
            of them beyond this; see ``corpus.validation_sample``).
        normalization: ``NFC`` or ``none``.
        eval_every: steps between evaluations and checkpoints.
        max_time: training seconds allowed in all (evaluation excluded); None for no limit.
        seed: seeds initialization, dropout and the order of windows.
        train: optimizer and schedule settings.
    """

    model: CharModelConfig = field(default_factory=CharModelConfig)
    seq_len: int = 64
    batch_size: int = 16
    val_fraction: float = 0.1
    val_chars: int = 1_000_000
    normalization: str = "NFC"
    eval_every: int = 200
    max_time: float | None = None
    seed: int = 1
    train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=20, lr=5e-3, warmup_steps=100, clip=5.0))

    def model_config(self, vocab: Vocabulary) -> CharModelConfig:
        return dataclasses.replace(self.model, vocab_size=vocab.size)

    def identity(self, vocab: Vocabulary) -> dict:
        """What a resumed run must share with the saved one: model shape, data stream, and
        whether its checkpoints hold weight averages (their decay may change, like `lr`)."""
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


def char_config(**settings) -> CharConfig:
    """The default :class:`CharConfig` with ``settings`` replaced by name wherever they sit
    (``units=512, lr=4e-3``; None leaves a default). A time budget (``max_time``) without
    ``epochs`` trains until the time is up."""
    config = override(CharConfig(), **settings)
    if settings.get("max_time") is not None and settings.get("epochs") is None:
        config.train = dataclasses.replace(config.train, epochs=None)
    return config


def _row(record: Record) -> dict:
    row = record.to_dict()
    row["val_bits_per_char"] = None if record.val_loss is None else record.val_loss / NATS_PER_BIT
    return row


def resolve_corpus(corpus: str | Path, data_dir: str | Path | None = None) -> Path:
    """The text file a corpus argument names: a path that exists, else a corpus of the data
    registry by name (``tinyshakespeare``), found in the data directory or downloaded and
    verified. A path always wins over a name."""
    from seqkit import datasets

    path = Path(corpus)
    if path.exists():
        return path
    if str(corpus) in datasets.corpora():
        return datasets.corpus_path(str(corpus), data_dir)
    if len(path.parts) == 1 and not path.suffix:  # a word, as a name would be
        raise SeqkitError(
            f"{corpus} is neither a file nor a corpus of the data registry ({', '.join(datasets.corpora())}): "
            "check the path, or give one of those names."
        )
    return path  # missing: reading it says so


def train_char(
    corpus_path: str | Path | Sequence[str | Path],
    out_dir: str | Path,
    config: CharConfig | None = None,
    fresh: bool = False,
    encoding: str = "utf-8",
    verbose: bool = True,
    strategy: str = "auto",
    worker_timeout: float = 300.0,
    data_dir: str | Path | None = None,
    include: Sequence[str] = (),
    strict: bool = False,
    init_from: str | Path | None = None,
    extend_vocab: bool = False,
) -> dict:
    """Train (or resume training) a character model; return the contents of metrics.json.

    Args:
        corpus_path: a text file; the name of a corpus of the data registry (looked up in
            ``data_dir``, else the data directory, and downloaded where missing); or
            several files and folders, read as one text of documents
            (:mod:`seqkit.text.documents`; ``include`` globs pick a folder's files,
            ``strict`` refuses a file that is not text instead of skipping it). The text
            is encoded once into the run folder (:class:`seqkit.text.corpus.EncodedCorpus`).
        out_dir: the run folder.
        strategy: a :func:`seqkit.distribute.make_strategy` strategy; in a cluster every
            worker runs this same call, and only the chief writes to ``out_dir``.
        init_from: fine-tune: start from this run folder's weights and vocabulary, with a
            fresh schedule. Its model's shape wins over ``config.model``'s (cell, layers,
            units, embedding); characters it never saw map to the unknown id, or with
            ``extend_vocab`` get embedding and output rows of their own.
    """
    from seqkit.distribute import distributed
    from seqkit.text.documents import collect

    paths = [corpus_path] if isinstance(corpus_path, (str, Path)) else list(corpus_path)
    if not paths:
        raise SeqkitError("Give a corpus: a text file, a folder, or a corpus name.")
    if extend_vocab and init_from is None:
        raise SeqkitError("`extend_vocab` adds characters to a base model's vocabulary: give `init_from` too.")
    documents = collect([resolve_corpus(path, data_dir) for path in paths], include, strict, encoding)
    with distributed(strategy, worker_timeout) as distribution:  # before any other TF operation
        base = _Base(init_from) if init_from is not None else None
        config = base.shape(config or CharConfig()) if base is not None else config or CharConfig()
        return _train(documents, Path(out_dir), config, fresh, verbose, distribution, base, extend_vocab)


SHAPE = ("cell", "layers", "units", "embedding")  # what a fine-tuned model keeps of its base


def check_base(init_from: str | Path, given: dict) -> None:
    """Refuse, in one line, a base that is not a trained run, or shape settings ``given``
    (name: value, None for unset) that disagree with the base's."""
    folder = RunFolder(init_from)
    if not folder.holds_config() or not (folder / "vocab.json").is_file():
        raise SeqkitError(
            f"{init_from} holds no trained model (config.json and vocab.json are missing): point `init_from` "
            "at a seqkit train-char output folder."
        )
    base = folder.model_config()
    differ = [f"`{n}` {given[n]}" for n in SHAPE if given.get(n) is not None and given[n] != getattr(base, n)]
    if differ:
        raise SeqkitError(
            f"{', '.join(differ)} {'disagree' if len(differ) > 1 else 'disagrees'} with the base model "
            f"({base.layers} x {base.cell} {base.units}, "
            f"embedding {base.embedding}): a fine-tuned model keeps its base's shape; leave them out."
        )


class _Base:
    """The run a fine-tuning starts from: its model, vocabulary and shape."""

    def __init__(self, folder: str | Path):
        check_base(folder, {})
        self.folder = RunFolder(folder)
        self.model, self.vocab = self.folder.load()
        self.config = self.folder.model_config()

    def shape(self, config: CharConfig) -> CharConfig:
        """``config`` with the base's shape."""
        shape = {name: getattr(self.config, name) for name in SHAPE}
        return dataclasses.replace(config, model=dataclasses.replace(config.model, **shape))

    def initialize(self, model, vocab: Vocabulary) -> None:
        """Give ``model`` (of vocabulary ``vocab``) the base's weights. Where ``vocab`` adds
        characters, each known character's embedding and output rows move to its new id,
        and each new one starts as a copy of the unknown character's, the unknown's output
        bias lowered by log(new + 1): the model starts out predicting as the base did, the
        unknown's probability shared among the new characters."""
        if vocab == self.vocab:
            model.set_weights(self.model.get_weights())
            return
        rows = np.concatenate([[0], 1 + np.searchsorted(vocab.points, self.vocab.points)])
        new = np.setdiff1d(np.arange(vocab.size), rows)
        for layer in model.layers:
            weights = self.model.get_layer(layer.name).get_weights()
            if layer.name == "embedding":
                (table,) = layer.get_weights()
                table[rows], table[new] = weights[0], weights[0][0]
                weights = [table]
            elif layer.name == "logits":
                kernel, bias = layer.get_weights()
                kernel[:, rows], kernel[:, new] = weights[0], weights[0][:, :1]
                bias[rows], bias[new] = weights[1], weights[1][0]
                bias[np.append(new, 0)] -= np.log(len(new) + 1)
                weights = [kernel, bias]
            layer.set_weights(weights)


def _read(
    documents: Documents,
    run: RunFolder,
    config: CharConfig,
    fresh: bool,
    chief: bool,
    verbose: bool,
    base,
    extend: bool,
):
    """The corpus as ids: the run folder's encoding where its sources are unchanged, else
    encoded anew. Only the chief writes the run folder; a worker of a cluster encodes its own
    copy into a scratch folder that is gone once the copy is mapped (the mapping outlives it),
    so that no worker holds the corpus in memory. The chief refuses to resume a run of
    another vocabulary or configuration (:func:`_check_resume`) before anything is written."""
    import tempfile

    from seqkit.progress import ProgressLine, transfer
    from seqkit.text.corpus import EncodedCorpus

    base_vocab = None if base is None else base.vocab

    def encoded(folder: Path) -> EncodedCorpus:
        return EncodedCorpus(folder, documents, config.normalization, config.val_fraction, base_vocab, extend)

    store = encoded(run.path)
    corpus = store.load() if chief else None
    if corpus is not None:
        _check_resume(run, config, corpus.vocab, fresh)
        if verbose:
            print(f"Reusing {store.ids_path}: its sources are unchanged.", flush=True)
        return corpus
    stale = store.stale
    total = sum(size for _, size, _ in store.key["sources"])
    line, began = ProgressLine(live=None if verbose else False), time.perf_counter()

    def progress(label: str):
        start = time.perf_counter()

        def shown(done: int) -> None:
            line.show(transfer(label, done, total, time.perf_counter() - start))

        return shown

    text = store.scan(progress("Reading (1 of 2)"))
    vocab = text.vocabulary(base_vocab, extend)
    if chief:
        _check_resume(run, config, vocab, fresh)  # before the old encoding is replaced
    if stale:
        line.clear()
        print(f"note: the corpus changed since {store.ids_path} was encoded: encoding it anew.", file=sys.stderr)
    if not chief:
        with tempfile.TemporaryDirectory(prefix="seqkit-worker-", ignore_cleanup_errors=True) as scratch:
            return encoded(Path(scratch)).write(text, vocab)
    run.check_writable()
    corpus = store.write(text, vocab, progress("Encoding (2 of 2)"))
    line.clear()
    if verbose:
        seconds = time.perf_counter() - began
        print(
            f"Encoded {total / 1e6:,.1f} MB into {text.total:,} ids ({corpus.ids.dtype}) in {seconds:.2f} s "
            f"({total / 1e6 / max(seconds, 1e-9):,.0f} MB/s): {store.ids_path}.",
            flush=True,
        )
    return corpus


def _check_resume(run: RunFolder, config: CharConfig, vocab: Vocabulary, fresh: bool) -> None:
    """Refuse to resume a run in ``run`` on a text of other characters (naming them) or of
    another configuration; a fresh start or an empty folder passes."""
    if run.holds_config() and not fresh:
        _check_characters(run, vocab)
        run.check_same_model(config.identity(vocab))


def _check_characters(run: RunFolder, vocab: Vocabulary) -> None:
    """Refuse to resume on a text of other characters, naming them."""
    from seqkit.text.vocab import describe

    saved = run.identity().get("vocab")
    if saved is None or saved == "".join(vocab.chars):
        return
    new, gone = sorted(set(vocab.chars) - set(saved)), sorted(set(saved) - set(vocab.chars))
    differ = [f"{len(chars)} {what}: {describe(chars)}" for what, chars in (("new", new), ("gone", gone)) if chars]
    raise SeqkitError(
        f"The corpus's characters differ from those of the model in {run.path} ({'; '.join(differ)}): use another "
        "`out_dir`, `fresh` to start over, or `init_from` to fine-tune that model on it."
    )


def _train(
    documents: Documents, out: Path, config: CharConfig, fresh: bool, verbose: bool, strategy, base=None, extend=False
) -> dict:
    import keras
    import tensorflow as tf

    from seqkit.core.trainer import Trainer
    from seqkit.distribute import is_chief
    from seqkit.text.char_model import build_char_model
    from seqkit.text.windows import eval_windows, train_windows, validation_sample, windows_per_epoch

    chief = is_chief(strategy)
    verbose = verbose and chief
    if base is not None and base.vocab.normalization != config.normalization:
        config = dataclasses.replace(config, normalization=base.vocab.normalization)  # the base's text form
    run = RunFolder(out)
    corpus = _read(documents, run, config, fresh, chief, verbose, base, extend)
    if verbose and documents.terminate:
        skipped = f"; skipped {documents.describe_skipped()}" if documents.skipped else ""
        print(f"Read {len(documents.files):,} files, {len(corpus.ids):,} characters{skipped}.", flush=True)
    identity = config.identity(corpus.vocab)
    if chief:
        run.check_writable()
        if fresh:
            run.clear_outputs()
        settings = config.to_dict() | ({"init_from": str(base.folder.path.resolve())} if base is not None else {})
        run.write_config(identity, settings, corpus.vocab)
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
    if base is not None and not resumed:
        base.initialize(trainer.model, corpus.vocab)  # the fresh schedule starts from the base
    trainer.check_workers_agree()
    train_ds = train_windows(corpus.train_ids, config.seq_len, config.batch_size, config.seed, trainer.step)
    val_ids = validation_sample(corpus.val_ids, config.val_chars)
    val_ds = eval_windows(val_ids, config.seq_len, config.batch_size) if len(val_ids) > 1 else None
    if verbose:
        print(
            f"{'Resuming at step ' + str(trainer.step) if resumed else 'Training'}: {len(corpus.train_ids):,} "
            f"training and {len(corpus.val_ids):,} validation characters"
            + (f" (evaluations read {len(val_ids):,})" if len(val_ids) < len(corpus.val_ids) else "")
            + f", {corpus.vocab.size - 1} distinct; "
            f"{model_config.layers} x {model_config.cell} {model_config.units}, "
            f"{trainer.model.count_params():,} parameters; "
            f"{steps_per_epoch} steps per epoch, "
            + (f"{trainer.total_steps} in all" if trainer.total_steps is not None else "as many as fit")
            + (f", at most {config.max_time:g} s" if config.max_time else "")
            + trainer.step_notes
            + (f"; fine-tuning {base.folder.path}" if base is not None else ""),
            flush=True,
        )
        if base is not None and (unseen := corpus.describe_unseen()):
            print(f"note: {unseen}", flush=True)

    if not chief:  # a worker of a cluster: the chief writes everything
        trainer.fit(train_ds, val_ds, eval_every=config.eval_every, max_seconds=config.max_time, verbose=False)
        return {"chief": False, "steps": trainer.step, "train_seconds": float(trainer.seconds.numpy())}

    # Records past the restored step were made after the last checkpoint: they are redone.
    history = [r for r in run.read_history() if r["step"] <= trainer.step] if resumed else []
    writer = tf.summary.create_file_writer(str(run / LOGS))

    def on_eval(record: Record) -> None:
        row = _row(record)
        history.append(row)
        run.write_history(history)
        with writer.as_default(step=record.step):
            tf.summary.scalar("loss_nats/train", record.loss)
            tf.summary.scalar("chars_per_sec", record.samples_per_sec)
            tf.summary.scalar("learning_rate", record.lr)
            if record.val_loss is not None:
                tf.summary.scalar("loss_nats/val", record.val_loss)
                tf.summary.scalar("bits_per_char/val", row["val_bits_per_char"])
        writer.flush()

    trainer.fit(
        train_ds, val_ds, eval_every=config.eval_every, max_seconds=config.max_time, on_eval=on_eval, verbose=verbose
    )
    return _finish(trainer, run, history)


def _finish(trainer, run: RunFolder, history: list[dict]) -> dict:
    """Restore the best checkpoint; write model.keras, metrics.json and curves.png."""
    from seqkit.fileio import atomic_path
    from seqkit.plots import plot_curves

    steps, seconds = trainer.step, float(trainer.seconds.numpy())
    best = trainer.restore("best")
    if not best:  # no validation chose the weights: keep the averages, which a best would hold
        trainer.use_averages()
    best_step = trainer.step if best else steps
    # The best checkpoint carries its own validation loss: no second evaluation pass.
    val_loss = float(trainer.best_val_loss.numpy()) if best else None
    with atomic_path(run / MODEL, suffix=".keras") as tmp:
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
    run.write_metrics(metrics)
    if history:
        plot_curves(
            history,
            run / CURVES,
            [
                ("loss (nats/char)", [("loss", "train"), ("val_loss", "validation")]),
                ("chars/s", [("samples_per_sec", "training")]),
            ],
            title="character model",
            x_key="step",
        )
    return metrics
