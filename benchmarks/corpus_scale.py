"""Memory and encoding speed of `seqkit train-char` on a corpus far larger than Tiny Shakespeare.

    SEQKIT_DATA_DIR=../shared/data python benchmarks/corpus_scale.py --size-gb 2 --dir /tmp/corpus-scale

Generates a corpus of ``--size-gb`` (once; kept in ``--dir``): Tiny Shakespeare's
paragraphs in a new random order for each copy, a few of them with accented letters, so
the text varies and its character counts are skewed. Then runs the same short
``train-char`` (the default model, ``--max-time``) on Tiny Shakespeare and on that corpus,
each in its own process from an empty run folder, sampling the process's memory from
``/proc`` every 0.1 s: anonymous memory (RssAnon: what the process allocated, without the
memory-mapped corpus) and all resident memory (VmRSS: RssAnon plus file pages such as the
mapped corpus), at their peaks while the corpus is encoded and while it trains. Encoding
throughput is the run's own "Encoded ... MB ... in N s" line. Prints a table and writes
``benchmarks/results/corpus-scale-2core.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

from seqkit import datasets

ACCENTS = str.maketrans("aeiouAEIOU", "\u00e0\u00e9\u00ee\u00f6\u00fc\u00c0\u00c9\u00ce\u00d6\u00dc")
RESULTS = Path(__file__).parent / "results" / "corpus-scale-2core.json"


def generate(path: Path, size: int, seed: int = 0) -> None:
    """Write ``size`` bytes (about) of Tiny Shakespeare's paragraphs, reshuffled per copy."""
    if path.is_file() and abs(path.stat().st_size - size) < 2e6:
        return
    text = datasets.corpus_path("tinyshakespeare").read_text(encoding="utf-8")
    paragraphs = text.split("\n\n")
    rng = random.Random(seed)
    written = 0
    with open(path, "w", encoding="utf-8") as f:
        while written < size:
            rng.shuffle(paragraphs)
            copy = "\n\n".join(p.translate(ACCENTS) if rng.random() < 0.02 else p for p in paragraphs) + "\n\n"
            written += f.write(copy)  # characters; accented ones take a byte more
            print(f"\rgenerating {path}: {written / 1e9:.2f} GB", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)


def _memory(pid: int) -> dict[str, int] | None:
    """RssAnon, RssFile and VmRSS of a process, in kB."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    return {k: int(v) for k, v in re.findall(r"^(RssAnon|RssFile|VmRSS):\s+(\d+) kB", status, re.M)}


def measure(corpus: str, out: Path, seconds: float) -> dict:
    """One train-char run: peak memory per phase, the encoding line's figures."""
    args = [sys.executable, "-m", "seqkit.cli", "train-char", corpus, "--out", str(out), "--max-time", str(seconds)]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    phase = ["encoding"]
    peaks: dict[str, dict[str, int]] = {"encoding": {}, "training": {}}

    def sample() -> None:
        while process.poll() is None:
            now = _memory(process.pid)
            if now:
                peak = peaks[phase[0]]
                for key, value in now.items():
                    peak[key] = max(peak.get(key, 0), value)
            time.sleep(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    lines = []
    for line in process.stdout:
        lines.append(line)
        if line.startswith(("Training", "Resuming")):
            phase[0] = "training"
    process.wait()
    sampler.join()
    if process.returncode != 0:
        raise SystemExit(f"train-char failed on {corpus}: {process.stderr.read()}")
    encoded = next(line for line in lines if line.startswith("Encoded"))
    megabytes, seconds_taken = (float(x.replace(",", "")) for x in re.findall(r"([\d,.]+) (?:MB|s) ", encoded)[:2])
    done = next(line for line in lines if line.startswith("Done"))
    return {
        "corpus": corpus,
        "corpus_mb": megabytes,
        "encoding_seconds": seconds_taken,
        "encoding_mb_per_s": megabytes / seconds_taken,
        "peaks_mib": {phase: {k: v / 1024 for k, v in peak.items()} for phase, peak in peaks.items()},
        "done": done.strip(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size-gb", type=float, default=2.0)
    parser.add_argument("--dir", type=Path, default=Path("/tmp/corpus-scale"))
    parser.add_argument("--max-time", type=float, default=60.0, help="training seconds of each run")
    args = parser.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    big = args.dir / f"generated-{args.size_gb:g}gb.txt"
    generate(big, int(args.size_gb * 1e9))
    rows = []
    for corpus in (str(datasets.corpus_path("tinyshakespeare")), str(big)):
        out = args.dir / f"run-{Path(corpus).stem}"
        subprocess.run(["rm", "-rf", str(out)], check=True)
        rows.append(measure(corpus, out, args.max_time))
        print(json.dumps(rows[-1]), file=sys.stderr)
    RESULTS.write_text(json.dumps({"date": time.strftime("%Y-%m-%d"), "runs": rows}, indent=2) + "\n")
    print("| corpus | encoding | RssAnon peak, encoding | RssAnon peak, training | VmRSS peak, training |")
    print("| --- | --- | --- | --- | --- |")
    for row in rows:
        enc, train = row["peaks_mib"]["encoding"], row["peaks_mib"]["training"]
        print(
            f"| {row['corpus_mb']:,.0f} MB | {row['encoding_mb_per_s']:,.0f} MB/s | {enc['RssAnon']:,.0f} MiB | "
            f"{train['RssAnon']:,.0f} MiB | {train['VmRSS']:,.0f} MiB |"
        )
    extra = rows[1]["peaks_mib"]["training"]["RssAnon"] - rows[0]["peaks_mib"]["training"]["RssAnon"]
    print(f"\nRssAnon while training, large corpus over small: {extra:+,.0f} MiB")


if __name__ == "__main__":
    main()
