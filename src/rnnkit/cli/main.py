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

    evaluate = commands.add_parser(
        "evaluate",
        help="evaluate a bundle on its test part or on a file",
        description="Metrics of the model beside the baselines on the test part of "
        "the training data, or on all of --data.",
    )
    evaluate.add_argument("bundle", type=Path)
    evaluate.add_argument(
        "--data",
        type=Path,
        help="data laid out as the training data: a table with the same columns (forecasting, text "
        "classification), a folder per class, or a plain-text file (language models)",
    )

    forecast = commands.add_parser(
        "forecast",
        help="forecast past the end of a file",
        description="Write the next steps after the end of every series in --input "
        "as CSV (with interval bounds for probabilistic models) and a plot.",
    )
    forecast.add_argument("bundle", type=Path)
    forecast.add_argument("--input", type=Path, required=True, help="history in the training data's columns")
    forecast.add_argument("--horizon", type=int, default=None, help="steps ahead (default: the model's)")
    forecast.add_argument("--output", type=Path, default=None, help="CSV path (default: print to stdout)")
    forecast.add_argument("--plot", type=Path, default=None, help="PNG of history and forecast")

    predict = commands.add_parser(
        "predict",
        help="predict with a bundle: forecasts, or labels of texts",
        description="Forecasting bundles: the same as forecast with the model's horizon, from INPUT. "
        "Classifier bundles: the label of each text given with --text, or of each line of INPUT, "
        "or of each line of standard input.",
    )
    predict.add_argument("bundle", type=Path)
    predict.add_argument("input", type=Path, nargs="?", help="a table (forecasting) or a text file")
    predict.add_argument("--text", action="append", help="a text to classify (repeatable)")
    predict.add_argument(
        "--json", action="store_true", help="print JSON lines with every class's probability"
    )

    generate = commands.add_parser(
        "generate",
        help="continue a prompt with a language-model bundle",
        description="Generate up to --max-tokens tokens after --prompt, token by token with the state "
        "carried; greedy, or sampled with temperature, top-k and top-p.",
    )
    generate.add_argument("bundle", type=Path)
    generate.add_argument("--prompt", required=True, help='the text to continue, e.g. "The cat sat on the"')
    generate.add_argument("--max-tokens", type=int, default=50)
    generate.add_argument("--temperature", type=float, default=1.0)
    generate.add_argument("--top-k", type=int, default=None)
    generate.add_argument("--top-p", type=float, default=None)
    generate.add_argument("--greedy", action="store_true", help="always the most likely token")
    generate.add_argument("--seed", type=int, default=None, help="for repeatable samples")
    generate.add_argument("--samples", type=int, default=1, help="how many continuations")

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

    config = load_run_config(args.run_dir / "config.yaml")
    config.out_dir = str(args.run_dir)
    train_run(config, resume=True)


def _evaluate(args) -> None:
    from rnnkit.bundle import load_bundle
    from rnnkit.tasks import TASKS

    bundle = load_bundle(args.bundle)
    task = TASKS[bundle.config["task"]]
    prepared = task.prepare_file(task.DataConfig(**bundle.config["data"]), bundle.preprocessing, args.data)
    print(task.metrics_table(task.evaluate(bundle.model, prepared)))


