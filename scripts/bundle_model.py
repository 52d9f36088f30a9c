"""Remake the model that ships with seqkit (``seqkit/data/models/shakespeare``).

    SEQKIT_DATA_DIR=../shared/data python scripts/bundle_model.py

Trains with :data:`COMMAND` (a fixed number of epochs and a seed, so the run is the same
on the same kind of CPU), copies the files a decoder needs into the package, and writes
the card: the command, the validation loss, the size, the data's licence, and the loss on
a fixed slice of the held-out text (:data:`CHECK_CHARS` characters from the start of the
validation tail) that ``tests/test_bundled.py`` reproduces.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TARGET = REPO / "data" / "models" / "shakespeare"
COMMAND = ["train-char", "tinyshakespeare", "--epochs", "10", "--seed", "1"]
FILES = ("model.keras", "vocab.json", "config.json", "metrics.json")
CHECK_CHARS = 10_000
LICENCE = (
    "Tiny Shakespeare (Andrej Karpathy's char-rnn data set): Shakespeare's plays, in the public domain; "
    "the model is released under seqkit's licence, Apache-2.0."
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/seqkit-bundle"), help="where the run trains")
    parser.add_argument("--card-only", action="store_true", help="write the card of the run already in --work")
    args = parser.parse_args()
    run = args.work / "run"
    if not args.card_only:
        shutil.rmtree(run, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "seqkit.cli", *COMMAND, "--out", str(run)], check=True)

    import os

    from seqkit import datasets
    from seqkit.decode import CharLM, score
    from seqkit.machine import cpu_has_bf16

    shutil.rmtree(TARGET, ignore_errors=True)
    TARGET.mkdir(parents=True)
    for name in FILES:
        shutil.copy2(run / name, TARGET / name)
    metrics = json.loads((run / "metrics.json").read_text())
    config = json.loads((run / "config.json").read_text())["config"]
    text = datasets.corpus_path("tinyshakespeare").read_text(encoding="utf-8")
    start = len(text) - int(round(len(text) * config["val_fraction"]))
    checked = score(CharLM.load(TARGET), text[start : start + CHECK_CHARS])
    model = config["model"]
    card = {
        "name": TARGET.name,
        "description": (
            f"Tiny Shakespeare, {model['layers']} x {model['cell'].upper()} {model['units']}, "
            f"{metrics['parameters']:,} parameters"
        ),
        "command": "seqkit " + " ".join(COMMAND),
        "data": LICENCE,
        "val_loss_nats": metrics["val_loss_nats"],
        "steps": metrics["steps"],
        "trained_on": (
            f"{os.cpu_count()} CPU cores in {metrics['train_seconds']:.0f} s; bf16 dot products "
            f"{'used' if cpu_has_bf16() else 'absent'} (a CPU "
            f"{'without' if cpu_has_bf16() else 'with'} them rounds otherwise, so a remake there differs slightly)"
        ),
        "parameters": metrics["parameters"],
        "size_bytes": sum((TARGET / name).stat().st_size for name in FILES),
        "check": {
            "corpus": "tinyshakespeare",
            "start": start,
            "characters": CHECK_CHARS,
            "nats_per_char": checked["nats_per_char"],
        },
    }
    (TARGET / "card.json").write_text(json.dumps(card, indent=2) + "\n")
    (TARGET / "CARD.md").write_text(
        f"# {card['name']}: the model that ships with seqkit\n\n"
        f"{card['description']}; {card['size_bytes'] / 1e6:.1f} MB of float32 weights.\n\n"
        f"- Made by: `{card['command']}` ({card['steps']:,} steps), then `scripts/bundle_model.py`, which "
        "copies the run's files here and writes this card.\n"
        f"- Trained on {card['trained_on']}.\n"
        f"- Validation loss: {card['val_loss_nats']:.4f} nats/char on the last 10% of Tiny Shakespeare "
        f"(best checkpoint); {checked['nats_per_char']:.6f} on its first {CHECK_CHARS:,} characters, which "
        "`tests/test_bundled.py` reproduces.\n"
        f"- Data and licence: {LICENCE}\n"
        "- Used by `seqkit generate`, `score`, `export` and `serve` when `--model` is left out; "
        "`seqkit models` lists it.\n"
    )
    print(json.dumps(card, indent=2))


if __name__ == "__main__":
    main()
