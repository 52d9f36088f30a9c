"""Side-by-side performance harness: seqkit against plain Keras and, where installed, PyTorch.

    python benchmarks/harness.py --out benchmarks/harness-results   # writes .json and .md

In one session, for each workload, the frameworks are timed in alternation (several
windows each, so that machine drift hits all alike); the tables give medians and the
ratio seqkit / reference. Workloads (random data of the real shapes; speed does not
depend on the values):

- training: row-MNIST 1 x LSTM 128 (batch 128), row-MNIST 3 x LSTM 256 with dropout 0.5
  (batch 100), character model (embedding 64, 2 x LSTM 256, sequences of 100, batch 64);
- inference on 10,000 row-MNIST images (1 x LSTM 128, batches of 1,000);
- single-stream sampling with the character model (characters/second; seqkit's ``sample()``
  with its native decoding step, where it builds, with float16 weights where it can and
  with float32 ones, and with XLA's step), and beam-8 search.

Also: each training workload's achieved GFLOP/s in its recurrent matmuls against this
machine's single-precision matmul peak measured in the same run, and the peak memory of
each framework on each training workload, each measured in a fresh process.
PyTorch is optional (`pip install torch`); without it its rows are left out.

On a machine where TensorFlow sees a GPU, every framework runs there: seqkit's rows are its
cuDNN path against its portable XLA loops, PyTorch runs on CUDA, and the memory probes
(resident host memory) are left out: run it with ``--skip-memory``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from core_speed import keras_variant, seqkit_variant  # noqa: E402
from workloads import CHAR_STEPS, EMBEDDING, SAMPLING_UNITS, TRAINING, alternate, sampling_run, sampling_workload  # noqa: E402

from seqkit import machine  # noqa: E402
from seqkit.core import SequenceEncoder  # noqa: E402
from seqkit.core.inference import inference_function  # noqa: E402
from seqkit.machine import matmul_gflops, peak_memory_mib  # noqa: E402

try:
    import torch
    import torch_reference
except ImportError:
    torch = torch_reference = None

GPUS = tf.config.list_physical_devices("GPU")
TORCH_DEVICE = "cuda" if GPUS and torch is not None and torch.cuda.is_available() else "cpu"


# -- training ---------------------------------------------------------------------------------
def recurrent_flops_per_sample(w: SimpleNamespace) -> float:
    """Multiply-adds x 2 of the gate matmuls, forward and backward (about 3x forward)."""
    steps = CHAR_STEPS if w.workload == "char" else 28
    width = EMBEDDING if w.workload == "char" else 28
    per_step = 0.0
    for layer in range(w.layers):
        per_step += 2 * ((width if layer == 0 else w.units) + w.units) * 4 * w.units
    return 3 * per_step * steps


# seqkit's training steps, by their TrainConfig settings. On a CPU: the XLA step; native
# kernels (the default where they build); with bf16 weight gradients too (the default on a
# CPU with bf16 dot products). On a GPU: cuDNN (the default) and the XLA step.
SEQKIT_STEPS = {
    "seqkit, XLA loops": {"cudnn": False, "native_kernels": False, "bf16_gradients": False},
    "seqkit, native kernels": {"native_kernels": True, "bf16_gradients": False},
    "seqkit, native + bf16 gradients": {"native_kernels": True, "bf16_gradients": True},
}
if GPUS:
    SEQKIT_STEPS = {"seqkit, cuDNN": {"cudnn": True}, "seqkit, XLA loops": SEQKIT_STEPS["seqkit, XLA loops"]}


def training_table(name: str, w: SimpleNamespace, args) -> dict:
    variants = {step: seqkit_variant(w, **options) for step, options in SEQKIT_STEPS.items()}
    variants["keras fit"] = keras_variant(w)
    if torch is not None:
        variants["pytorch"] = torch_reference.training(w, TORCH_DEVICE)
    per_call = w.batch_size * (CHAR_STEPS if w.workload == "char" else 1)
    result = alternate(variants, per_call, args.steps, args.windows)
    flops = recurrent_flops_per_sample(w) / (CHAR_STEPS if w.workload == "char" else 1)
    for figures in result.values():
        figures["gflops"] = figures["median"] * flops / 1e9
    return result


# -- inference ------------------------------------------------------------------------------
def inference_table(args) -> dict:
    images = np.random.default_rng(0).random((10_000, 28, 28), dtype=np.float32)
    inputs = keras.Input((28, 28))
    ours = keras.Model(inputs, keras.layers.Dense(10)(SequenceEncoder(128)(inputs)))
    batches = [tf.constant(images[i : i + 1000]) for i in range(0, 10_000, 1000)]
    inputs = keras.Input((28, 28))
    reference = keras.Model(inputs, keras.layers.Dense(10)(keras.layers.LSTM(128)(inputs)))

    def seqkit_variant(native_kernels: bool, gpu: bool = False):
        forward = inference_function(ours, native_kernels=native_kernels, gpu=gpu)

        def run(calls):
            for _ in range(calls):
                outputs = [forward(b) for b in batches]
            outputs[-1].numpy()

        return run

    def keras_run(calls):
        for _ in range(calls):
            reference.predict(images, batch_size=1000, verbose=0)

    fast = (
        ("seqkit, cuDNN", seqkit_variant(False, gpu=True)) if GPUS else ("seqkit, native kernels", seqkit_variant(True))
    )
    variants = {"seqkit, XLA unrolled": seqkit_variant(False), fast[0]: fast[1], "keras predict": keras_run}
    if torch is not None:
        variants["pytorch"] = torch_reference.inference(images, TORCH_DEVICE)
    return alternate(variants, 10_000, 1, args.windows)


# -- decoding -------------------------------------------------------------------------------
def decoding_tables(args) -> tuple[dict, dict]:
    from seqkit.decode.lm import CharLM
    from seqkit.decode.search import beam_search

    lm, prime = sampling_workload()
    vocab, length = lm.vocab, args.sample_length

    # Plain Keras: the same layers, one step per call from Python, state carried by hand.
    embed, cells = (
        keras.layers.Embedding(vocab.size, EMBEDDING),
        [keras.layers.LSTMCell(SAMPLING_UNITS) for _ in range(2)],
    )
    head = keras.layers.Dense(vocab.size)

    @tf.function
    def keras_step(ids, states, seed):
        x = embed(ids)
        new = []
        for cell, state in zip(cells, states):
            x, state = cell(x, state)
            new.append(state)
        chosen = tf.random.stateless_categorical(head(x), 1, seed)[:, 0]
        return chosen, new

    def keras_run(calls):
        for i in range(calls):
            ids = tf.constant([1])
            states = [[tf.zeros((1, SAMPLING_UNITS)), tf.zeros((1, SAMPLING_UNITS))] for _ in cells]
            for t in range(length):
                ids, states = keras_step(ids, states, tf.constant([i, t]))
            int(ids[0])

    variants = {
        "seqkit": sampling_run(lm, prime, length),
        "seqkit, float32 weights": sampling_run(CharLM(lm.model, vocab, half_weights=False), prime, length),
        "seqkit, XLA's step": sampling_run(CharLM(lm.model, vocab, native_step=False), prime, length),
        "keras step loop": keras_run,
    }
    if torch is not None:
        variants["pytorch"] = torch_reference.sampling(length, TORCH_DEVICE)
    sampling = alternate(variants, length, 1, args.windows)
    times = []
    for _ in range(args.windows + 1):
        start = time.perf_counter()
        beam_search(lm, prime, 8, 100)
        times.append(time.perf_counter() - start)
    beam = {"seqkit": {"median_seconds": statistics.median(times[1:]), "windows": times[1:]}}
    return sampling, beam


# -- peak memory, each in a fresh process ---------------------------------------------------------
def own_peak_mib() -> float:
    """This process's peak resident memory (VmHWM). Not getrusage: Linux carries ru_maxrss
    over from the parent across fork and exec, so a probe started by a big parent would
    report the parent's peak."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return peak_memory_mib()


