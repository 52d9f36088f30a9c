"""What ``--half-weights`` costs and gives: a trained model's predictions and sampling speed
with the native step's weights in float16 against float32.

    seqkit train-char $SEQKIT_DATA_DIR/tinyshakespeare/input.txt --out runs/shake256 \\
        --units 256 --layers 2 --embedding 64 --max-time 480
    python benchmarks/experiments/half_weights.py runs/shake256 $SEQKIT_DATA_DIR/tinyshakespeare/input.txt

The predictions: the model reads the last ``--chars`` characters of its corpus (the
validation tail: train-char holds out the last tenth) one at a time through the native
step (the sampling loop's path), once with each dtype; reported are the bits per
character of each, the mean KL divergence of the float16 distributions from the float32
ones, their largest probability difference, and how often
the likeliest character differs. The speed: ``sample()`` with XLA's step, the native step
and the native step with float16 weights, alternating (``workloads.alternate``).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from seqkit.decode.lm import CharLM  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the shared workloads
from workloads import alternate, sampling_run  # noqa: E402


def native_log_probs(lm: CharLM, ids: np.ndarray, dtype: tf.DType) -> np.ndarray:
    """Log-probs [len(ids), vocab] of the character after each of ``ids``, teacher-forced
    through the native step with weights packed as ``dtype``."""

    @tf.function(jit_compile=True, autograph=False)
    def run(ids):
        packed = lm.encoder.pack_step_weights(dtype)

        def body(i, states, out):
            log_probs, states = lm.step_fn(ids[i][None], states, packed, i)
            return i + 1, states, out.write(i, log_probs[0])

        start = (0, lm.encoder.get_initial_state(1), tf.TensorArray(tf.float32, size=tf.shape(ids)[0]))
        return tf.while_loop(lambda i, *_: i < tf.shape(ids)[0], body, start)[2].stack()

    return run(tf.constant(ids, tf.int32)).numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model", type=Path, help="a seqkit train-char --out folder")
    parser.add_argument("corpus", type=Path, help="the text it was trained on")
    parser.add_argument("--chars", type=int, default=5000, help="validation characters to predict")
    parser.add_argument("--length", type=int, default=300, help="characters per sampling call")
    parser.add_argument("--windows", type=int, default=9)
    args = parser.parse_args()
    lm = CharLM.load(args.model)
    if not lm.steps_natively():
        raise SystemExit("The native step does not run this model here.")
    ids = lm.vocab.encode(args.corpus.read_text(encoding="utf-8")[-args.chars - 1 :])
    full, half = (native_log_probs(lm, ids[:-1], dtype) for dtype in (tf.float32, tf.float16))
    rows = np.arange(len(ids) - 1)
    bits = {name: -lp[rows, ids[1:]].mean() / math.log(2) for name, lp in (("float32", full), ("float16", half))}
    kl = (np.exp(full) * (full - half)).sum(axis=1).mean() / math.log(2)
    print(
        f"{len(rows):,} characters of {args.corpus.name}'s tail: bits/char float32 {bits['float32']:.5f}, "
        f"float16 {bits['float16']:.5f}; mean KL {kl:.2e} bits; largest probability difference "
        f"{np.abs(np.exp(full) - np.exp(half)).max():.2e}; likeliest character differs at "
        f"{int((full.argmax(1) != half.argmax(1)).sum())} of {len(rows):,} steps"
    )
    prime = lm.encode_prime("ROMEO:\n")
    variants = {
        "XLA's step": sampling_run(CharLM(lm.model, lm.vocab, native_step=False), prime, args.length),
        "native step, float32 weights": sampling_run(
            CharLM(lm.model, lm.vocab, half_weights=False), prime, args.length
        ),
        "native step, float16 weights": sampling_run(CharLM(lm.model, lm.vocab, half_weights=True), prime, args.length),
    }
    rates = alternate(variants, args.length, 1, args.windows)
    reference = rates["XLA's step"]["median"]
    for name, rate in rates.items():
        print(f"sample() with {name}: {rate['median']:,.0f} chars/s ({rate['median'] / reference:.2f}x XLA's step)")


if __name__ == "__main__":
    main()
