"""The ``rnnkit`` command: the only code that reads argv, prints summaries and sets exit codes."""

from __future__ import annotations

import argparse
import sys

from rnnkit import __version__
from rnnkit.errors import RnnkitError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rnnkit", description="Recurrent neural networks on PyTorch.")
    parser.add_argument("--version", action="version", version=f"rnnkit {__version__}")
    parser.add_argument("--debug", action="store_true", help="show the full traceback on errors")
    commands = parser.add_subparsers(dest="command", required=True)
    sine = commands.add_parser("sine", help="train the seeds' sine-wave example and write plots")
    sine.add_argument("--out", default="runs/sine", help="output directory (default: runs/sine)")
    sine.add_argument("--epochs", type=int, default=200)
    sine.add_argument("--lr", type=float, default=0.01)
    sine.add_argument("--seed", type=int, default=0)
    sine.add_argument("--device", default=None, help="cpu, cuda, mps (default: the best available)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "sine":
            from rnnkit.cli import sine

            sine.run(args.out, epochs=args.epochs, lr=args.lr, seed=args.seed, device=args.device)
    except RnnkitError as error:
        if args.debug:
            raise
        print(f"rnnkit: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
