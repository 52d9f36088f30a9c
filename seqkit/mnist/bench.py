"""`seqkit bench mnist`: train and evaluate the row-sequence classifier, compare with a baseline.

Baselines ship with the package (``seqkit/data/baselines``), one per profile and code path
(which implementation ran the recurrent layers, which bf16 options, which device): a run
compares with the baseline of its own path, chosen before training starts. Accuracy is
judged directly: the run fails when test accuracy falls more than the tolerance below the
baseline's. Speed is judged only against a baseline of the same code path, as a ratio that
cancels out the machine: (samples/s now / baseline samples/s) divided by (matmul GFLOP/s
now / baseline matmul GFLOP/s), both measured in their own runs, the first (compiling)
step left out of the rate. It is reported, and fails the run only below
``1 - speed_tolerance`` when a tolerance is given: on a shared 2-core machine the ratio of
unchanged code spreads wider than a lost fast path would move it (benchmarks/README.md),
so the code-path check is the gate for a lost fast path. A run whose path no baseline
shares compares accuracy only.
"""

from __future__ import annotations

import datetime
import os
import platform
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from seqkit.config import override
from seqkit.core.dispatch import path_name
from seqkit.core.trainer import TrainConfig
from seqkit.errors import SeqkitError
from seqkit.fileio import read_json, with_defaults
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
    speed_tolerance: float | None = None  # None: speed is reported, never failed on

    def comparable(self) -> dict:
        """The settings a baseline must share to be compared with: not the tolerances, nor
        the kernel settings, whose outcome the run's code path records."""
        return {
            "model": self.model.to_dict(),
            "train": _without_kernels(self.train.to_dict()),
            "batch_size": self.batch_size,
            "train_subset": self.train_subset,
            "seed": self.seed,
        }


KERNEL_SETTINGS = ("cudnn", "native_kernels", "bf16_gradients", "bf16_recurrence")


def _without_kernels(train: dict) -> dict:
    return {k: v for k, v in train.items() if k not in KERNEL_SETTINGS}


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
    on_start: Callable[[dict], None] | None = None,
) -> dict:
    """Train and evaluate; return the figures (the `--json` document). ``strategy`` as in
    :func:`seqkit.distribute.make_strategy`; ``chief`` in the result says whether this
    process is the one that should write outputs. ``on_start(code_path)`` is called once
    the kernels are chosen, before the first step (to choose a baseline, or refuse one)."""
    from seqkit.distribute import distributed

    with distributed(strategy, worker_timeout) as distribution:  # before any other TF operation
        return _run(config, data_dir, verbose, distribution, on_start)


