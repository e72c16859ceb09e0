"""The HTTP server under a bounded load from loopback: requests per second, latency, errors, memory.

Starts ``rnnkit serve BUNDLE`` in its own process on a free loopback port (a small text classifier
trained here on generated reviews unless --bundle names one), waits for /healthz, then sends
--requests POST /v1/predict requests (--texts texts each) from --clients concurrent clients, stopping
early at --time-limit seconds. Prints requests per second, p50 and p99 latency, the errors (any
answer but 200; must be 0) and the server's resident memory before and after the load, for the
server with micro-batching and without (``--no-batching``), in alternating rounds, and the ratio.

    python benchmarks/serve.py [--requests 2000] [--clients 8] [--texts 4] [--time-limit 120]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

WORDS = ["the", "film", "was", "a", "plot", "actors", "and", "it"]
GOOD, BAD = ["great", "good", "fine"], ["bad", "awful", "poor"]


def review(rng: random.Random, good: bool) -> str:
    words = rng.choices(WORDS, k=rng.randint(3, 12)) + rng.choices(GOOD if good else BAD, k=2)
    rng.shuffle(words)
    return " ".join(words)


def train_bundle(folder: Path) -> Path:
    """A small LSTM classifier (embedding 32, hidden 64, attention pooling) on 600 generated reviews."""
    rng = random.Random(0)
    rows = ["text,label"] + [
        f"{review(rng, i % 2 == 0)},{'pos' if i % 2 == 0 else 'neg'}" for i in range(600)
    ]
    (folder / "reviews.csv").write_text("\n".join(rows) + "\n")
    config = {
        "task": "classify", "out_dir": str(folder / "run"),
        "data": {"path": str(folder / "reviews.csv"), "test": 0.2, "validation": 0.1},
        "model": {"embedding_dim": 32, "hidden_size": 64, "pooling": "attention"},
        "train": {"epochs": 3, "batch_size": 32, "progress": False, "tensorboard": False},
    }  # fmt: skip
    (folder / "run.yaml").write_text(json.dumps(config))
    rnnkit = Path(sys.executable).with_name("rnnkit")
    subprocess.run([str(rnnkit), "train", str(folder / "run.yaml")], check=True, capture_output=True)
    return folder / "run" / "bundle"


def resident_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def load(url: str, requests: int, clients: int, texts: int, time_limit: float):
    rng = random.Random(1)
    bodies = [{"inputs": [review(rng, rng.random() < 0.5) for _ in range(texts)]} for _ in range(64)]
    latencies, errors, sent = [], [], 0
    deadline = time.monotonic() + time_limit

    async def client(http: httpx.AsyncClient) -> None:
        nonlocal sent
        while sent < requests and time.monotonic() < deadline:
            sent += 1
            start = time.perf_counter()
            try:
                answer = await http.post(f"{url}/v1/predict", json=bodies[sent % len(bodies)])
                if answer.status_code != 200:
                    errors.append(f"{answer.status_code}: {answer.text[:100]}")
            except httpx.HTTPError as error:
                errors.append(repr(error))
            latencies.append(time.perf_counter() - start)

    async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=clients)) as http:
        start = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(clients)))
        elapsed = time.perf_counter() - start
    return latencies, errors, elapsed


def serve_and_load(bundle: Path, args, batching: bool) -> dict:
    """One server process, one bounded load; its figures."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    rnnkit = Path(sys.executable).with_name("rnnkit")
    command = [str(rnnkit), "serve", str(bundle), "--port", str(port), "--max-batch", "64"]
    server = subprocess.Popen(
        command + ([] if batching else ["--no-batching"]),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        else:
            raise SystemExit("the server did not start")
        before = resident_mb(server.pid)
        latencies, errors, elapsed = asyncio.run(
            load(url, args.requests, args.clients, args.texts, args.time_limit)
        )
        after = resident_mb(server.pid)
    finally:
        server.terminate()
        server.wait(10)
    ms = sorted(1000 * x for x in latencies)
    return {
        "requests": len(ms), "rps": len(ms) / elapsed, "p50": statistics.median(ms),
        "p99": ms[min(len(ms) - 1, int(0.99 * len(ms)))], "errors": errors, "before": before, "after": after,
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--bundle", type=Path, help="a bundle whose model predicts texts (default: train one)"
    )
    parser.add_argument("--requests", type=int, default=2000, help="per round")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--texts", type=int, default=4, help="texts in each request")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of each mode, alternating")
    parser.add_argument("--time-limit", type=float, default=120.0, help="seconds a round may take")
    args = parser.parse_args()
    runs: dict[str, list[dict]] = {"micro-batched": [], "one call a request": []}
    with tempfile.TemporaryDirectory() as folder:
        bundle = args.bundle or train_bundle(Path(folder))
        for _ in range(args.rounds):
            for mode in runs:
                runs[mode].append(serve_and_load(bundle, args, batching=mode == "micro-batched"))
    print(
        f"{args.rounds} rounds of {args.requests} requests of {args.texts} texts from {args.clients} clients"
    )
    print(f"  {'':<20}{'req/s':>8}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}{'MB before':>11}{'MB after':>10}")
    for mode, rounds in runs.items():
        rps = statistics.median(r["rps"] for r in rounds)
        p50 = statistics.median(r["p50"] for r in rounds)
        p99 = statistics.median(r["p99"] for r in rounds)
        errors = sum(len(r["errors"]) for r in rounds)
        before, after = rounds[-1]["before"], rounds[-1]["after"]
        print(f"  {mode:<20}{rps:>8.1f}{p50:>9.1f}{p99:>9.1f}{errors:>8}{before:>11.0f}{after:>10.0f}")
    ratio = statistics.median(r["rps"] for r in runs["micro-batched"]) / statistics.median(
        r["rps"] for r in runs["one call a request"]
    )
    print(f"  micro-batching / one call a request: {ratio:.2f}x the requests per second (medians)")
    failures = [e for rounds in runs.values() for r in rounds for e in r["errors"]]
    if failures:
        raise SystemExit(f"{len(failures)} errors, the first: {failures[0]}")


if __name__ == "__main__":
    main()
