"""`seqkit bench mnist`: train and evaluate the row-sequence classifier, compare with a baseline.

Accuracy regressions are judged directly: the run fails when test accuracy falls more than
the tolerance below the baseline's. Speed is judged as a ratio that cancels out the
machine: (samples/s now / baseline samples/s) divided by (matmul GFLOP/s now / baseline
matmul GFLOP/s), both measured in their own runs; the run fails when that normalised
ratio falls below ``1 - speed_tolerance``.
"""

from __future__ import annotations

import datetime
import os
import platform
import sys
from dataclasses import dataclass, field
from pathlib import Path

from seqkit.config import override
from seqkit.core.trainer import TrainConfig
from seqkit.errors import SeqkitError
from seqkit.fileio import with_defaults
from seqkit.machine import matmul_gflops, peak_memory_mib
from seqkit.mnist.classifier import ClassifierConfig


@dataclass
class BenchConfig:
    """One benchmark run: model shape, optimizer, batch, data subset and tolerances."""

    profile: str
    model: ClassifierConfig
    train: TrainConfig
    batch_size: int = 128
    train_subset: int | None = None  # first N training images; None for all 60,000
    seed: int = 1
    accuracy_tolerance: float = 0.005
    speed_tolerance: float = 0.5

    def comparable(self) -> dict:
        """The settings a baseline must share to be compared with (tolerances excluded)."""
        return {
            "model": self.model.to_dict(),
            "train": self.train.to_dict(),
            "batch_size": self.batch_size,
            "train_subset": self.train_subset,
            "seed": self.seed,
        }


PROFILES: dict[str, BenchConfig] = {
    "quick": BenchConfig(
        profile="quick",
        model=ClassifierConfig(cell="lstm", layers=1, units=128),
        train=TrainConfig(epochs=1, lr=5e-3, schedule="cosine", warmup_steps=20, clip=5.0),
        batch_size=64,
        train_subset=45_000,
        accuracy_tolerance=0.01,
    ),
    "default": BenchConfig(
        profile="default",
        model=ClassifierConfig(cell="lstm", layers=2, units=256, dropout=0.3),
        train=TrainConfig(epochs=11, lr=2e-3, schedule="cosine", warmup_steps=100, clip=5.0),
        batch_size=128,
        accuracy_tolerance=0.003,
    ),
}


def profile_config(profile: str, **overrides) -> BenchConfig:
    """A profile's configuration with settings replaced by name (see
    :func:`seqkit.config.override`; None values are ignored)."""
    if profile not in PROFILES:
        raise SeqkitError(f"Unknown profile {profile!r}: choose one of {', '.join(PROFILES)}.")
    config = override(PROFILES[profile], **overrides)
    if config.batch_size < 1 or config.train.epochs < 1:
        raise SeqkitError("`batch_size` and `epochs` must be at least 1.")
    return config


def run(
    config: BenchConfig,
    data_dir: str | None = None,
    verbose: bool = True,
    strategy: str = "auto",
    worker_timeout: float = 300.0,
) -> dict:
    """Train and evaluate; return the figures (the `--json` document). ``strategy`` as in
    :func:`seqkit.distribute.make_strategy`; ``chief`` in the result says whether this
    process is the one that should write outputs."""
    from seqkit.distribute import distributed

    with distributed(strategy, worker_timeout) as distribution:  # before any other TF operation
        return _run(config, data_dir, verbose, distribution)


def _run(config: BenchConfig, data_dir: str | None, verbose: bool, strategy) -> dict:
    import keras
    import tensorflow as tf

    from seqkit.core.trainer import Trainer
    from seqkit.distribute import is_chief
    from seqkit.mnist.classifier import build_classifier
    from seqkit.mnist.data import load_mnist, row_sequences

    verbose = verbose and is_chief(strategy)
    data = load_mnist(data_dir)
    images, labels = data.train_images, data.train_labels
    if config.train_subset:
        images, labels = images[: config.train_subset], labels[: config.train_subset]
    steps_per_epoch = len(images) // config.batch_size
    if steps_per_epoch < 1:
        raise SeqkitError(f"`batch_size` {config.batch_size} is larger than the training set.")

    gflops = matmul_gflops()
    keras.utils.set_random_seed(config.seed)
    trainer = Trainer(
        lambda: build_classifier(config.model, seed=config.seed),
        config.train,
        steps_per_epoch,
        strategy=strategy,
        unit="images",
        eval_name="test",
    )
    train_ds = row_sequences(images, labels, config.batch_size, train=True, seed=config.seed)
    test_ds = row_sequences(data.test_images, data.test_labels, 1000, train=False)
    if verbose:
        print(
            f"MNIST bench, profile {config.profile}: {config.model.layers} x {config.model.cell} "
            f"{config.model.units}, {len(images):,} training images, {config.train.epochs} "
            f"epoch(s) of {steps_per_epoch} steps, batch {config.batch_size}{trainer.step_notes}",
            flush=True,
        )
    history = trainer.fit(train_ds, evaluation=test_ds, verbose=verbose)
    train_seconds = sum(r.seconds for r in history)
    samples = sum(r.samples for r in history)
    final = history[-1]
    return {
        "test_accuracy": final.val_accuracy,
        "test_loss": final.val_loss,
        "train_seconds": train_seconds,
        "train_samples_per_sec": samples / train_seconds,
        "epochs": config.train.epochs,
        "parameters": int(trainer.model.count_params()),
        "peak_memory_mib": peak_memory_mib(),
        "machine_gflops": gflops,
        "profile": config.profile,
        "chief": trainer.chief,
        "replicas": strategy.num_replicas_in_sync,
        "config": config.comparable(),
        "tolerance": {"accuracy": config.accuracy_tolerance, "speed": config.speed_tolerance},
        "history": [r.to_dict() for r in history],
        "command": " ".join(["seqkit", *sys.argv[1:]]),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.system()}",
        "versions": {
            "python": platform.python_version(),
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
        },
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


