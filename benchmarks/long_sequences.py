"""Training on long sequences: time and peak memory as T grows, one process per measurement.

For T = 1k, 4k, 16k, 64k steps (batch 8, input 8, an LSTM of hidden 128 with a per-step linear head,
float32, 2 threads, one epoch over one batch), three ways to take the gradient:
  - tbptt: truncated BPTT in chunks of 100 steps (the trainer's ``tbptt=100``);
  - checkpointed: full BPTT, chunks of 1024 steps under activation checkpointing
    (``checkpoint_activations=1024``);
  - full: plain full BPTT, every step's activations kept.
Each cell of the table is a fresh process, so its peak resident memory (ru_maxrss) is its own; the
"training" column is the peak minus the resident memory just before training (torch, the model and
the data already loaded). The ratio compares each T with T = 1k of the same way.

    python benchmarks/long_sequences.py [--lengths 1024 4096 16384 65536]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

B, D, H = 8, 8, 128
MODES = {"tbptt": {"tbptt": 100}, "checkpointed": {"checkpoint_activations": 1024}, "full": {}}


def child(mode: str, T: int) -> None:
    import torch
    from torch import nn
    from torch.utils.data import TensorDataset

    import rnnkit
    from rnnkit.train import TrainConfig, Trainer

    torch.set_num_threads(2)

    class Tagger(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.rnn, self.head = rnnkit.LSTM(D, H), nn.Linear(H, 1)

        def initial_state(self, batch_size):
            return self.rnn.initial_state(batch_size)

        def loss(self, inputs, targets, lengths=None, state=None):
            out = self.rnn(inputs, state, lengths)
            return nn.functional.mse_loss(self.head(out.outputs), targets), out.state

    torch.manual_seed(0)
    x = torch.randn(B, T, D)
    data = TensorDataset(x, x[..., :1].cumsum(1) / T)
    config = TrainConfig(
        epochs=1, batch_size=B, shuffle=False, progress=False, tensorboard=False, **MODES[mode]
    )
    trainer = Trainer(Tagger(), config)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    start = time.perf_counter()
    trainer.fit(data)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": seconds, "peak": peak, "training": peak - before, "steps": trainer.step}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[1024, 4096, 16384, 65536])
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES))
    parser.add_argument("--child", nargs=2, metavar=("MODE", "T"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], int(args.child[1]))
        return
    print(
        f"batch {B}, input {D}, LSTM hidden {H}, float32, 2 threads, "
        f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}; one process per row"
    )
    print(
        f"{'mode':<14}{'T':>8}{'steps':>7}{'seconds':>10}{'peak MiB':>10}"
        f"{'training MiB':>14}{'peak / 1k':>11}"
    )
    for mode in args.modes:
        first = None
        for T in args.lengths:
            out = subprocess.run(
                [sys.executable, __file__, "--child", mode, str(T)],
                capture_output=True,
                text=True,
                check=True,
            )
            r = json.loads(out.stdout.strip().splitlines()[-1])
            first = first or r["peak"]
            print(
                f"{mode:<14}{T:>8}{r['steps']:>7}{r['seconds']:>10.2f}{r['peak']:>10.0f}{r['training']:>14.0f}"
                f"{r['peak'] / first:>11.2f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
