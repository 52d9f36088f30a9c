"""Decoding speed of a trained character model, against re-running the prefix, in one run.

    python benchmarks/experiments/decode_speed.py --model runs/input --length 500

Reports: sampling characters/second with the compiled incremental loop and with a naive
loop that re-runs the whole prefix through the model for every character (the ratio is
the point), beam search (--beam 8) and the prediction tree (width 5, depth 4) times.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from seqkit.decode import beam_search, prediction_tree, sample  # noqa: E402
from seqkit.decode.lm import CharLM  # noqa: E402
from seqkit.decode.sampling import Sampler  # noqa: E402


def naive_sample(lm: CharLM, prime_ids: np.ndarray, length: int, seed: int) -> np.ndarray:
    """Re-run the whole prefix for every new character (what a plain Keras loop does)."""
    ids = list(prime_ids)
    forward = tf.function(lambda x: lm.model(x, training=False)[:, -1], reduce_retracing=True)
    for i in range(length):
        logits = forward(tf.constant([ids], tf.int32))
        ids.append(int(Sampler()(tf.nn.log_softmax(logits), tf.constant([seed, i], tf.int64))[0]))
    return np.asarray(ids[len(prime_ids) :])


def timed(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--prime", default="ROMEO:")
    parser.add_argument("--length", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json")
    args = parser.parse_args()
    lm = CharLM.load(args.model)
    prime = lm.encode_prime(args.prime)
    sampler = Sampler()
    sample(lm, prime, args.length, sampler)  # compile
    naive_sample(lm, prime, 3, 0)
    beam_search(lm, prime, 8, 5)
    prediction_tree(lm, prime, 5, 4)
    figures = {
        "incremental_sample_seconds": timed(lambda: sample(lm, prime, args.length, sampler), args.repeats),
        "naive_sample_seconds": timed(lambda: naive_sample(lm, prime, args.length, 0), 1),
        "beam8_100_chars_seconds": timed(lambda: beam_search(lm, prime, 8, 100), args.repeats),
        "tree_w5_d4_seconds": timed(lambda: prediction_tree(lm, prime, 5, 4), args.repeats),
    }
    figures["incremental_chars_per_sec"] = args.length / figures["incremental_sample_seconds"]
    figures["naive_chars_per_sec"] = args.length / figures["naive_sample_seconds"]
    figures["speedup"] = figures["naive_sample_seconds"] / figures["incremental_sample_seconds"]
    for key, value in figures.items():
        print(f"{key}: {value:,.3f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "figures": figures}, f, indent=2)


if __name__ == "__main__":
    main()
