"""The ``rnnkit`` command: the only code that reads argv, prints summaries and sets exit codes.

Each command parses its arguments, makes one call (a run, or one verb of ``rnnkit.load(...)``) and
prints what it returns. User errors (bad config, missing file, bad data) print one line and exit
with 2; Ctrl-C prints what was saved and exits with 130; a closed pipe (``| head``) ends quietly.
``--debug``, before or after the command, shows the traceback instead.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from pathlib import Path

from rnnkit.errors import RnnkitError
from rnnkit.version import __version__


def _parser() -> argparse.ArgumentParser:
    debug = argparse.ArgumentParser(add_help=False)
    debug.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")
    parser = argparse.ArgumentParser(prog="rnnkit", description="Recurrent neural networks on PyTorch.")
    parser.add_argument("--version", action="version", version=f"rnnkit {__version__}")
    parser.add_argument("--debug", action="store_true", help="show the full traceback on errors")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help: str, description: str | None = None) -> argparse.ArgumentParser:
        return commands.add_parser(name, help=help, description=description or help, parents=[debug])

    train = command(
        "train",
        "train from a YAML config",
        "Train from a YAML config; KEY=VALUE arguments override it (e.g. train.optimizer.lr=3e-4; "
        "`rnnkit config TASK` lists every key). Several processes: "
        "torchrun --nproc_per_node=2 -m rnnkit train CONFIG",
    )
    train.add_argument("config", type=Path, help="YAML file, e.g. configs/seattle_weather.yaml")
    train.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="e.g. train.epochs=5")
    train.add_argument(
        "--overwrite", action="store_true", help="replace a run already in out_dir (default: write out_dir-2)"
    )

    resume = command("resume", "continue a run from its last checkpoint")
    resume.add_argument("run_dir", type=Path)

    config = command("config", "list every config key of a task with its type, default and description")
    config.add_argument("task", help="forecast, classify, language_model, or a registered task")

    evaluate = command(
        "evaluate",
        "evaluate a bundle on its test part or on a file",
        "Metrics of the model beside the baselines on the test part of the training data, or on "
        "all of --data (a forecaster backtests from the first step with a full lookback).",
    )
    evaluate.add_argument("bundle", type=Path)
    evaluate.add_argument(
        "--data", type=Path, help="a file laid out as the training data (same columns, folder layout or text)"
    )
    evaluate.add_argument("--json", action="store_true", help="print the metrics as JSON")

    forecast = command(
        "forecast",
        "forecast past the end of a file",
        "Write the next steps after the end of every series in --input as CSV (with interval "
        "bounds for probabilistic models) and optionally a plot.",
    )
    forecast.add_argument("bundle", type=Path)
    forecast.add_argument("--input", type=Path, required=True, help="history in the training data's columns")
    forecast.add_argument("--horizon", type=int, default=None, help="steps ahead (default: the model's)")
    forecast.add_argument("--level", type=float, default=0.8, help="interval level (default: 0.8)")
    forecast.add_argument(
        "--missing",
        choices=["error", "ffill", "interpolate", "zero"],
        help="fill holes in --input (default: the training config's data.missing)",
    )
    forecast.add_argument("--output", type=Path, default=None, help="CSV path (default: print to stdout)")
    forecast.add_argument("--plot", type=Path, default=None, help="PNG of history and forecast")

    predict = command(
        "predict",
        "predict with a bundle: forecasts, labels of texts, ...",
        "What the bundle's task predicts: forecasters, the forecast at the model's horizon from INPUT "
        "(a table); text models (classifiers, taggers, seq2seq), the output for each --text, each text in "
        "INPUT (a table's text or source column, or a text file's lines), or each line of standard input.",
    )
    predict.add_argument("bundle", type=Path)
    predict.add_argument("input", type=Path, nargs="?", help="a table or a text file")
    predict.add_argument("--text", action="append", help="an input text (repeatable)")
    predict.add_argument("--json", action="store_true", help="JSON lines with everything predicted")
    predict.add_argument("--beam-width", type=int, help="seq2seq: beam search width (1: greedy)")
    predict.add_argument("--n-best", type=int, help="seq2seq: the n best outputs of each input")

    generate = command(
        "generate",
        "continue a prompt with a language-model bundle, or compose with a music bundle",
        "Generate up to --max-tokens tokens after --prompt, token by token with the state carried; "
        "greedy, or sampled with temperature, top-k and top-p. A music model composes --max-tokens "
        "steps (after --prompt, a score file, if given) and writes them to --output as MIDI.",
    )
    generate.add_argument("bundle", type=Path)
    generate.add_argument(
        "--prompt", help='the text to continue, e.g. "The cat sat on the" (music: a score to continue)'
    )
    generate.add_argument("--output", type=Path, help="music: the MIDI file to write")
    generate.add_argument("--max-tokens", type=int, default=None, help="tokens (music: steps); default 50")
    generate.add_argument("--temperature", type=float, default=1.0)
    generate.add_argument("--top-k", type=int, default=None)
    generate.add_argument("--top-p", type=float, default=None)
    generate.add_argument("--greedy", action="store_true", help="always the most likely token")
    generate.add_argument("--seed", type=int, default=None, help="for repeatable samples")
    generate.add_argument("--samples", type=int, default=1, help="how many continuations")
    generate.add_argument(
        "--beam-width", type=int, default=None, help="the most likely continuation by a beam this wide"
    )

    serve = command(
        "serve",
        "serve a bundle over HTTP",
        "Answer /v1/predict, /v1/forecast, /v1/generate and /v1/sessions for the bundle (FastAPI; "
        "the schema at /docs) until interrupted. Requests above the limits get a 4xx that names them.",
    )
    serve.add_argument("bundle", type=Path)
    serve.add_argument("--host", default="127.0.0.1", help="the address to listen on (default: loopback)")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--max-batch", type=int, default=64, help="inputs in one request")
    serve.add_argument("--max-length", type=int, default=10_000, help="characters, steps or rows of an input")
    serve.add_argument("--max-tokens", type=int, default=512, help="tokens one generation may ask for")
    serve.add_argument("--max-body-bytes", type=int, default=1_000_000)
    serve.add_argument("--timeout", type=float, default=30.0, help="seconds a model call may take")
    serve.add_argument("--max-sessions", type=int, default=100, help="streaming sessions open at once")
    serve.add_argument("--session-ttl", type=float, default=600.0, help="seconds an idle session lives")
    serve.add_argument("--threads", type=int, default=1, help="torch's threads for a model call (default 1)")
    serve.add_argument(
        "--no-batching", action="store_true", help="call the model for each request alone (no micro-batching)"
    )

    info = command("info", "describe a bundle: task, verbs, model config, metrics, files")
    info.add_argument("bundle", type=Path)

    export = command(
        "export",
        "export a bundle's model to ONNX, checked against its eager outputs",
        "Write <graph>.onnx (dynamic batch and time), metadata.json and the bundle's preprocessing into "
        "--output, after onnxruntime has matched the eager model on a padded batch of mixed lengths.",
    )
    export.add_argument("bundle", type=Path)
    export.add_argument("--format", default="onnx", help="onnx (the only one so far)")
    export.add_argument("--output", type=Path, help="the directory to write (default: BUNDLE/../onnx)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args, rest = parser.parse_known_args(argv)
    if rest and hasattr(args, "overrides") and all("=" in r and not r.startswith("-") for r in rest):
        args.overrides += rest  # KEY=VALUE after an option: `train CONFIG --overwrite train.epochs=5`
    elif rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    warnings.formatwarning = _one_line
    try:
        COMMANDS[args.command](args)
        sys.stdout.flush()
    except RnnkitError as error:
        if args.debug:
            raise
        print(f"rnnkit: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as error:
        if args.debug:
            raise
        print(f"\nrnnkit: {error or 'interrupted'}", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (`| head`): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    return 0


def _one_line(message, category, filename, lineno, line=None) -> str:
    return f"rnnkit: warning: {message}\n"


def _train(args) -> None:
    from rnnkit.run import load_run_config, train_run

    train_run(load_run_config(args.config, args.overrides), overwrite=args.overwrite)


def _resume(args) -> None:
    from rnnkit.run import load_run_config, train_run

    config = load_run_config(args.run_dir / "config.yaml")
    config.out_dir = str(args.run_dir)
    train_run(config, resume=True)


def _config(args) -> None:
    from rnnkit.config import describe_keys
    from rnnkit.models import config_class
    from rnnkit.run import run_config_type
    from rnnkit.tasks import get_task

    task = get_task(args.task)
    rows = [row for row in describe_keys(run_config_type(task)) if not row[0].startswith("model")]
    fixed = {*task.model_keys(task.data_config.model_construct(), None).fixed, *task.fitted_keys}
    rows.append(("model.name", "str", repr(task.default_model), "a registered model"))
    rows += [
        (key, kind, "(set by the data)" if key[6:] in fixed else default, text)
        for key, kind, default, text in describe_keys(config_class(task.default_model), "model.")
        if key != "model.name"
    ]
    rows = [row for row in rows if row[0] != "data.kind"]  # the task sets it
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    print(f"keys of a {task.name!r} run config (override any as KEY=VALUE after the config file):")
    for key, kind, default, text in rows:
        line = f"  {key:<{widths[0]}}  {kind:<{widths[1]}}  {default:<{widths[2]}}  {text}"
        print(line.rstrip())


def _evaluate(args) -> None:
    import rnnkit

    report = rnnkit.load(args.bundle).evaluate(args.data)
    print(json.dumps(report, indent=2) if args.json else report)


def _forecast(args) -> None:
    import rnnkit

    predictor = rnnkit.load(args.bundle)
    table = predictor.forecast(args.input, horizon=args.horizon, level=args.level, missing=args.missing)
    if args.output is None:
        print(table.to_csv(index=False), end="")
    else:
        table.to_csv(args.output, index=False)
        print(f"wrote {len(table)} forecasts to {args.output}")
    if args.plot is not None:
        print(f"wrote {predictor.plot(args.input, table, args.plot, level=args.level)}")


def _predict(args) -> None:
    import rnnkit

    predictor = rnnkit.load(args.bundle)
    inputs = args.text or (args.input if args.input is not None else _stdin_lines())
    options = {"beam_width": args.beam_width, "n_best": args.n_best}
    results = predictor.predict(inputs, **{k: v for k, v in options.items() if v is not None})
    if hasattr(results, "to_csv"):  # a table, e.g. a forecast
        print(results.to_csv(index=False), end="")
        return
    for result in results:
        print(json.dumps(result, default=str) if args.json else predictor.format(result))


def _stdin_lines() -> list[str]:
    """Texts, one per non-blank line, from standard input."""
    if sys.stdin.isatty():
        raise RnnkitError("no text: give --text TEXT, a file of texts, or pipe texts to standard input")
    raw = sys.stdin.buffer.read()
    try:
        texts = [line.strip() for line in raw.decode("utf-8").splitlines() if line.strip()]
    except UnicodeDecodeError as error:
        raise RnnkitError(
            f"standard input is not UTF-8 (byte {error.start}: {raw[error.start : error.start + 1]!r}); "
            "convert it, e.g. iconv -f latin1 -t utf-8"
        ) from None
    if not texts:
        raise RnnkitError("standard input holds no text")
    return texts


def _generate(args) -> None:
    import rnnkit

    if args.beam_width is not None and args.samples > 1:
        raise RnnkitError("--beam-width gives the one most likely continuation: drop --samples")
    predictor = rnnkit.load(args.bundle)
    music = "write_midi" in predictor.verbs
    if not music and args.output is not None:
        raise RnnkitError("--output writes a music model's MIDI; a language model prints its text")
    if not music and args.prompt is None:
        raise RnnkitError('a language model continues a prompt: give --prompt "..."')
    for i in range(args.samples):
        seed = None if args.seed is None else args.seed + i
        options = dict(temperature=args.temperature, top_k=args.top_k, top_p=args.top_p, greedy=args.greedy)
        if args.beam_width is not None:  # sampling options given with it are refused by generate
            options["beam_width"] = args.beam_width
        if music:
            options["output"] = args.output
            if args.samples > 1 and args.output is not None:  # piece.mid -> piece_1.mid, piece_2.mid
                options["output"] = args.output.with_name(f"{args.output.stem}_{i + 1}{args.output.suffix}")
        max_tokens = args.max_tokens if args.max_tokens is not None or music else 50
        print(predictor.generate(args.prompt, max_tokens, seed=seed, **options))


def _serve(args) -> None:
    from pydantic import ValidationError

    from rnnkit.serve import Limits, serve

    try:
        limits = Limits(
            max_batch=args.max_batch, max_length=args.max_length, max_tokens=args.max_tokens,
            max_body_bytes=args.max_body_bytes, timeout_s=args.timeout, max_sessions=args.max_sessions,
            session_ttl_s=args.session_ttl, batching=not args.no_batching,
        )  # fmt: skip
    except ValidationError as error:
        problem, renamed = error.errors()[0], {"timeout_s": "timeout", "session_ttl_s": "session_ttl"}
        flag = renamed.get(problem["loc"][0], problem["loc"][0])
        raise RnnkitError(f"--{flag.replace('_', '-')}: {problem['msg']}") from None
    if args.threads < 1:
        raise RnnkitError(f"--threads must be >= 1, got {args.threads}")
    serve(args.bundle, args.host, args.port, limits, args.threads)


def _info(args) -> None:
    import rnnkit
    from rnnkit.bundle import describe_bundle
    from rnnkit.errors import DataError

    try:
        description = rnnkit.load(args.bundle).describe()
    except DataError as error:  # damaged weights: describe what is there and say what is wrong
        description = {**describe_bundle(args.bundle), "problem": str(error)}
    print(json.dumps(description, indent=2, default=str))


def _export(args) -> None:
    from rnnkit.errors import unknown_name

    if args.format != "onnx":
        raise unknown_name("export format", args.format, ["onnx"])
    from rnnkit.bundle import load_bundle, read_bundle_config
    from rnnkit.export import export_onnx
    from rnnkit.tasks import get_task

    get_task(read_bundle_config(args.bundle).get("task"))  # registers the task's models
    bundle = load_bundle(args.bundle)  # the model in eval mode
    result = export_onnx(bundle, args.output or args.bundle.parent / "onnx")
    for check in result.checks:
        print(check)
    print(f"wrote {result.path}: {', '.join(result.files)}")


COMMANDS = {
    "train": _train,
    "resume": _resume,
    "config": _config,
    "evaluate": _evaluate,
    "forecast": _forecast,
    "predict": _predict,
    "generate": _generate,
    "serve": _serve,
    "info": _info,
    "export": _export,
}


if __name__ == "__main__":
    sys.exit(main())
