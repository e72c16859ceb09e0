"""Streaming inference: the latency of one time step at batch 1, side by side in one process.

Per-step medians (µs), batch 1, input 128, hidden 512, one layer, float32, --threads threads (2), for
LSTM and GRU, all on the same weights:
  (a) the floor: one ``numpy.dot(W, v, out=o)`` over the step's weights, W = [W_ih | W_hh] (G*H, D+H)
      (OpenBLAS's GEMV; no gates, no state), with OpenBLAS at --threads threads and at 1 thread; the
      faster of the two is the floor the ratios divide by (on a busy machine the threaded GEMV can
      lose to the single one);
  (b) ``rnnkit.Streamer.step(x_t, out=y)`` on its native path: one C++ call (weights packed once,
      gates fused after each block of rows, into preallocated buffers);
  (c) the same Streamer with ``native=False``: its pure-torch step (one addmv per layer, three for a
      GRU, and the elementwise ops bound in a list), the fallback where the C++ step cannot build;
  (d) ONNX Runtime running an exported ``nn.LSTMCell``/``GRUCell`` step, intra-op threads = --threads,
      inputs and outputs bound once (I/O binding, the state ping-ponged between two bindings), so it
      allocates nothing per step either;
  (e) ``torch.nn.LSTMCell``/``GRUCell`` called per step under inference mode.
Targets (issue 16): (b) / floor <= 1.5 and (b) faster than (d).

Three thread pools share the two cores: torch's OpenMP pool, OpenBLAS's (numpy) and ONNX Runtime's,
each set to --threads. An idle pool spins for a while before it sleeps, and a pool spinning while
another works takes that one's cores (a step at 2 threads then costs milliseconds). So the rounds
are quiet: before each sample the script sleeps --gap seconds (every pool goes to sleep), makes one
untimed call (its pool wakes), then times --steps consecutive steps (in which that pool spins, as
it would in a real stream). OpenBLAS spins about 0.1 s by default; ``OPENBLAS_THREAD_TIMEOUT=20``
(2^20 cycles, under 1 ms, set here before numpy loads unless already set) makes it sleep within the
gap, while within a sample its calls still come faster than that. Candidates are timed in
interleaved rounds, so drift on a shared machine hits all of them alike.

    python benchmarks/streaming.py [--repeats 60] [--steps 20] [--threads 2] [--gap 0.003]

Measured (2 vCPUs AMD EPYC, AVX-512 build, torch 2.13, 2 threads, load average 2.2-2.7 from other
work, three runs; µs per step, ratio to the floor):
  LSTM: floor 42-45 | native 39-41 (0.86-0.96) | torch step 212-346 | ORT 82-87 | nn.LSTMCell 460-737
  GRU:  floor 31-48 | native 30-34 (0.70-0.94) | torch step 139-351 | ORT 62-68 | nn.GRUCell 216-417
With --threads 1: LSTM floor 74-77, native 64-73, ORT 82-85; GRU floor 54-56, native 48-54, ORT
69-74. At load 2.9-3.6 the threaded numpy GEMV collapsed to 0.9-1 ms in five tables of six (the
floor is then the 1-thread one) and the native step hit the same storm (7.8 ms) in one: see
benchmarks/README.md, "Threads and shared machines".
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "20")  # before numpy loads OpenBLAS: see above

import argparse
import io
import statistics
import time
import warnings
from collections.abc import Callable

import numpy as np
import onnxruntime as ort
import threadpoolctl
import torch
from timing import setting
from torch import nn

import rnnkit
from rnnkit.kernels import stream

D, H = 128, 512


def floor(cell: nn.Module) -> Callable[[], object]:
    """One numpy GEMV over the step's weights: [W_ih | W_hh] (G*H, D + H) against [x, h]."""
    w = torch.cat([cell.weight_ih, cell.weight_hh], 1).detach().numpy().copy()  # (G*H, D + H)
    v = np.random.default_rng(0).standard_normal(D + H, dtype=np.float32)
    out = np.empty(w.shape[0], dtype=np.float32)
    return lambda: np.dot(w, v, out=out)


class _Step(nn.Module):
    """One cell step with the state as separate inputs and outputs, for ONNX export."""

    def __init__(self, cell: nn.Module) -> None:
        super().__init__()
        self.cell = cell

    def forward(self, x, h, c=None):
        return self.cell(x, (h, c)) if c is not None else self.cell(x, h)


def onnx_step(cell: nn.Module, threads: int) -> Callable[[np.ndarray], None]:
    """ONNX Runtime on the exported cell step: x (1, D) -> state, I/O bound, state ping-ponged."""
    lstm = isinstance(cell, nn.LSTMCell)
    names = ["x", "h", "c"] if lstm else ["x", "h"]
    outputs = ["h_out", "c_out"] if lstm else ["h_out"]
    args = (torch.zeros(1, D), *(torch.zeros(1, H) for _ in names[1:]))
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(_Step(cell), args, buffer, input_names=names, output_names=outputs, dynamo=False)
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(buffer.getvalue(), options, providers=["CPUExecutionProvider"])
    x = np.zeros((1, D), dtype=np.float32)
    states = [[np.zeros((1, H), dtype=np.float32) for _ in outputs] for _ in range(2)]
    bindings = []
    for source, target in ((states[0], states[1]), (states[1], states[0])):
        binding = session.io_binding()
        binding.bind_cpu_input("x", x)
        for name, array in zip(names[1:], source, strict=True):
            binding.bind_cpu_input(name, array)
        for name, array in zip(outputs, target, strict=True):
            binding.bind_output(name, "cpu", 0, np.float32, array.shape, array.ctypes.data)
        bindings.append(binding)
    turn = [0]

    def step(x_t: np.ndarray) -> None:
        np.copyto(x, x_t)
        session.run_with_iobinding(bindings[turn[0]])
        turn[0] ^= 1

    return step


