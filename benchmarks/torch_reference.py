"""Plain PyTorch references of the harness's workloads, and a run of them alone.

    python benchmarks/torch_reference.py --out benchmarks/results/torch-gpu   # writes .json; prints a table

``benchmarks/harness.py`` times these beside seqkit and Keras in one process. Run alone
(no TensorFlow imported), they give PyTorch's figures where the two frameworks cannot share
a process: on the H100 of benchmarks/README.md PyTorch's cuDNN LSTM crashed in the
harness's process. Everything runs on CUDA where PyTorch sees a GPU (``--device`` picks).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from workloads import CHAR_STEPS, EMBEDDING, SAMPLING_UNITS, TRAINING, VOCAB, alternate


def training(w: SimpleNamespace, device: str):
    """``run(steps)``: seconds of ``steps`` training steps (Adam, clip 5) on one fixed batch."""
    torch.set_num_threads(2)  # on a GPU too: the host's share of the work
    char = w.workload == "char"

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = torch.nn.Embedding(VOCAB, EMBEDDING) if char else None
            self.lstm = torch.nn.LSTM(EMBEDDING if char else 28, w.units, w.layers, batch_first=True, dropout=w.dropout)
            self.head = torch.nn.Linear(w.units, VOCAB if char else 10)

        def forward(self, x):
            out, _ = self.lstm(self.embed(x) if char else x)
            return self.head(out if char else out[:, -1])

    net = Net().to(device)
    optimizer = torch.optim.Adam(net.parameters(), 2e-3)
    rng = np.random.default_rng(0)
    if char:
        ids = torch.from_numpy(rng.integers(0, VOCAB, (w.batch_size, CHAR_STEPS + 1))).to(device)
        x, y = ids[:, :-1], ids[:, 1:].reshape(-1)
    else:
        x = torch.from_numpy(rng.random((w.batch_size, 28, 28), dtype=np.float32)).to(device)
        y = torch.from_numpy(rng.integers(0, 10, w.batch_size)).to(device)

    def run(steps: int) -> float:
        start = time.perf_counter()
        for _ in range(steps):
            optimizer.zero_grad()
            logits = net(x)
            loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), y)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 5.0)
            optimizer.step()
        float(loss.detach())
        return time.perf_counter() - start

    return run


def inference(images: np.ndarray, device: str):
    """``run(calls)``: ``calls`` passes of a 1 x LSTM 128 classifier over ``images`` in batches of 1,000."""
    lstm, head = torch.nn.LSTM(28, 128, batch_first=True).to(device), torch.nn.Linear(128, 10).to(device)
    timages = torch.from_numpy(images).to(device)

    def run(calls):
        with torch.no_grad():
            for _ in range(calls):
                for i in range(0, len(images), 1000):
                    out = head(lstm(timages[i : i + 1000])[0][:, -1])
            out.cpu()

    return run


def sampling(length: int, device: str):
    """``run(calls)``: ``calls`` streams of ``length`` characters from a 2 x LSTM 256 model, one step at a time."""
    embed, lstm, head = (
        m.to(device)
        for m in (
            torch.nn.Embedding(VOCAB, EMBEDDING),
            torch.nn.LSTM(EMBEDDING, SAMPLING_UNITS, 2),
            torch.nn.Linear(SAMPLING_UNITS, VOCAB),
        )
    )

    def run(calls):
        with torch.no_grad():
            for _ in range(calls):
                ids, state = torch.tensor([[1]], device=device), None
                for _ in range(length):
                    out, state = lstm(embed(ids), state)
                    ids = torch.multinomial(torch.softmax(head(out[-1]), -1), 1)
            ids.cpu()

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="torch-results", help="writes OUT.json")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--steps", type=int, default=10, help="training steps per timing window")
    parser.add_argument("--windows", type=int, default=5, help="timing windows per workload")
    parser.add_argument("--sample-length", type=int, default=300)
    args = parser.parse_args()
    device = args.device
    name = torch.cuda.get_device_name() if device == "cuda" else "CPU"
    report = {"versions": f"torch {torch.__version__}", "device": name, "training": {}}
    rows = []
    for workload, shape in TRAINING.items():
        w = SimpleNamespace(**shape)
        per_step = w.batch_size * (CHAR_STEPS if w.workload == "char" else 1)
        report["training"][workload] = alternate({"pytorch": training(w, device)}, per_step, args.steps, args.windows)[
            "pytorch"
        ]
        rows.append(
            (f"training, {workload} ({'chars' if w.workload == 'char' else 'samples'}/s)", report["training"][workload])
        )
    images = np.random.default_rng(0).random((10_000, 28, 28), dtype=np.float32)
    report["inference"] = alternate({"pytorch": inference(images, device)}, 10_000, 1, args.windows)["pytorch"]
    report["sampling"] = alternate(
        {"pytorch": sampling(args.sample_length, device)}, args.sample_length, 1, args.windows
    )["pytorch"]
    rows += [
        ("inference, 10,000 row-MNIST images (images/s)", report["inference"]),
        ("sampling, one stream (chars/s)", report["sampling"]),
    ]
    Path(f"{args.out}.json").write_text(json.dumps(report, indent=1))
    print(f"PyTorch alone on {name} ({report['versions']}); medians of {args.windows} windows\n")
    print("| workload | median |\n| --- | --- |")
    for label, figures in rows:
        print(f"| {label} | {figures['median']:,.0f} |")


if __name__ == "__main__":
    main()
