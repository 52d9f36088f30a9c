"""The benchmark workloads' shapes and the alternating timer, shared by the scripts here.

Imports neither TensorFlow nor PyTorch, so that each framework's script can run alone
(``sampling_workload`` imports seqkit, and with it TensorFlow, when called).
"""

from __future__ import annotations

import importlib
import statistics
import time

VOCAB, CHAR_STEPS, EMBEDDING = 65, 100, 64  # the character workload: symbols, steps, embedding width
SAMPLING_UNITS = 256  # the sampling workload's model: 2 x LSTM of this width, untrained

# The harness's training workloads (row-MNIST: 28 steps of 28 features, 10 classes).
TRAINING = {
    "mnist 1x128": dict(workload="mnist", layers=1, units=128, dropout=0.0, batch_size=128),
    "mnist 3x256 dropout 0.5": dict(workload="mnist", layers=3, units=256, dropout=0.5, batch_size=100),
    "char 2x256": dict(workload="char", layers=2, units=256, dropout=0.0, batch_size=64),
}


def alternate(variants: dict, units_per_call: float, calls: int, windows: int) -> dict:
    """Median rate (units/s) of each variant over ``windows`` alternating timing windows.

    ``run(calls)`` returns the seconds its calls took, or None to be timed from outside
    (training variants time their steps themselves; see `core_speed.keras_variant`)."""
    for run in variants.values():
        run(1)  # compile and warm up
    rates = {name: [] for name in variants}
    for _ in range(windows):
        for name, run in variants.items():
            start = time.perf_counter()
            seconds = run(calls)
            seconds = time.perf_counter() - start if seconds is None else seconds
            rates[name].append(calls * units_per_call / seconds)
    return {name: {"median": statistics.median(v), "windows": v} for name, v in rates.items()}


def sampling_workload(package: str = "seqkit"):
    """The sampling workload built with ``package`` (``ab.py`` passes a revision's copy of
    seqkit): an untrained 2 x 256 character model on ASCII 32 to 95, and its prime's ids."""
    lm, vocabulary = (importlib.import_module(f"{package}.{m}") for m in ("decode.lm", "text.vocab"))
    model = first_module(package, "text.char_model", "text.model")  # the latter before 2026-12-03
    vocab = vocabulary.Vocabulary.from_points(range(32, 32 + VOCAB - 1))
    char_lm = lm.CharLM(
        model.build_char_model(model.CharModelConfig(vocab.size, EMBEDDING, "lstm", 2, SAMPLING_UNITS)), vocab
    )
    return char_lm, char_lm.encode_prime("TO BE OR NOT TO BE")


def sampling_run(lm, prime, length: int, package: str = "seqkit"):
    """``run(calls)``: ``calls`` samples of ``length`` characters after ``prime`` from ``lm``,
    seeds 0, 1, ..., with ``package``'s ``sample`` and default ``Sampler``."""
    decode = importlib.import_module(f"{package}.decode")
    if not hasattr(decode, "sample"):  # a revision before 2026-12-03
        decode.sample = importlib.import_module(f"{package}.decode.search").sample
        decode.Sampler = importlib.import_module(f"{package}.decode.samplers").Sampler

    def run(calls):
        for seed in range(calls):
            decode.sample(lm, prime, length, decode.Sampler(), seed=seed)

    return run


def first_module(package: str, *names: str):
    """The first of ``package``'s modules ``names`` that exists (layouts of other revisions)."""
    for name in names:
        try:
            return importlib.import_module(f"{package}.{name}")
        except ModuleNotFoundError:
            continue
    raise ModuleNotFoundError(f"none of {names} in {package}")
