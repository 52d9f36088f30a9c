"""The step model on a device runtime: LiteRT's interpreter beside seqkit's own sampler.

    SEQKIT_DATA_DIR=../shared/data python benchmarks/edge.py --model seqkit/../data/models/shakespeare

Exports ``--model`` (default: the bundled 2 x LSTM 256) as LiteRT with each quantization
and as ONNX, each measured on the first 5,000 characters of Tiny Shakespeare's held-out
tail (the prediction change against float32, from the export's own ``model.json``), and
reports each file's size. Then samples one stream of ``--length`` characters, in
alternating rounds: with the LiteRT interpreter (a Python loop of steps, drawing with
NumPy: what an app's loop does) and with seqkit's own sampler (``seqkit.decode.sample``),
both in this process, so their ratio is measured under the same load. Writes
``benchmarks/results/edge-2core.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from seqkit import datasets
from seqkit.decode import CharLM, Sampler, sample
from seqkit.decode.edge import _LiteStep, export_step
from seqkit.text import bundled

RESULTS = Path(__file__).parent / "results" / "edge-2core.json"


def lite_sample(step: _LiteStep, state_size: int, prime: list[int], length: int, rng) -> int:
    state = np.zeros([1, state_size], np.float32)
    for i in prime:
        p, state = step(i, state)
    for _ in range(length):
        q = p[0].astype(np.float64)
        q[0] = 0.0  # never the unknown id
        i = int(rng.choice(len(q), p=q / q.sum()))
        p, state = step(i, state)
    return length


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, default=bundled.path())
    parser.add_argument("--length", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    text = datasets.corpus_path("tinyshakespeare").read_text(encoding="utf-8")
    tail = text[len(text) - int(round(len(text) * 0.1)) :]
    files = {}
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "eval.txt").write_text(tail[:5001], encoding="utf-8")
        for kind, quantize in (("litert", "none"), ("litert", "float16"), ("litert", "dynamic-int8"), ("onnx", "none")):
            out = Path(tmp) / f"{kind}-{quantize}"
            described = export_step(args.model, out, kind, quantize, Path(tmp) / "eval.txt")
            files[f"{kind} {quantize}"] = {"size_bytes": described["size_bytes"], **described["prediction_change"]}
            print(f"{kind} {quantize}: {files[f'{kind} {quantize}']}", flush=True)
        lm = CharLM.load(args.model)
        step = _LiteStep((Path(tmp) / "litert-none" / "model.tflite").read_bytes())
        state_size = json.loads((Path(tmp) / "litert-none" / "model.json").read_text())["inputs"]["state"]["shape"][1]
        prime = lm.encode_prime("ROMEO:")
        sample(lm, prime, 50, Sampler(), seed=0)  # compile seqkit's loop before timing
        rates = {"litert": [], "seqkit": []}
        rng = np.random.default_rng(0)
        for round_ in range(args.rounds):
            start = time.perf_counter()
            lite_sample(step, state_size, prime.tolist(), args.length, rng)
            rates["litert"].append(args.length / (time.perf_counter() - start))
            start = time.perf_counter()
            sample(lm, prime, args.length, Sampler(), seed=round_)
            rates["seqkit"].append(args.length / (time.perf_counter() - start))
            print(f"round {round_}: litert {rates['litert'][-1]:,.0f}, seqkit {rates['seqkit'][-1]:,.0f} chars/s")
    medians = {k: statistics.median(v) for k, v in rates.items()}
    result = {"date": time.strftime("%Y-%m-%d"), "model": str(args.model), "files": files, "chars_per_s": medians}
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
