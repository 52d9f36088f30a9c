"""A/B of the training step (or inference, or sampling): the working tree's seqkit against
another git revision's, in one process.

    python benchmarks/experiments/ab.py --rev HEAD --workload mnist --layers 1 --units 128 --steps 30
    python benchmarks/experiments/ab.py --rev HEAD --workload char --layers 2 --units 256 \
        --batch-size 64 --steps 6 --windows 4
    python benchmarks/experiments/ab.py --rev HEAD --sample 300 --steps 5 --windows 9

Two processes on this 2-core machine differ by more than most levers, so a lever is judged
here: the revision's ``seqkit`` is extracted with ``git archive`` into a temporary folder and
renamed ``seqkit_<rev>`` (imports and Keras registrations included), both are built on the
same random data and timed in alternating windows, with plain Keras ``fit`` as a third
column. ``--infer`` times the evaluation step (inference) instead of the training step;
``--sample N`` times sampling N characters from one stream of the harness's 2 x 256
character model (``seqkit.decode.search.sample``, prime included).
Both sides take the API's defaults (native kernels where they build), the flags turn options
on for the working tree; a revision whose C++ kernels differ from the tree's cannot share
the process: ``--processes N`` then alternates N whole runs of each side, every run timing
its seqkit against a reference in its own process (PyTorch where installed, else Keras
``fit``; with ``--infer``, seqkit's XLA evaluation step, which the native kernels leave
alone), and compares the ratios as well as the rates:

    python benchmarks/experiments/ab.py --rev HEAD --processes 4 --workload mnist --layers 1 --units 128 --windows 9
"""

from __future__ import annotations

import argparse
import importlib
import io
import json
import os
import re
import statistics
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the shared workloads
from core_speed import alternate, keras_variant, predictions_per_example, seqkit_variant  # noqa: E402
from workloads import sampling_run, sampling_workload  # noqa: E402


def extract(rev: str) -> Path:
    """A folder holding ``seqkit`` as it is at ``rev``."""
    root = Path(tempfile.mkdtemp(prefix="seqkit-ab-"))
    archive = subprocess.run(
        ["git", "archive", rev, "seqkit"], capture_output=True, check=True, cwd=Path(__file__).resolve().parents[2]
    ).stdout
    tarfile.open(fileobj=io.BytesIO(archive)).extractall(root, filter="data")
    return root


def import_revision(rev: str):
    """``seqkit`` as it is at ``rev``, imported under another name beside the working tree's."""
    name = "seqkit_" + re.sub(r"\W", "_", rev)
    root = extract(rev)
    (root / "seqkit").rename(root / name)
    # TensorFlow refuses a second library that registers the same ops, so a revision with
    # C++ kernels uses the working tree's, and only where they are the same.
    kernel = Path("core/lstm_kernel.cc")
    theirs, ours = root / name / kernel, Path(__file__).resolve().parents[2] / "seqkit" / kernel
    if theirs.is_file() and theirs.read_bytes() != ours.read_bytes():
        sys.exit(
            f"ab.py: {rev}'s {kernel} differs from the working tree's, and one process cannot load "
            "both: compare them by alternating whole runs (--processes N)."
        )
    for source in (root / name).rglob("*.py"):
        text = re.sub(r"\b(from|import) seqkit\b", rf"\1 {name}", source.read_text())
        source.write_text(text.replace('package="seqkit"', f'package="{name}"'))
    if theirs.is_file():  # however the revision imports its native module, it gets the tree's
        sys.modules[f"{name}.core.native"] = importlib.import_module("seqkit.core.native")
    sys.path.insert(0, str(root))
    return importlib.import_module(name)


def sampling_variant(package: str, length: int):
    """``run(calls)``: ``calls`` samples of ``length`` characters with ``package``'s seqkit."""
    return sampling_run(*sampling_workload(package), length, package)