def _run(config: BenchConfig, data_dir: str | None, verbose: bool, strategy, on_start=None) -> dict:
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

    keras.utils.set_random_seed(config.seed)
    trainer = Trainer(
        lambda: build_classifier(config.model, seed=config.seed),
        config.train,
        steps_per_epoch,
        strategy=strategy,
        unit="images",
        eval_name="test",
    )
    if on_start is not None:
        on_start(trainer.code_path)
    gflops_before = matmul_gflops()
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
    gflops = (gflops_before * matmul_gflops()) ** 0.5  # the machine before and after the run
    train_seconds = sum(r.seconds for r in history)
    samples = sum(r.samples for r in history)
    first_seconds, first_samples = trainer.first_step or (0.0, 0.0)
    timed = train_seconds - first_seconds
    final = history[-1]
    return {
        "test_accuracy": final.val_accuracy,
        "test_loss": final.val_loss,
        "train_seconds": train_seconds,
        "first_step_seconds": first_seconds,
        "train_samples_per_sec": (samples - first_samples) / timed if timed > 0 else samples / train_seconds,
        "code_path": trainer.code_path,
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
    """How a result stands against a baseline; ``failures`` name each regressed figure.
    ``speed`` is False where the baseline ran another code path (speed not judged)."""

    baseline_accuracy: float
    accuracy_delta: float
    speed_ratio: float
    normalised_speed_ratio: float
    speed: bool = True
    failures: list[str] = field(default_factory=list)


@dataclass
class Baseline:
    """The baseline a run compares with: its file, its figures, and whether speed is
    compared too (the same code path)."""

    path: Path
    figures: dict
    speed: bool = True


NOT_A_BASELINE = "The baseline lacks seqkit bench figures: make one with `json`."


def shipped_baselines(profile: str) -> list[Path]:
    """The baselines of ``profile`` that ship with the package, one per code path."""
    folder = resources.files("seqkit.data") / "baselines"
    if not folder.is_dir():
        return []
    return sorted(Path(str(p)) for p in folder.iterdir() if p.name.startswith(f"mnist-{profile}-"))


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
    if isinstance(filled.get("train"), dict):
        filled["train"] = _without_kernels(filled["train"])
    return filled


def settings_differ(baseline: dict, config: BenchConfig) -> list[str]:
    """The parts of the settings in which ``baseline`` differs from ``config``."""
    base, ours = baseline_settings(baseline), config.comparable()
    return sorted(k for k in set(base) | set(ours) if base.get(k) != ours.get(k))


def check_baseline(baseline: dict, config: BenchConfig) -> None:
    """Refuse, before any training, a baseline made with other settings or without figures."""
    differ = settings_differ(baseline, config)
    if differ:
        raise SeqkitError(
            f"The baseline was made with other settings ({', '.join(differ)} differ): run with "
            "the baseline's options, or without a baseline (`no_baseline`)."
        )
    for key in ("test_accuracy", "train_samples_per_sec", "machine_gflops"):
        if not isinstance(baseline.get(key), (int, float)):
            raise SeqkitError(NOT_A_BASELINE)


def choose_baseline(config: BenchConfig, path: dict, explicit: str | None = None) -> tuple[Baseline | None, str]:
    """The baseline a run on code ``path`` compares with, and a line that says which (or why
    none). An ``explicit`` baseline of other settings or another path is refused."""
    if explicit is not None:
        figures = read_json(explicit, "baseline")
        check_baseline(figures, config)
        theirs = figures.get("code_path")
        if theirs != path:
            raise SeqkitError(
                f"The baseline {explicit} ran {path_name(theirs) if theirs else 'an unrecorded code path'} and this "
                f"run {path_name(path)}: their speeds do not compare; make a baseline of this path with `json`."
            )
        return Baseline(Path(explicit), figures), f"Comparing with {explicit} ({path_name(path)})."
    same = []
    for candidate in shipped_baselines(config.profile):
        figures = read_json(candidate, "shipped baseline")
        if not settings_differ(figures, config):
            same.append(Baseline(candidate, figures))
    if not same:
        return None, f"No baseline found: none of profile {config.profile}'s was made with these options."
    for baseline in same:
        if baseline.figures.get("code_path") == path:
            return baseline, f"Comparing with the {config.profile} baseline of this code path ({path_name(path)})."
    paths = "; ".join(path_name(b.figures.get("code_path", {})) for b in same)
    accuracy_only = Baseline(same[0].path, same[0].figures, speed=False)
    return accuracy_only, (
        f"No baseline found for this code path ({path_name(path)}; shipped: {paths}): comparing accuracy only."
    )


def compare(result: dict, baseline: Baseline | dict, config: BenchConfig) -> Comparison:
    """Compare a run with a baseline made with the same settings (speed only where the
    baseline is of the same code path)."""
    if isinstance(baseline, dict):
        baseline = Baseline(Path("baseline"), baseline, speed=baseline.get("code_path") == result.get("code_path"))
    figures = baseline.figures
    check_baseline(figures, config)
    base_acc = float(figures["test_accuracy"])
    speed_ratio = result["train_samples_per_sec"] / float(figures["train_samples_per_sec"])
    normalised = speed_ratio / (result["machine_gflops"] / float(figures["machine_gflops"]))
    cmp = Comparison(base_acc, result["test_accuracy"] - base_acc, speed_ratio, normalised, baseline.speed)
    if cmp.accuracy_delta < -config.accuracy_tolerance:
        cmp.failures.append(
            f"test_accuracy {result['test_accuracy']:.4f} is {-cmp.accuracy_delta:.4f} below the "
            f"baseline's {base_acc:.4f} (tolerance {config.accuracy_tolerance})"
        )
    tolerance = config.speed_tolerance
    if baseline.speed and tolerance is not None and normalised < 1 - tolerance:
        cmp.failures.append(
            f"train_samples_per_sec is {normalised:.2f}x the baseline's after adjusting for this "
            f"machine's matmul speed (tolerance: at least {1 - tolerance:.2f}x)"
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
        ("code path", path_name(result["code_path"]) if "code_path" in result else "not recorded"),
    ]
    if cmp is not None:
        speed = f"{cmp.speed_ratio:.2f}x ({cmp.normalised_speed_ratio:.2f}x machine-adjusted)"
        rows += [
            ("baseline accuracy", f"{cmp.baseline_accuracy:.4f} ({cmp.accuracy_delta:+.4f})"),
            ("speed vs baseline", speed if cmp.speed else f"not compared (another code path; {speed})"),
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
