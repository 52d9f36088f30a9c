"""Load on `seqkit serve`: many concurrent clients against a real server on 127.0.0.1.

    python benchmarks/load.py --model runs/shakespeare --clients 64 --seconds 60

Starts ``seqkit serve`` on 127.0.0.1 (a free port, the concurrency limit above the
clients), then ``--clients`` threads each send requests one after another for
``--seconds``, a fixed mix of generate (plain and several samples), streamed generate,
tree, score and predict. Reports each route's p50/p99 latency and status codes, the
characters generated per second in all, and the server's resident memory at the start and
the end; then the same mix from one client at a time, for the same time, to compare the
characters per second. Every request goes to 127.0.0.1; the run stops by itself.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import statistics
import subprocess
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path

import httpx

PRIMES = ["ROMEO:", "The quick brown f", "To be, or not to ", "KING RICHARD III:\n", "My lord, ", "What "]


def _request(rng: random.Random) -> tuple[str, str, dict]:
    """One request of the mix: (route name, path, body)."""
    prime = rng.choice(PRIMES)
    kind = rng.choices(["generate", "generate x4", "stream", "tree", "score", "predict"], [30, 10, 20, 15, 15, 10])[0]
    if kind == "generate":
        return kind, "/v1/generate", {"prime": prime, "length": 100, "seed": rng.randrange(1000)}
    if kind == "generate x4":
        return kind, "/v1/generate", {"prime": prime, "length": 60, "num_samples": 4, "seed": rng.randrange(1000)}
    if kind == "stream":
        return kind, "/v1/generate", {"prime": prime, "length": 100, "stream": True, "seed": rng.randrange(1000)}
    if kind == "tree":
        return kind, "/v1/tree", {"prime": prime, "width": 4, "depth": 3}
    if kind == "score":
        return kind, "/v1/score", {"text": prime + "and so it goes on, my lord."}
    return kind, "/v1/models/MODEL:predict", {"instances": [prime, prime + "a"]}


def _send(http: httpx.Client, name: str, path: str, body: dict, model: str) -> tuple[int, int]:
    """(status, characters generated)."""
    path = path.replace("MODEL", model)
    if body.get("stream"):
        chars, status = 0, 0
        with http.stream("POST", path, json=body) as response:
            status = response.status_code
            for line in response.iter_lines():
                if line.startswith("data: ") and '"text"' in line and '"samples"' not in line:
                    chars += len(json.loads(line[6:])["text"])
        return status, chars
    response = http.post(path, json=body)
    chars = sum(len(s["text"]) for s in response.json().get("samples", [])) if response.status_code == 200 else 0
    return response.status_code, chars


def _clients(url: str, model: str, clients: int, seconds: float, seed: int) -> dict:
    latencies, statuses, chars = defaultdict(list), defaultdict(lambda: defaultdict(int)), [0]
    lock, deadline = threading.Lock(), time.monotonic() + seconds

    def client(index: int) -> None:
        rng = random.Random(seed * 1000 + index)
        with httpx.Client(base_url=url, timeout=120) as http:
            while time.monotonic() < deadline:
                name, path, body = _request(rng)
                start = time.perf_counter()
                status, made = _send(http, name, path, body, model)
                with lock:
                    latencies[name].append(time.perf_counter() - start)
                    statuses[name][status] += 1
                    chars[0] += made

    started = time.monotonic()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(seconds + 300)
    elapsed = time.monotonic() - started
    routes = {
        name: {
            "requests": len(values),
            "p50_ms": 1000 * statistics.median(values),
            "p99_ms": 1000 * sorted(values)[min(len(values) - 1, int(0.99 * len(values)))],
            "statuses": dict(statuses[name]),
        }
        for name, values in sorted(latencies.items())
    }
    return {"seconds": elapsed, "chars_per_sec": chars[0] / elapsed, "routes": routes}


def _rss_mib(pid: int) -> float:
    text = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+)", text).group(1)) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, help="a train-char run folder")
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--serial-seconds", type=float, default=30, help="time of the one-client comparison")
    parser.add_argument("--out", help="write OUT.json")
    args = parser.parse_args()
    name = Path(args.model).resolve().name
    command = [sys.executable, "-m", "seqkit.cli", "serve", "--model", args.model, "--port", "0"]
    command += ["--max-concurrent", str(4 * args.clients)]
    server = subprocess.Popen(command, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    try:
        url = None
        while url is None:
            line = server.stderr.readline()
            if not line:
                raise SystemExit("the server did not start")
            found = re.search(r"at (http://127\.0\.0\.1:\d+/)", line)
            url = found.group(1) if found else None
        threading.Thread(target=server.stderr.read, daemon=True).start()
        report = {"date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "clients": args.clients, "url": url}
        report["rss_start_mib"] = _rss_mib(server.pid)
        report["concurrent"] = _clients(url, name, args.clients, args.seconds, seed=1)
        report["rss_end_mib"] = _rss_mib(server.pid)
        report["serial"] = _clients(url, name, 1, args.serial_seconds, seed=2)
        report["speed_up"] = report["concurrent"]["chars_per_sec"] / report["serial"]["chars_per_sec"]
    finally:
        server.terminate()
        server.wait(timeout=60)
    print(f"{args.clients} clients, {report['concurrent']['seconds']:.0f} s, on {url}")
    print(f"{'route':<12} {'requests':>8} {'p50 ms':>8} {'p99 ms':>8}  statuses")
    for route, row in report["concurrent"]["routes"].items():
        print(f"{route:<12} {row['requests']:>8} {row['p50_ms']:>8.0f} {row['p99_ms']:>8.0f}  {row['statuses']}")
    print(
        f"generated {report['concurrent']['chars_per_sec']:,.0f} chars/s with {args.clients} clients, "
        f"{report['serial']['chars_per_sec']:,.0f} with one: {report['speed_up']:.1f}x; "
        f"server memory {report['rss_start_mib']:,.0f} MiB at the start, {report['rss_end_mib']:,.0f} at the end"
    )
    if args.out:
        Path(args.out).with_suffix(".json").write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
