"""Grapheme-to-phoneme (configs/g2p.yaml on CMUdict): training time per epoch and decoding speed.

Measured in one run, float32, 1 thread (``--threads``): the model steps through its decoder one
token at a time over small matrices, where a second thread buys little and, with another process on
the machine, costs much (here 4.3 s a training step at 2 threads against 0.6-0.8 s at 1; see
benchmarks/README.md, "Threads and shared machines").
  - training: ``--steps`` optimiser steps (forward, loss, backward, gradient clipping, the config's
    optimiser) on real shuffled batches of the task's prepared training part, with the config's
    model and batch size, after 3 warm-up steps; the epoch time is the mean step extrapolated to the
    epoch's batch count (the trainer's evaluations and checkpoints are not counted);
  - decoding: words per second on ``--words`` test words (a seeded sample), batched as
    ``rnnkit.tasks.seq2seq.decode_texts`` does (sorted by length, 256 a batch), by greedy search,
    by the config's beam (width 5, length penalty 1) and by the same beam with ``exhaustive=True``
    (the stopping rule before: only once no open beam could beat the best finished one at max_len),
    timed in interleaved rounds, with the share of words right (the output is one of the word's
    pronunciations).
The decoder is the bundle given by ``--bundle`` (a trained G2P bundle), otherwise the model timed
above, trained on to ``--train-steps`` steps in all, a small slice of CMUdict: far from converged,
it decodes unlike a trained model (its beams finish later), as the output says.

    python benchmarks/g2p.py [--bundle runs/g2p/bundle] [--steps 50] [--train-steps 150]
                             [--words 500] [--repeats 3] [--threads 1]
"""

from __future__ import annotations

import argparse
import math
import random
import time
from pathlib import Path

import torch
from timing import interleaved_medians, setting
from torch.utils.data import DataLoader

import rnnkit
from rnnkit.decoding import beam_search, greedy_search
from rnnkit.models import build_model
from rnnkit.run import load_run_config, resolve_model
from rnnkit.tasks.seq2seq import prepare
from rnnkit.train.schedules import make_optimizer

CONFIG = Path(__file__).resolve().parent.parent / "configs" / "g2p.yaml"


def training(config, prepared, steps: int, train_steps: int) -> tuple[torch.nn.Module, list[float]]:
    """The config's model after ``train_steps`` steps, and the times of ``steps`` of them."""
    torch.manual_seed(config.train.seed)
    model = build_model(resolve_model(config, prepared)).train()
    optimiser = make_optimizer(model.parameters(), config.train.optimizer)
    loader = DataLoader(prepared.train, config.train.batch_size, shuffle=True, collate_fn=prepared.collate)
    times, batches = [], (batch for _ in iter(int, 1) for batch in loader)  # epoch after epoch
    for i in range(max(train_steps, steps + 3)):
        batch = next(batches)
        start = time.perf_counter()
        loss, _ = model.loss(batch.inputs, batch.targets, lengths=batch.lengths)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.train.clip_grad_norm)
        optimiser.step()
        if 3 <= i < steps + 3:
            times.append(time.perf_counter() - start)
    return model.eval(), times


def decode(model, words: list[str], codec, search, **options) -> list[list[int]]:
    """Each word's best output ids, batched as decode_texts does: sorted by length, 256 a batch."""
    encoded = [codec.encode(w) for w in words]
    order = sorted(range(len(words)), key=lambda i: len(encoded[i]))
    outputs: list = [None] * len(words)
    for start in range(0, len(order), 256):
        rows = order[start : start + 256]
        ids = [torch.tensor(encoded[i]) for i in rows]
        source = torch.nn.utils.rnn.pad_sequence(ids, batch_first=True)  # (B, S)
        found = search(model, source, torch.tensor([len(x) for x in ids]), **options)
        for i, hypotheses in zip(rows, found, strict=True):
            outputs[i] = hypotheses[0].tokens
    return outputs


def report_training(config, prepared, times: list[float]) -> None:
    batches = math.ceil(len(prepared.train) / config.train.batch_size)
    mean, median = sum(times) / len(times), sorted(times)[len(times) // 2]
    print(
        f"\nTraining, batch {config.train.batch_size}: {mean * 1e3:.0f} ms per step (mean of {len(times)}, "
        f"median {median * 1e3:.0f}); {batches} batches per epoch -> {mean * batches / 60:.1f} min per "
        f"epoch, extrapolated from the {len(times)} steps"
    )


def report_decoding(model, prepared, config, words: int, repeats: int) -> None:
    sample = random.Random(0).sample(
        range(len(prepared.test_sources)), min(words, len(prepared.test_sources))
    )
    texts = [prepared.test_sources[i] for i in sample]
    encode = prepared.target_codec.encode
    references = [{tuple(encode(t)) for t in prepared.test_references[i]} for i in sample]
    width, beam = config.data.beam_width, dict(beam_width=config.data.beam_width)
    beam["length_penalty"] = config.data.length_penalty
    searches = {
        "greedy": (greedy_search, {}),
        f"beam {width}": (beam_search, beam),
        f"beam {width}, exhaustive=True": (beam_search, {**beam, "exhaustive": True}),
    }
    outputs = {}

    def run(name: str) -> None:
        search, options = searches[name]
        outputs[name] = decode(model, texts, prepared.source_codec, search, **options)

    medians = interleaved_medians({name: lambda name=name: run(name) for name in searches}, repeats, warmup=0)
    print(
        f"{len(texts)} test words, median of {repeats}; right: the output is one of the word's pronunciations"
    )
    print(f"  {'search':<26}{'words/s':>9}{'s':>8}{'right':>8}")
    for name, seconds in medians.items():
        right = sum(tuple(o) in r for o, r in zip(outputs[name], references, strict=True)) / len(texts)
        print(f"  {name:<26}{len(texts) / seconds:>9.0f}{seconds:>8.1f}{right:>8.1%}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bundle", type=Path, default=None, help="a trained G2P bundle to decode with")
    parser.add_argument("--steps", type=int, default=50, help="optimiser steps timed")
    parser.add_argument("--train-steps", type=int, default=150, help="steps in all, without --bundle")
    parser.add_argument("--words", type=int, default=500, help="test words decoded")
    parser.add_argument("--repeats", type=int, default=3, help="decoding rounds")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(setting())
    config = load_run_config(CONFIG)
    start = time.perf_counter()
    prepared = prepare(config.data)
    print(f"prepared CMUdict in {time.perf_counter() - start:.1f} s: {len(prepared.train)} training pairs")
    trained = 0 if args.bundle else args.train_steps
    model, times = training(config, prepared, args.steps, trained)
    report_training(config, prepared, times)
    if args.bundle:
        predictor = rnnkit.load(args.bundle)
        model, prepared = predictor.model, prepare(predictor.data_config, predictor.preprocessing)
        print(f"\nDecoding with the bundle {args.bundle}: ", end="")
    else:
        steps = max(trained, args.steps + 3)
        print(
            f"\nDecoding with the model above after {steps} steps ({steps * config.train.batch_size} pairs, "
            f"{steps * config.train.batch_size / len(prepared.train):.2f} epoch): barely trained, it decodes "
            "unlike a trained G2P model (--bundle to decode with one);\n",
            end="",
        )
    report_decoding(model, prepared, config, args.words, args.repeats)


if __name__ == "__main__":
    main()
