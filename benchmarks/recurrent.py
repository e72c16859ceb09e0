"""rnnkit layers against torch.nn, measured side by side in one process.

Prints medians (ms) and ratios for a training step (forward, backward, Adam) and for inference,
float32, 2 threads, at two shapes:
  - small: batch 64, 100 steps, input 32, hidden 256, one layer, loss on the outputs;
  - lm: a language model, batch 32, 200 steps, embedding 128, hidden 512, 2 layers, vocabulary
    10,000 (embedding -> recurrent layers -> linear -> cross-entropy).
Candidates: rnnkit LSTM/GRU on the fused path vs torch.nn.LSTM/GRU (target ratio <= 1.05); rnnkit's
layer-norm LSTM on the cell path vs fused torch.nn.LSTM (targets <= 1.25 training, <= 1.5
inference) and vs a plain Python loop over torch.nn.LSTMCell (target: rnnkit >= 1.5x faster).
Candidates are timed in interleaved rounds so drift on a shared machine hits all of them alike.

    python benchmarks/recurrent.py [--shapes small lm] [--repeats 15] [--threads 2]
"""

from __future__ import annotations

import argparse

import torch
from timing import measure, setting
from torch import nn

import rnnkit

SHAPES = {
    "small": dict(batch=64, steps=100, features=32, hidden=256, layers=1, vocab=None),
    "lm": dict(batch=32, steps=200, features=128, hidden=512, layers=2, vocab=10_000),
}


class LSTMCellLoop(nn.Module):
    """The plain Python loop a user would write: nn.LSTMCell per layer, stepped over the time axis."""

    def __init__(self, features: int, hidden: int, layers: int) -> None:
        super().__init__()
        self.cells = nn.ModuleList(nn.LSTMCell(features if i == 0 else hidden, hidden) for i in range(layers))

    def forward(self, x):
        for cell in self.cells:
            h = c = x.new_zeros(x.shape[0], cell.hidden_size)
            outputs = []
            for x_t in x.unbind(1):
                h, c = cell(x_t, (h, c))
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


def table(title: str, medians: dict[str, float], reference: str) -> None:
    print(f"\n{title}")
    print(f"  {'candidate':<46}{'median ms':>10}{'ratio':>8}")
    for name, ms in medians.items():
        print(f"  {name:<46}{ms:>10.2f}{ms / medians[reference]:>8.2f}")


def run_shape(name: str, shape: dict, repeats: int) -> None:
    B, T, D, H, L, V = (shape[k] for k in ("batch", "steps", "features", "hidden", "layers", "vocab"))
    x = torch.randint(V, (B, T)) if V else torch.randn(B, T, D)
    print(f"\n== shape {name}: B={B} T={T} D={D} H={H} layers={L}" + (f" vocabulary={V}" if V else ""))
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
    for mode, wrap in (("training step", train_step), ("inference", infer_step)):
        ln_lstm = rnnkit.LSTM(D, H, num_layers=L, layer_norm=True)
        candidates = {
            "torch.nn.LSTM (fused)": wrap(Task(nn.LSTM(D, H, num_layers=L, batch_first=True), shape)),
            "Python loop over torch.nn.LSTMCell": wrap(Task(LSTMCellLoop(D, H, L), shape)),
            f"rnnkit.LSTM(layer_norm=True) (path={ln_lstm.path})": wrap(Task(ln_lstm, shape)),
        }
        table(f"Layer-norm LSTM {mode}, cell path", measure(candidates, x, repeats), "torch.nn.LSTM (fused)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shapes", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"{setting()}, median of {args.repeats}")
    for name in args.shapes:
        run_shape(name, SHAPES[name], args.repeats)


if __name__ == "__main__":
    main()
