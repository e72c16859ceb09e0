"""The ``rnnkit`` command: the only code that reads argv, prints summaries and sets exit codes.

User errors (bad config, missing file, bad data) print one line and exit with 2; ``--debug``
shows the traceback instead.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rnnkit import __version__
from rnnkit.errors import RnnkitError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rnnkit", description="Recurrent neural networks on PyTorch.")
    parser.add_argument("--version", action="version", version=f"rnnkit {__version__}")
    parser.add_argument("--debug", action="store_true", help="show the full traceback on errors")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = commands.add_parser(
        "train",
        help="train from a YAML config",
        description=(
            "Train from a YAML config; key=value arguments override it (train.lr=3e-4 style). "
            "Run under torchrun for several processes: torchrun --nproc_per_node=2 -m rnnkit train CONFIG"
        ),
    )
    train.add_argument("config", type=Path, help="YAML file, e.g. configs/sine.yaml")
    train.add_argument(
        "overrides", nargs="*", metavar="KEY=VALUE", help="dotted overrides, e.g. train.epochs=5"
    )

    resume = commands.add_parser(
        "resume",
        help="continue a run from its last checkpoint",
        description="Continue RUN_DIR from checkpoints/last.pt with its config.yaml.",
    )
    resume.add_argument("run_dir", type=Path)

    evaluate = commands.add_parser("evaluate", help="evaluate a bundle on its test part or on a file")
    evaluate.add_argument("bundle", type=Path)
    evaluate.add_argument("--data", type=Path, help="a CSV file in the training data's format")

    predict = commands.add_parser("predict", help="predict with a bundle from an input file")
    predict.add_argument("bundle", type=Path)
    predict.add_argument("input", type=Path, help="forecasting: a CSV whose target column holds the history")

    info = commands.add_parser("info", help="describe a bundle")
    info.add_argument("bundle", type=Path)

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
        COMMANDS[args.command](args)
    except RnnkitError as error:
        if args.debug:
            raise
        print(f"rnnkit: error: {error}", file=sys.stderr)
        return 2
    return 0


def _train(args) -> None:
    from rnnkit.train.job import load_run_config, train_run

    train_run(load_run_config(args.config, args.overrides))


def _resume(args) -> None:
    from rnnkit.train.job import load_run_config, train_run

    config = load_run_config(args.run_dir / "config.yaml", [f"out_dir={args.run_dir}"])
    train_run(config, resume=True)


def _evaluate(args) -> None:
    from rnnkit.bundle import load_bundle
    from rnnkit.tasks import TASKS

    bundle = load_bundle(args.bundle)
    task = TASKS[bundle.config["task"]]
    if args.data is not None:
        dataset = task.dataset_from_file(args.data, bundle.preprocessing)
    else:
        dataset = task.prepare(task.DataConfig(**bundle.config["data"])).test
    print(task.metrics_table(task.evaluate(bundle.model, dataset, bundle.preprocessing)))


def _predict(args) -> None:
    from rnnkit.bundle import load_bundle
    from rnnkit.tasks import TASKS

    bundle = load_bundle(args.bundle)
    task = TASKS[bundle.config["task"]]
    series = task.read_csv_column(args.input, bundle.preprocessing["target"])
    print("step,forecast")
    for step, value in enumerate(task.forecast(bundle.model, series, bundle.preprocessing), start=1):
        print(f"{step},{value:.6g}")


def _info(args) -> None:
    from rnnkit.bundle import describe_bundle

    print(json.dumps(describe_bundle(args.bundle), indent=2, default=str))


def _sine(args) -> None:
    from rnnkit.cli import sine

    sine.run(args.out, epochs=args.epochs, lr=args.lr, seed=args.seed, device=args.device)


COMMANDS = {
    "train": _train,
    "resume": _resume,
    "evaluate": _evaluate,
    "predict": _predict,
    "info": _info,
    "sine": _sine,
}


if __name__ == "__main__":
    sys.exit(main())