def memory_probe(name: str, framework: str, steps: int = 5) -> None:
    """Peak resident memory of one framework training one workload, less what the process
    held after its imports (TensorFlow and PyTorch are both imported in every probe)."""
    baseline = own_peak_mib()
    w = SimpleNamespace(**TRAINING[name])
    if framework in SEQKIT_STEPS:
        run = seqkit_variant(w, **SEQKIT_STEPS[framework])
    else:
        run = keras_variant(w) if framework == "keras fit" else torch_reference.training(w, TORCH_DEVICE)
    run(steps)
    print(json.dumps({"peak_memory_mib": own_peak_mib() - baseline, "after_imports_mib": baseline}))


def peak_memories(frameworks: list[str]) -> dict:
    table = {}
    for name in TRAINING:
        table[name] = {}
        for framework in frameworks:
            probe = subprocess.run(
                [sys.executable, __file__, "--memory-probe", name, framework],
                capture_output=True,
                text=True,
                timeout=600,
            )
            lines = probe.stdout.strip().splitlines()
            table[name][framework] = (
                round(json.loads(lines[-1])["peak_memory_mib"]) if probe.returncode == 0 and lines else None
            )
    return table


# -- report -----------------------------------------------------------------------------------
def markdown(report: dict) -> str:
    lines = [
        f"Run {report['date']} on {report['machine']}; {report['versions']}.",
        f"Matmul peak (TF, 1024^3 GEMM, same run): {report['matmul_peak_gflops']:.0f} GFLOP/s.",
        "",
    ]
    for name, table in report["training"].items():
        ref = table["keras fit"]["median"]
        lines += [
            f"#### Training, {name} ({'chars' if 'char' in name else 'samples'}/s)",
            "",
            "| framework | median | vs Keras | recurrent GFLOP/s | of matmul peak | peak memory growth MiB |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        for fw, fig in table.items():
            memory = report["peak_memory_mib"].get(name, {}).get(fw)
            lines.append(
                f"| {fw} | {fig['median']:,.0f} | {fig['median'] / ref:.2f}x | {fig['gflops']:.1f} | "
                f"{fig['gflops'] / report['matmul_peak_gflops']:.0%} | {memory or '-'} |"
            )
        lines.append("")
    for title, key, ref_name in (
        ("Inference, 10,000 row-MNIST images (images/s)", "inference", "keras predict"),
        ("Sampling, one stream (chars/s)", "sampling", "keras step loop"),
    ):
        table = report[key]
        lines += [f"#### {title}", "", "| framework | median | vs Keras |", "| --- | --- | --- |"]
        lines += [
            f"| {fw} | {fig['median']:,.0f} | {fig['median'] / table[ref_name]['median']:.2f}x |"
            for fw, fig in table.items()
        ]
        lines.append("")
    lines.append(
        f"#### Beam search\n\nWidth 8, 100 characters: {report['beam']['seqkit']['median_seconds']:.3f} s (seqkit)."
    )
    return "\n".join(lines) + "\n"


def cpu_description() -> str:
    """The CPU's model and the vector extensions that decide which of seqkit's CPU paths run:
    results differ most between CPUs with and without AVX-512 and bf16 dot products."""
    flags = set(machine.cpu_flags())
    try:
        with open("/proc/cpuinfo") as info:
            model = next((line.split(":", 1)[1].strip() for line in info if line.startswith("model name")), "")
    except OSError:
        model = ""
    model = model or platform.processor() or "unknown CPU"
    wide = [
        name
        for flag, name in (("avx512f", "AVX-512"), ("avx512_bf16", "AVX-512 BF16"), ("amx_bf16", "AMX BF16"))
        if flag in flags
    ]
    if wide == ["AVX-512"]:
        wide.append("no bf16 dot products")
    held = (
        ", shown to every library as AVX2 by benchmarks/experiments/avx2/run"
        if os.environ.get("SEQKIT_AVX2_CXX")
        else ""
    )
    return f"{model} ({', '.join(wide) or ('AVX2, no AVX-512' if 'avx2' in flags else 'no AVX2')}{held})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="harness-results", help="writes OUT.json and OUT.md")
    parser.add_argument("--steps", type=int, default=10, help="training steps per timing window")
    parser.add_argument("--windows", type=int, default=5, help="timing windows per framework")
    parser.add_argument("--sample-length", type=int, default=300)
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--no-torch", action="store_true", help="leave PyTorch out even where it is installed")
    parser.add_argument("--memory-probe", nargs=2, metavar=("WORKLOAD", "FRAMEWORK"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_probe:
        return memory_probe(*args.memory_probe)
    if args.no_torch:
        global torch
        torch = None
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)  # fail before the run, not after it

    frameworks = [*SEQKIT_STEPS, "keras fit"] + (["pytorch"] if torch is not None else [])
    report = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {cpu_description()}"
        + "".join(f", {tf.config.experimental.get_device_details(g).get('device_name', g.name)}" for g in GPUS),
        "versions": f"tensorflow {tf.__version__}, keras {keras.__version__}"
        + (f", torch {torch.__version__}" if torch is not None else ", no torch"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "matmul_peak_gflops": matmul_gflops(seconds=2.0, n=1024),
        "training": {},
    }
    for name, workload in TRAINING.items():
        print(f"training: {name}", flush=True)
        report["training"][name] = training_table(name, SimpleNamespace(**workload), args)
    print("inference", flush=True)
    report["inference"] = inference_table(args)
    print("decoding", flush=True)
    report["sampling"], report["beam"] = decoding_tables(args)
    report["peak_memory_mib"] = {} if args.skip_memory else peak_memories(frameworks)
    Path(f"{args.out}.json").write_text(json.dumps(report, indent=1))
    Path(f"{args.out}.md").write_text(markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
