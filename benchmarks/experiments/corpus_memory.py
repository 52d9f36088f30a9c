"""Peak memory of `seqkit train-char` as the corpus grows.

Builds corpora of the given sizes by repeating Tiny Shakespeare, runs a short training on
each in its own process (same model and steps), and reports each process's peak resident
memory and its growth over the smallest corpus's run.

    SEQKIT_DATA_DIR=../shared/data python benchmarks/experiments/corpus_memory.py --sizes-mb 1 100
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from seqkit import datasets

SHORT_RUN = ["--max-time", "15", "--eval-every", "20", "--val-fraction", "0.001", "--fresh"]


def peak_rss_mib(corpus: Path, out: Path) -> float:
    """Run train-char in a child process; return that child's peak RSS in MiB."""
    code = (
        "import resource, sys; from seqkit.cli import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print('PEAK', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)"
    )
    args = [sys.executable, "-c", code, "train-char", str(corpus), "--out", str(out), *SHORT_RUN]
    result = subprocess.run(args, capture_output=True, text=True, check=True)
    return float(result.stdout.rsplit("PEAK", 1)[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes-mb", type=float, nargs="+", default=[1, 100])
    args = parser.parse_args()
    text = datasets.load_bytes("tinyshakespeare", "input.txt")
    with tempfile.TemporaryDirectory() as tmp:
        rows = []
        for size in sorted(args.sizes_mb):
            corpus = Path(tmp) / f"corpus-{size:g}mb.txt"
            repeats = max(1, round(size * 1e6 / len(text)))
            with open(corpus, "wb") as f:
                for _ in range(repeats):
                    f.write(text)
            mib = os.path.getsize(corpus) / 2**20
            rows.append((mib, peak_rss_mib(corpus, Path(tmp) / "out")))
            corpus.unlink()
    print("| corpus | peak RSS | growth over the smallest | growth / corpus size |\n| --- | --- | --- | --- |")
    for mib, peak in rows:
        growth = peak - rows[0][1]
        print(f"| {mib:,.0f} MiB | {peak:,.0f} MiB | {growth:,.0f} MiB | {growth / mib:.1f}x |")


if __name__ == "__main__":
    main()
