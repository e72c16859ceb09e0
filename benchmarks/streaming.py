"""Streaming inference: the latency of one time step at batch 1, side by side in one process.

Per-step medians (µs), batch 1, input 128, hidden 512, one layer, float32, 2 threads, for LSTM and GRU:
  (a) the step's matrix-vector products alone: the same GEMVs rnnkit.Streamer.step runs, on the same
      concatenated weights (LSTM: one addmv of [W_ih | W_hh] against [x, h]; GRU: three, since the
      reset gate multiplies W_hn h alone);
  (b) rnnkit.Streamer.step(x_t, out=y): into a preallocated y, so no step allocates (without out=,
      each step returns a new tensor);
  (c) torch.nn.LSTMCell / GRUCell called per step;
  (d) torch.nn.LSTM / GRU called with T=1 per step, the state carried.
Every candidate but (b) runs inside one torch.inference_mode block per sample; (b) enters its own at
every step, as a caller would. Candidates are timed in interleaved rounds, each sample a run of
--steps consecutive steps, so drift on a shared machine hits all of them alike. The target is
(b)/(a) <= 2. (NumPy's GEMV is left out on purpose: OpenBLAS's own spinning threads would compete
with torch's OpenMP threads for the same cores and slow every candidate timed after it.)

    python benchmarks/streaming.py [--repeats 200] [--steps 20] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn

import rnnkit

D, H = 128, 512


def gemvs(layer) -> Callable[[], None]:
    """The GEMVs of one Streamer step, on copies of the layer's weights laid out as the Streamer's."""
    cell = layer.cells[0]
    w_ih, w_hh, b_ih, b_hh = (
        t.detach() for t in (cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh)
    )
    xh = torch.randn(D + H)  # [x, h]
    x, h = xh[:D], xh[D:]
    if isinstance(layer, rnnkit.LSTM):
        products = [(torch.cat([w_ih, w_hh], 1), b_ih + b_hh, xh)]  # (4H, D + H)
    else:
        products = [
            (torch.cat([w_ih[: 2 * H], w_hh[: 2 * H]], 1), b_ih[: 2 * H] + b_hh[: 2 * H], xh),  # (2H, D + H)
            (w_ih[2 * H :].clone(), b_ih[2 * H :].clone(), x),  # (H, D)
            (w_hh[2 * H :].clone(), b_hh[2 * H :].clone(), h),  # (H, H)
        ]
    outs = [torch.empty(w.shape[0]) for w, _, _ in products]

    def run() -> None:
        for (w, b, v), out in zip(products, outs, strict=True):
            torch.addmv(b, w, v, out=out)

    return run


def candidates(name: str, xs: list[torch.Tensor]) -> dict[str, Callable[[], None]]:
    """name "LSTM" or "GRU" -> {label: run len(xs) steps}, all on the same weights."""
    torch_layer = getattr(nn, name)(D, H, batch_first=True).eval()
    torch_cell = getattr(nn, f"{name}Cell")(D, H).eval()
    torch_cell.load_state_dict({k.removesuffix("_l0"): v for k, v in torch_layer.state_dict().items()})
    layer = getattr(rnnkit, name)(D, H).eval()
    layer.load_state_dict(torch_layer.state_dict())
    streamer = rnnkit.Streamer(layer)
    y = torch.empty(1, H)  # the step's output buffer, reused: out= keeps the step allocation-free
    gemv = gemvs(layer)
    lstm = name == "LSTM"
    state = {"cell": (torch.zeros(1, H),) * (2 if lstm else 1), "layer": torch.zeros(1, 1, H)}
    if lstm:
        state["layer"] = (state["layer"], state["layer"])

    def run_gemvs():
        with torch.inference_mode():
            for _ in xs:
                gemv()

    def run_streamer():
        for x in xs:
            streamer.step(x, out=y)

    def run_cell():
        with torch.inference_mode():
            s = state["cell"]
            for x in xs:
                s = torch_cell(x, s) if lstm else (torch_cell(x, s[0]),)
            state["cell"] = s

    def run_layer():
        with torch.inference_mode():
            s = state["layer"]
            for x in xs:
                _, s = torch_layer(x.unsqueeze(1), s)  # (1, 1, D): T=1
            state["layer"] = s

    return {
        "(a) the step's GEMVs alone (torch.addmv)": run_gemvs,
        "(b) rnnkit.Streamer.step(out=)": run_streamer,
        f"(c) torch.nn.{name}Cell per step": run_cell,
        f"(d) torch.nn.{name}, T=1 per step": run_layer,
    }


def measure(runs: dict[str, Callable[[], None]], repeats: int, steps: int) -> dict[str, float]:
    """Median µs per step of each candidate, timed in interleaved rounds."""
    for run in runs.values():
        run()  # warm up
    times: dict[str, list[float]] = {label: [] for label in runs}
    for _ in range(repeats):
        for label, run in runs.items():
            start = time.perf_counter()
            run()
            times[label].append((time.perf_counter() - start) / steps)
    return {label: statistics.median(t) * 1e6 for label, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=200, help="samples per candidate")
    parser.add_argument("--steps", type=int, default=20, help="consecutive steps per sample")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, float32, B=1 D={D} H={H}, "
        f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}, "
        f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs, "
        f"median of {args.repeats} samples x {args.steps} steps"
    )
    xs = list(torch.randn(args.steps, 1, D).unbind(0))  # each (1, D)
    for name in ("LSTM", "GRU"):
        medians = measure(candidates(name, xs), args.repeats, args.steps)
        reference = next(iter(medians.values()))  # (a)
        print(f"\n{name} step, batch 1, input {D}, hidden {H}")
        print(f"  {'candidate':<44}{'median µs':>11}{'/ (a)':>8}")
        for label, us in medians.items():
            print(f"  {label:<44}{us:>11.1f}{us / reference:>8.2f}")


if __name__ == "__main__":
    main()
