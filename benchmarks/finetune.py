"""Fine-tuning against training from scratch on a small text: one play held out of Tiny Shakespeare.

    SEQKIT_DATA_DIR=../shared/data python benchmarks/finetune.py --dir /tmp/finetune

The Winter's Tale (from "ARCHIDAMUS:" to the line before "DUKE VINCENTIO:", about 136,000
characters) is cut out of Tiny Shakespeare. A base model (the defaults) trains on the rest
for ``--base-time`` seconds. Then ``--epochs`` passes over the play (the same steps) train
twice: from the base (``--init-from``) and from scratch, with the same settings and seed;
each run's validation loss is on the play's last 10%. The base's own loss on that tail
(``seqkit score``) is the starting point. Prints a table and writes
``benchmarks/results/finetune-2core.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from seqkit import datasets

RESULTS = Path(__file__).parent / "results" / "finetune-2core.json"
PLAY = ("ARCHIDAMUS:", "DUKE VINCENTIO:")


def seqkit(*args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "seqkit.cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    if result.returncode != 0:
        raise SystemExit(f"seqkit {' '.join(args)} failed: {result.stderr}")
    return result.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dir", type=Path, default=Path("/tmp/finetune"))
    parser.add_argument("--base-time", type=float, default=600.0)
    parser.add_argument("--epochs", type=int, default=3, help="passes over the play, the same for both runs")
    args = parser.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    text = datasets.corpus_path("tinyshakespeare").read_text(encoding="utf-8")
    start, end = text.index(PLAY[0]), text.index(PLAY[1])
    (args.dir / "rest.txt").write_text(text[:start] + text[end:], encoding="utf-8")
    (args.dir / "play.txt").write_text(text[start:end], encoding="utf-8")
    base = args.dir / "base"
    if not (base / "model.keras").is_file():
        seqkit("train-char", str(args.dir / "rest.txt"), "--out", str(base), "--max-time", str(args.base_time))
    play = text[start:end]
    tail = args.dir / "play-tail.txt"
    tail.write_text(play[len(play) - int(round(len(play) * 0.1)) :], encoding="utf-8")
    scored = json.loads(seqkit("score", "--model", str(base), "--file", str(tail), "--json"))
    rows: dict = {"base_on_play_tail": scored}
    for name, extra in (("fine-tuned", ["--init-from", str(base)]), ("scratch", [])):
        out = args.dir / name
        subprocess.run(["rm", "-rf", str(out)], check=True)
        command = ["train-char", str(args.dir / "play.txt"), "--out", str(out), "--epochs", str(args.epochs)]
        seqkit(*command, "--seed", "1", *extra)
        metrics = json.loads((out / "metrics.json").read_text())
        rows[name] = {k: metrics[k] for k in ("val_loss_nats", "best_step", "steps", "train_seconds")}
    RESULTS.write_text(json.dumps({"date": time.strftime("%Y-%m-%d"), **rows}, indent=2) + "\n")
    print(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
