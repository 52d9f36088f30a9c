"""Many streams at once: aggregate characters per second of batched sampling.

    python benchmarks/streams.py --out benchmarks/results/streams-2core

For the harness's sampling model (an untrained 2 x LSTM 256 on 65 symbols), at N = 1, 16,
64 and 256 streams of 256 characters: seqkit's ``generate`` (the default step for N, and
the other step beside it), a plain PyTorch batched loop of the same architecture
(``nn.LSTM``, ``torch.multinomial``, 2 threads) where PyTorch is installed, and the limit:
2 x the step's multiply-adds at N, divided by the float32 GEMM FLOP/s of the step's own
matrix shapes measured in the same process. Alternating windows, medians. Also how often a
stream's text differs between a batch and one stream alone (float rounding of batched
products), over the characters sampled.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import tensorflow as tf  # noqa: E402
from workloads import EMBEDDING, SAMPLING_UNITS, VOCAB, alternate, sampling_workload  # noqa: E402

from seqkit.decode import CharLM, Sampler, generate, sample  # noqa: E402
from seqkit.decode import streams as streams_module  # noqa: E402

try:
    import torch
except ImportError:  # the PyTorch reference is optional
    torch = None

LENGTH = 256
SHAPES = [
    (EMBEDDING + SAMPLING_UNITS, 4 * SAMPLING_UNITS),
    (2 * SAMPLING_UNITS, 4 * SAMPLING_UNITS),
    (SAMPLING_UNITS, VOCAB),
]


def step_macs() -> int:
    """Multiply-adds of one character of one stream: both layers' [x, h] @ [W; R] and the logits."""
    return sum(k * n for k, n in SHAPES)


def gemm_flops(rows: int, seconds: float = 1.0) -> float:
    """FLOP/s of the step's three products at ``rows`` rows, as one XLA program, now."""
    mats = [(tf.random.normal([rows, k]), tf.random.normal([k, n])) for k, n in SHAPES]

    @tf.function(jit_compile=True)
    def products(reps):
        def body(i, total):
            return i + 1, total + sum(tf.reduce_sum(tf.matmul(a + tf.cast(i, tf.float32), b)) for a, b in mats)

        return tf.while_loop(lambda i, _: i < reps, body, (0, 0.0))[1]

    reps = 64
    products(reps).numpy()
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        products(reps).numpy()
        count += reps
    return 2 * step_macs() * rows * count / (time.perf_counter() - start)


def torch_streams(rows: int):
    torch.set_num_threads(2)
    embed, lstm = torch.nn.Embedding(VOCAB, EMBEDDING), torch.nn.LSTM(EMBEDDING, SAMPLING_UNITS, 2)
    head = torch.nn.Linear(SAMPLING_UNITS, VOCAB)

    def run(calls):
        with torch.no_grad():
            for _ in range(calls):
                ids, state = torch.ones((1, rows), dtype=torch.long), None
                for _ in range(LENGTH):
                    out, state = lstm(embed(ids), state)
                    ids = torch.multinomial(torch.softmax(head(out[-1]), -1), 1).T

    return run


def seqkit_streams(lm, prime, rows: int, native: bool | None):
    """``generate`` of ``rows`` streams; ``native`` forces the native step's use (or not)."""

    def run(calls):
        limit = streams_module.NATIVE_STEP_ROWS
        if native is not None:
            streams_module.NATIVE_STEP_ROWS = 10**9 if native else 0
        try:
            for seed in range(calls):
                generate(lm, [prime], LENGTH, seed=seed, num_samples=rows)
        finally:
            streams_module.NATIVE_STEP_ROWS = limit

    return run


def differing(lm, prime, rows: int) -> tuple[int, int]:
    """Streams (of ``rows``) whose batched text differs from the same stream alone, and the
    characters compared."""
    batched = generate(lm, [prime], LENGTH, seed=11, num_samples=rows)
    alone = [sample(lm, prime, LENGTH, Sampler(), seed=11, stream=i) for i in range(rows)]
    return sum(b.text != a for b, a in zip(batched, alone)), rows * LENGTH


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", help="write OUT.json")
    parser.add_argument("--streams", type=int, nargs="+", default=[1, 16, 64, 256])
    parser.add_argument("--windows", type=int, default=3)
    args = parser.parse_args()
    lm, prime = sampling_workload()
    lm = CharLM(lm.model, lm.vocab)
    xla = CharLM(lm.model, lm.vocab, native_step=False)
    report = {"date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "length": LENGTH, "rows": {}}
    print(f"{'streams':>7}  {'seqkit':>9}  {'other step':>10}  {'pytorch':>9}  {'limit':>9}  {'of limit':>8}")
    for rows in args.streams:
        default_native = rows < streams_module.NATIVE_STEP_ROWS
        variants = {
            "seqkit": seqkit_streams(lm, prime, rows, None),
            "seqkit, other step": seqkit_streams(xla if default_native else lm, prime, rows, not default_native),
        }
        if torch is not None:
            variants["pytorch"] = torch_streams(rows)
        rates = alternate(variants, rows * LENGTH, 1, args.windows)
        limit = gemm_flops(rows) / (2 * step_macs())
        row = {name: rates[name]["median"] for name in rates}
        row["limit"], row["default step"] = limit, "native" if default_native else "xla"
        report["rows"][rows] = row
        print(
            f"{rows:>7}  {row['seqkit']:>9,.0f}  {row['seqkit, other step']:>10,.0f}  "
            f"{row.get('pytorch', float('nan')):>9,.0f}  {limit:>9,.0f}  {row['seqkit'] / limit:>8.0%}",
            flush=True,
        )
    report["differ"] = {rows: differing(lm, prime, rows) for rows in (16, 64)}
    print("streams whose batched text differs from the stream alone:", report["differ"])
    if args.out:
        Path(args.out).with_suffix(".json").write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
