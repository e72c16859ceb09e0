"""rnnkit layers against torch.nn, measured side by side in one process.

Prints medians (ms) and ratios for a training step (forward, backward, Adam) and for inference,
float32, 2 threads, at two shapes:
  - small: batch 64, 100 steps, input 32, hidden 256, one layer, loss on the outputs;
  - lm: a language model, batch 32, 200 steps, embedding 128, hidden 512, 2 layers, vocabulary
    10,000 (embedding -> recurrent layers -> linear -> cross-entropy).
Candidates: rnnkit LSTM/GRU on the fused path vs torch.nn.LSTM/GRU (target ratio <= 1.05); rnnkit's
layer-norm LSTM and GRU on the cell path vs fused torch.nn.LSTM/GRU (targets <= 1.25 training, <= 1.5
inference) and vs a plain Python loop over torch.nn.LSTMCell/GRUCell (target: rnnkit >= 1.5x faster).
The cell path runs twice: through the C++ loop (src/rnnkit/kernels: driver.h with lstm_loop.cpp,
gru_loop.cpp, built on first use; their build or load times are printed first) and through the
pure-torch loop it falls back to.
The "floor" row is the task with a free stand-in for the recurrent layers: no recurrent layer can
beat it.
Candidates are timed in interleaved rounds so drift on a shared machine hits all of them alike.

    python benchmarks/recurrent.py [--shapes small lm] [--repeats 15] [--threads 2] [--tables fused cell]
"""

from __future__ import annotations

import argparse
import copy
import os

import torch
from timing import measure, setting
from torch import nn

import rnnkit
from rnnkit.kernels import build, loop_info

SHAPES = {
    "small": dict(batch=64, steps=100, features=32, hidden=256, layers=1, vocab=None),
    "lm": dict(batch=32, steps=200, features=128, hidden=512, layers=2, vocab=10_000),
}


class CellLoop(nn.Module):
    """The plain Python loop a user would write: nn.LSTMCell or nn.GRUCell per layer, over the time axis."""

    def __init__(self, cell: type[nn.Module], features: int, hidden: int, layers: int) -> None:
        super().__init__()
        self.cells = nn.ModuleList(cell(features if i == 0 else hidden, hidden) for i in range(layers))

    def forward(self, x):
        for cell in self.cells:
            h = c = x.new_zeros(x.shape[0], cell.hidden_size)
            outputs = []
            for x_t in x.unbind(1):
                if isinstance(cell, nn.LSTMCell):
                    h, c = cell(x_t, (h, c))
                else:
                    h = cell(x_t, h)
                outputs.append(h)
            x = torch.stack(outputs, 1)
        return x


class Task(nn.Module):
    """The recurrent layer inside the shape's task: a loss on its outputs, or a language model."""

    def __init__(self, rnn: nn.Module, shape: dict) -> None:
        super().__init__()
        self.rnn, self.vocab = rnn, shape["vocab"]
        if self.vocab:
            self.embed = nn.Embedding(self.vocab, shape["features"])
            self.out = nn.Linear(shape["hidden"], self.vocab)

    def forward(self, x):
        inputs = self.embed(x) if self.vocab else x
        out = self.rnn(inputs)
        out = out[0] if isinstance(out, tuple) else out
        if not self.vocab:
            return out.square().mean()
        logits = self.out(out[:, :-1])  # (B, T - 1, V)
        return nn.functional.cross_entropy(logits.flatten(0, 1), x[:, 1:].flatten())


def train_step(module):
    optimiser = torch.optim.Adam(module.parameters(), lr=1e-3)

    def step(x):
        optimiser.zero_grad(set_to_none=True)
        module(x).backward()
        optimiser.step()

    return step


def infer_step(module):
    module.eval()

    def step(x):
        with torch.inference_mode():
            module(x)

    return step


def pure_torch(step):
    """The same step with the C++ loop switched off, as RNNKIT_NO_EXTENSION=1 does."""

    def run(x):
        old = os.environ.get(build.DISABLE)
        os.environ[build.DISABLE] = "1"
        try:
            step(x)
        finally:
            os.environ.pop(build.DISABLE)
            if old is not None:
                os.environ[build.DISABLE] = old

    return run


def describe_extension(kind: str, info: build.ExtensionInfo) -> str:
    if not info.available:
        return f"C++ {kind} loop unavailable ({info.reason}): both cell-path rows run the pure-torch loop"
    how = "built" if info.compiled else "loaded from the cache"
    return f"C++ {kind} loop {info.name}: {how} in {info.seconds:.1f} s ({info.path})"