def one_side(args) -> None:
    """A ``--processes`` child: this process's seqkit and the reference, alternating; one
    JSON line of their medians."""
    per_call = args.batch_size * predictions_per_example(args)
    variants = {"seqkit": seqkit_variant(args, infer=args.infer)}
    if args.infer:
        variants["reference"] = seqkit_variant(args, infer=True, native_kernels=False)
    else:
        try:
            import torch_reference

            variants["reference"] = torch_reference.training(args, "cpu")
        except ImportError:
            variants["reference"] = keras_variant(args)
    figures = alternate(variants, per_call, args.steps, args.windows)
    print(json.dumps({name: figure["median"] for name, figure in figures.items()}))


def by_processes(args) -> None:
    """``--processes``: whole runs of the working tree and of ``args.rev``, alternating."""
    child = [sys.executable, __file__, "--one-side", *sys.argv[1:]]
    sides = {"working tree": None, args.rev: str(extract(args.rev))}
    runs = {side: [] for side in sides}
    for _ in range(args.processes):
        for side, path in sides.items():
            env = dict(os.environ, PYTHONPATH=path) if path else os.environ
            out = subprocess.run(child, capture_output=True, text=True, env=env, check=True).stdout
            runs[side].append(json.loads(out.strip().splitlines()[-1]))
            rate, reference = runs[side][-1]["seqkit"], runs[side][-1]["reference"]
            print(f"{side}: {rate:,.0f}/s, {rate / reference:.3f}x the reference", flush=True)
    for side, figures in runs.items():
        rate = statistics.median(f["seqkit"] for f in figures)
        ratio = statistics.median(f["seqkit"] / f["reference"] for f in figures)
        print(f"median, {side}: {rate:,.0f}/s, {ratio:.3f}x the reference")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rev", default="HEAD", help="git revision to compare the working tree with")
    parser.add_argument("--workload", choices=["mnist", "char"], default="mnist")
    parser.add_argument("--layers", type=int, default=1)
    parser.add_argument("--units", type=int, default=128)
    parser.add_argument("--dropout", type=float, default=0.0)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=20, help="steps per timing window")
    parser.add_argument("--windows", type=int, default=5)
    parser.add_argument("--infer", action="store_true", help="time the evaluation step")
    parser.add_argument("--sample", type=int, metavar="N", help="time sampling N characters instead")
    parser.add_argument(
        "--bf16-gradients", action="store_true", help="the working tree's step with bf16 weight gradients"
    )
    parser.add_argument(
        "--native-kernels", action="store_true", help="the working tree's step with native LSTM kernels"
    )
    parser.add_argument(
        "--processes",
        type=int,
        metavar="N",
        help="alternate N whole runs of each side (for a revision with other C++ kernels)",
    )
    parser.add_argument("--one-side", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one_side:
        return one_side(args)
    if args.processes:
        if args.sample:
            parser.error("--processes times training or --infer, not --sample")
        return by_processes(args)

    # Only the options that are on: left off, the tree takes the API defaults, as the revision does.
    options = {name: True for name in ("bf16_gradients", "native_kernels") if getattr(args, name)}
    if args.sample:
        variants = {
            "working tree": sampling_variant("seqkit", args.sample),
            args.rev: sampling_variant(import_revision(args.rev).__name__, args.sample),
        }
        figures = alternate(variants, args.sample, args.steps, args.windows)
    else:
        variants = {
            "working tree": seqkit_variant(args, infer=args.infer, **options),
            args.rev: seqkit_variant(args, package=import_revision(args.rev).__name__, infer=args.infer),
        }
        if not args.infer:
            variants["keras fit"] = keras_variant(args)
        figures = alternate(variants, args.batch_size * predictions_per_example(args), args.steps, args.windows)
    reference = figures["working tree"]["median"]
    for name, figure in figures.items():
        print(f"{name}: {figure['median']:,.0f}/s ({figure['median'] / reference:.2f}x)")


if __name__ == "__main__":
    main()