@dataclass
class Comparison:
    """How a result stands against a baseline; ``failures`` name each regressed figure."""

    baseline_accuracy: float
    accuracy_delta: float
    speed_ratio: float
    normalised_speed_ratio: float
    failures: list[str] = field(default_factory=list)


def default_baseline(profile: str) -> Path | None:
    """The committed baseline ``benchmarks/mnist-<profile>.json`` of a checkout, if present."""
    name = f"mnist-{profile}.json"
    for root in (Path.cwd(), Path(__file__).resolve().parents[2]):
        if (root / "benchmarks" / name).is_file():
            return root / "benchmarks" / name
    return None


NOT_A_BASELINE = "The baseline lacks seqkit bench figures: make one with --json."


def baseline_settings(baseline: dict) -> dict:
    """A baseline's settings, with the default of each model and optimizer setting added
    since it was made, so that a new option (off by default) keeps old baselines usable."""
    settings = baseline.get("config")
    if not isinstance(settings, dict):
        raise SeqkitError(NOT_A_BASELINE)
    filled = dict(settings)
    for key, kind in (("model", ClassifierConfig), ("train", TrainConfig)):
        if isinstance(settings.get(key), dict):
            filled[key] = with_defaults(settings[key], kind)
    return filled


def compare(result: dict, baseline: dict, config: BenchConfig) -> Comparison:
    """Compare a run with a baseline made with the same settings."""
    base_config = baseline_settings(baseline)
    try:
        base_acc = float(baseline["test_accuracy"])
        base_speed, base_gflops = float(baseline["train_samples_per_sec"]), float(baseline["machine_gflops"])
    except (KeyError, TypeError, ValueError):
        raise SeqkitError(NOT_A_BASELINE) from None
    if base_config != result["config"]:
        differ = sorted(
            k for k in set(base_config) | set(result["config"]) if base_config.get(k) != result["config"].get(k)
        )
        raise SeqkitError(
            f"The baseline was made with other settings ({', '.join(differ)} differ): run with "
            "the baseline's options, or without a baseline (`no_baseline`)."
        )
    speed_ratio = result["train_samples_per_sec"] / base_speed
    normalised = speed_ratio / (result["machine_gflops"] / base_gflops)
    cmp = Comparison(base_acc, result["test_accuracy"] - base_acc, speed_ratio, normalised)
    if cmp.accuracy_delta < -config.accuracy_tolerance:
        cmp.failures.append(
            f"test_accuracy {result['test_accuracy']:.4f} is {-cmp.accuracy_delta:.4f} below the "
            f"baseline's {base_acc:.4f} (tolerance {config.accuracy_tolerance})"
        )
    if normalised < 1 - config.speed_tolerance:
        cmp.failures.append(
            f"train_samples_per_sec is {normalised:.2f}x the baseline's after adjusting for this "
            f"machine's matmul speed (tolerance: at least {1 - config.speed_tolerance:.2f}x)"
        )
    return cmp


def format_table(result: dict, cmp: Comparison | None) -> str:
    """The results table printed after a run."""
    rows = [
        ("test accuracy", f"{result['test_accuracy']:.4f}"),
        ("test loss", f"{result['test_loss']:.4f}"),
        ("training seconds", f"{result['train_seconds']:.1f}"),
        ("training samples/s", f"{result['train_samples_per_sec']:,.0f}"),
        ("parameters", f"{result['parameters']:,}"),
        ("peak memory", f"{result['peak_memory_mib']:,.0f} MiB"),
        ("matmul GFLOP/s", f"{result['machine_gflops']:.1f}"),
    ]
    if cmp is not None:
        rows += [
            ("baseline accuracy", f"{cmp.baseline_accuracy:.4f} ({cmp.accuracy_delta:+.4f})"),
            ("speed vs baseline", f"{cmp.speed_ratio:.2f}x ({cmp.normalised_speed_ratio:.2f}x machine-adjusted)"),
        ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"  {k:<{width}}  {v}" for k, v in rows)


def plot(result: dict, path: str | os.PathLike) -> None:
    """Per-epoch training and test accuracy and loss as a PNG."""
    from seqkit.plots import plot_curves

    plot_curves(
        result["history"],
        path,
        [
            ("accuracy", [("accuracy", "train"), ("val_accuracy", "test")]),
            ("loss (nats)", [("loss", "train"), ("val_loss", "test")]),
        ],
        title=f"row-sequence MNIST, profile {result['profile']}",
    )