def table(title: str, medians: dict[str, float], reference: str) -> None:
    print(f"\n{title}")
    print(f"  {'candidate':<56}{'median ms':>10}{'ratio':>8}")
    for name, ms in medians.items():
        print(f"  {name:<56}{ms:>10.2f}{ms / medians[reference]:>8.2f}")


class NoRecurrence(nn.Module):
    """A free stand-in for the recurrent layers: zeros (B, T, H). The task around it is the floor."""

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.hidden = hidden
        self.unused = nn.Parameter(torch.zeros(1))  # the optimiser wants one; it never gets a gradient

    def forward(self, x):
        return x.new_zeros(*x.shape[:2], self.hidden).requires_grad_(torch.is_grad_enabled())


def fused_tables(shape: dict, x: torch.Tensor, repeats: int) -> None:
    D, H, L = shape["features"], shape["hidden"], shape["layers"]
    for kind, ours, theirs in (("LSTM", rnnkit.LSTM, nn.LSTM), ("GRU", rnnkit.GRU, nn.GRU)):
        reference = theirs(D, H, num_layers=L, batch_first=True)
        mine = ours(D, H, num_layers=L)
        mine.load_state_dict(reference.state_dict())
        for mode, wrap in (("training step", train_step), ("inference", infer_step)):
            torch.manual_seed(0)
            a, b = Task(reference, shape), Task(mine, shape)
            b.load_state_dict(a.state_dict())
            medians = measure(
                {f"torch.nn.{kind}": wrap(a), f"rnnkit.{kind} (path={mine.path})": wrap(b)}, x, repeats
            )
            table(f"{kind} {mode}, fused path", medians, f"torch.nn.{kind}")


def cell_tables(shape: dict, x: torch.Tensor, repeats: int) -> None:
    D, H, L = shape["features"], shape["hidden"], shape["layers"]
    kinds = (("LSTM", rnnkit.LSTM, nn.LSTM, nn.LSTMCell), ("GRU", rnnkit.GRU, nn.GRU, nn.GRUCell))
    for kind, ours_class, theirs, theirs_cell in kinds:
        fused, loop, floor = (
            f"torch.nn.{kind} (fused)",
            f"Python loop over torch.nn.{kind}Cell",
            "no recurrent layer (floor)",
        )
        for mode, wrap in (("training step", train_step), ("inference", infer_step)):
            layer = ours_class(D, H, num_layers=L, layer_norm=True)
            name = f"rnnkit.{kind}(layer_norm=True) (path={layer.path}"
            ours = f"{name}, C++ loop)"
            candidates = {
                fused: wrap(Task(theirs(D, H, num_layers=L, batch_first=True), shape)),
                loop: wrap(Task(CellLoop(theirs_cell, D, H, L), shape)),
                ours: wrap(Task(layer, shape)),
                f"{name}, pure torch)": pure_torch(wrap(Task(copy.deepcopy(layer), shape))),
                floor: wrap(Task(NoRecurrence(H), shape)),
            }
            medians = measure(candidates, x, repeats)
            table(f"Layer-norm {kind} {mode}, cell path", medians, fused)
            speedup, bound = medians[loop] / medians[ours], medians[loop] / medians[floor]
            target = f"target >= 1.5x, free layer {bound:.2f}x"
            print(f"  C++ loop vs {kind}Cell loop: {speedup:.2f}x faster ({target})")


def run_shape(name: str, shape: dict, repeats: int, tables: list[str]) -> None:
    B, T, D, H, L, V = (shape[k] for k in ("batch", "steps", "features", "hidden", "layers", "vocab"))
    x = torch.randint(V, (B, T)) if V else torch.randn(B, T, D)
    print(f"\n== shape {name}: B={B} T={T} D={D} H={H} layers={L}" + (f" vocabulary={V}" if V else ""))
    if "fused" in tables:
        fused_tables(shape, x, repeats)
    if "cell" in tables:
        cell_tables(shape, x, repeats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shapes", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tables", nargs="+", default=["fused", "cell"], choices=["fused", "cell"])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"{setting()}, median of {args.repeats}")
    print(describe_extension("LSTM", loop_info("lstm")))
    print(describe_extension("GRU", loop_info("gru")))
    for name in args.shapes:
        run_shape(name, SHAPES[name], args.repeats, args.tables)


if __name__ == "__main__":
    main()