Candidate = tuple[Callable[[], object], Callable[[], None]]  # (setup, run): setup is not timed


def candidates(name: str, xs: list[torch.Tensor], threads: int) -> dict[str, Candidate]:
    """name "LSTM" or "GRU" -> {label: (setup, run len(xs) steps)}, all on the same weights."""
    torch_cell = getattr(nn, f"{name}Cell")(D, H).eval()
    layer = getattr(rnnkit, name)(D, H).eval()
    layer.load_state_dict({f"{k}_l0": v for k, v in torch_cell.state_dict().items()})
    native, fast = rnnkit.Streamer(layer), rnnkit.Streamer(layer, native=False)
    assert native.path == "native", f"the C++ step did not build: {stream.info().reason}"
    y = torch.empty(1, H)  # the step's output buffer, reused: out= keeps the step allocation-free
    gemv, ort_step = floor(torch_cell), onnx_step(torch_cell, threads)
    xs_np = [x.numpy() for x in xs]
    lstm = name == "LSTM"
    state = [(torch.zeros(1, H),) * (2 if lstm else 1)]

    def run_floor():
        for _ in xs:
            gemv()

    def run_native():
        for x in xs:
            native.step(x, out=y)

    def run_fast():
        for x in xs:
            fast.step(x, out=y)

    def run_onnx():
        for x in xs_np:
            ort_step(x)

    def run_cell():
        with torch.inference_mode():
            s = state[0]
            for x in xs:
                s = torch_cell(x, s) if lstm else (torch_cell(x, s[0]),)
            state[0] = s

    blas = threadpoolctl.ThreadpoolController()

    def limit(n: int) -> Callable[[], object]:
        return lambda: blas.limit(limits=n, user_api="blas")

    def nothing() -> None:
        pass

    floors = {f"(a) floor: numpy.dot(W, v, out=), {n} thread(s)": n for n in dict.fromkeys((threads, 1))}
    return {
        **{label: (limit(n), run_floor) for label, n in floors.items()},
        "(b) Streamer.step(out=), native": (nothing, run_native),
        "(c) Streamer.step(out=), native=False": (nothing, run_fast),
        f"(d) ONNX Runtime {ort.__version__}, {name}Cell": (nothing, run_onnx),
        f"(e) torch.nn.{name}Cell": (nothing, run_cell),
    }


def measure(runs: dict[str, Candidate], repeats: int, steps: int, gap: float) -> dict[str, float]:
    """Median µs per step of each candidate, in quiet interleaved rounds (see the docstring)."""
    times: dict[str, list[float]] = {label: [] for label in runs}
    for _ in range(repeats):
        for label, (setup, run) in runs.items():
            setup()
            time.sleep(gap)  # every thread pool goes to sleep
            run()  # this candidate's pool wakes (untimed)
            start = time.perf_counter()
            run()
            times[label].append((time.perf_counter() - start) / steps)
    return {label: statistics.median(t) * 1e6 for label, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=60, help="samples per candidate")
    parser.add_argument("--steps", type=int, default=20, help="consecutive steps per sample")
    parser.add_argument("--threads", type=int, default=2, help="torch's, OpenBLAS's and ONNX Runtime's")
    parser.add_argument("--gap", type=float, default=0.003, help="seconds of sleep before each sample")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(
        f"{setting()}, B=1 D={D} H={H}; "
        f"OPENBLAS_THREAD_TIMEOUT={os.environ['OPENBLAS_THREAD_TIMEOUT']}, "
        f"GOMP_SPINCOUNT={os.environ.get('GOMP_SPINCOUNT', 'unset')}; median of {args.repeats} samples x "
        f"{args.steps} steps, {args.gap * 1e3:.0f} ms quiet before each; "
        f"C++ step: {stream.info().name}"
    )
    xs = list(torch.randn(args.steps, 1, D).unbind(0))  # each (1, D)
    for name in ("LSTM", "GRU"):
        medians = measure(candidates(name, xs, args.threads), args.repeats, args.steps, args.gap)
        reference = min(us for label, us in medians.items() if label.startswith("(a)"))
        onnx = next(us for label, us in medians.items() if label.startswith("(d)"))
        print(f"\n{name} step, batch 1, input {D}, hidden {H}")
        print(f"  {'candidate':<48}{'median µs':>11}{'/ floor':>9}{'/ (d)':>8}")
        for label, us in medians.items():
            print(f"  {label:<48}{us:>11.1f}{us / reference:>9.2f}{us / onnx:>8.2f}")


if __name__ == "__main__":
    main()
