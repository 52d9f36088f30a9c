"""Validation loss of a trained character model as a function of the evaluation window.

    python benchmarks/experiments/val_windows.py OUT_DIR CORPUS 64 100 256

`train-char` reports validation over windows of its own `--seq-len`, each read from a zero
state, so the first characters of every window are predicted with little context. This
reads the held-out part of CORPUS (the last `val_fraction`, as in training) in
non-overlapping windows of each length given and prints nats per character, so that
figures can be compared with references measured at another window length.
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import tensorflow as tf  # noqa: E402

tf.get_logger().setLevel("ERROR")  # one trace per window length (and the last batch) is expected

from seqkit.core.trainer import sparse_loss_and_hits  # noqa: E402
from seqkit.decode.lm import CharLM  # noqa: E402
from seqkit.fileio import read_json  # noqa: E402
from seqkit.text.corpus import read_corpus  # noqa: E402
from seqkit.text.windows import eval_windows  # noqa: E402


def main() -> None:
    out, corpus_path, *lengths = sys.argv[1:]
    config = read_json(os.path.join(out, "config.json"), "saved configuration")["config"]
    lm = CharLM.load(out)
    ids = read_corpus(corpus_path, config["val_fraction"], config["normalization"], vocab=lm.vocab).val_ids
    forward = tf.function(lambda x: lm.model(x, training=False), jit_compile=True)
    for length in map(int, lengths):
        total = count = 0.0
        for x, y in eval_windows(ids, length, 256):
            loss, _ = sparse_loss_and_hits(y, forward(x))
            total, count = total + float(tf.reduce_sum(loss)), count + int(tf.size(loss))
        print(f"windows of {length}: {total / count:.4f} nats/char over {count:,.0f} characters")


if __name__ == "__main__":
    main()