def _forecast(args, bundle=None) -> None:
    from rnnkit import plots
    from rnnkit.bundle import load_bundle
    from rnnkit.data.tables import read_table
    from rnnkit.tasks import TASKS

    bundle = bundle or load_bundle(args.bundle)
    if bundle.config["task"] != "forecast":
        raise RnnkitError(f"forecast needs a forecasting bundle; {args.bundle} is {bundle.config['task']!r}")
    task = TASKS[bundle.config["task"]]
    config = task.DataConfig(**bundle.config["data"])
    frame = read_table(args.input)
    table = task.forecast_frame(bundle.model, frame, config, bundle.preprocessing, args.horizon)
    if args.output is None:
        print(table.to_csv(index=False), end="")
    else:
        table.to_csv(args.output, index=False)
        print(f"wrote {len(table)} forecasts to {args.output}")
    if args.plot is not None:
        target, time = config.targets[0], config.time_column
        history = frame.tail(3 * bundle.preprocessing["lookback"])
        x_hist = _times(history[time]) if time else history.index
        x = table["time"] if time else range(len(frame), len(frame) + len(table))
        band = (table[f"{target}_lower"], table[f"{target}_upper"]) if f"{target}_lower" in table else None
        plots.plot_forecast(
            (x_hist, history[target]),
            None,
            {"forecast": table[target]},
            x,
            args.plot,
            band=band,
            band_label="80% interval",
            title=f"{target}: forecast",
            ylabel=target,
        )
        print(f"wrote {args.plot}")


def _times(values):
    import pandas as pd

    return pd.to_datetime(values)


def _predict(args) -> None:
    from rnnkit.bundle import load_bundle

    bundle = load_bundle(args.bundle)
    task = bundle.config["task"]
    if task == "forecast":
        if args.input is None or args.text:
            raise RnnkitError("a forecasting bundle predicts from a table: rnnkit predict BUNDLE FILE")
        args.horizon, args.output, args.plot = None, None, None
        _forecast(args, bundle)
        return
    if task != "classify":
        raise RnnkitError(f"predict serves forecasting and classifier bundles; for {task!r} use generate")
    from rnnkit.tasks.classify import predict_texts

    texts = args.text or _read_lines(args.input)
    for text, result in zip(texts, predict_texts(bundle.model, texts, bundle.preprocessing), strict=True):
        if args.json:
            print(json.dumps({"text": text, **result}))
        else:
            label = "|".join(result["label"]) if isinstance(result["label"], list) else result["label"]
            print(f"{label}\t{result['probability']:.3f}\t{text}")


def _read_lines(path: Path | None) -> list[str]:
    """Texts, one per line, from ``path`` or standard input; blank lines are skipped."""
    if path is None:
        if sys.stdin.isatty():
            raise RnnkitError("no text: give --text TEXT, a file of texts, or pipe texts to standard input")
        raw = sys.stdin.buffer.read()
        where = "standard input"
    else:
        if not path.is_file():
            raise RnnkitError(f"{path} is not a file")
        raw, where = path.read_bytes(), str(path)
    try:
        content = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise RnnkitError(
            f"{where} is not UTF-8 (byte {error.start}: {raw[error.start : error.start + 1]!r}); "
            "convert it, e.g. iconv -f latin1 -t utf-8"
        ) from None
    texts = [line.strip() for line in content.splitlines() if line.strip()]
    if not texts:
        raise RnnkitError(f"{where} holds no text")
    return texts


def _generate(args) -> None:
    from rnnkit.bundle import load_bundle
    from rnnkit.data.vocab import TextCodec
    from rnnkit.decoding import generate_text

    bundle = load_bundle(args.bundle)
    if bundle.config["task"] != "language_model":
        raise RnnkitError(
            f"generate needs a language-model bundle; {args.bundle} is {bundle.config['task']!r}"
        )
    codec = TextCodec.from_state(bundle.preprocessing["codec"])
    for i in range(args.samples):
        seed = None if args.seed is None else args.seed + i
        text = generate_text(
            bundle.model,
            codec,
            args.prompt,
            args.max_tokens,
            temperature=args.temperature,
            top_k=args.top_k,
            top_p=args.top_p,
            greedy=args.greedy,
            seed=seed,
        )
        joiner = " " if codec.level == "word" and text and not text[0].isspace() else ""
        print(args.prompt + joiner + text)


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
    "forecast": _forecast,
    "predict": _predict,
    "generate": _generate,
    "info": _info,
    "sine": _sine,
}


if __name__ == "__main__":
    sys.exit(main())
