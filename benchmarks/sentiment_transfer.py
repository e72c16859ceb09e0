"""Sentiment with and without a pretrained language model: the shipped configs, seed by seed.

Rotten Tomatoes snippets (about 12,800, the configs' split: a stratified fifth for testing). For
each seed, two runs of the task's own pipeline (``train_run``):

- ``from scratch``: configs/sentiment.yaml (a 2-layer BiLSTM over words, attention pooling);
- ``ULMFiT``: configs/sentiment_ulmfit.yaml, from ``runs/lm_pretrain/bundle`` (``make lm-pretrain``):
  the language model adapted to the training part's snippets and the plot summaries (``data.adapt``),
  then the classifier fine-tuned from it with the recipe. The adaptation is made once, in the first
  seed's run (or taken from ``--adapted``: a bundle an equal adaptation made), and the later seeds
  start from it: the seeds vary the classifier's training, not the language model.

Beside them, the baselines of the same split (deterministic): TF-IDF logistic regression and NBSVM,
and ``+ NBSVM``: each recurrent model's probability averaged with NBSVM's (not a product option; it
shows how far the errors differ). The table is test accuracy, then the mean over the seeds.

    python benchmarks/sentiment_transfer.py [--seeds 0 1 2] [--adapted PATH] [--out DIR]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np

from rnnkit.run import load_run_config, train_run
from rnnkit.tasks import get_task

ROOT = Path(__file__).resolve().parents[1]
SCRATCH = ROOT / "configs" / "sentiment.yaml"
ULMFIT = ROOT / "configs" / "sentiment_ulmfit.yaml"
PRETRAINED = ROOT / "runs" / "lm_pretrain" / "bundle"  # where ULMFIT looks for it


def nbsvm_probabilities(prepared) -> np.ndarray:
    """NBSVM's probability of class 1 for each test text (as rnnkit.metrics.nbsvm_baseline fits it)."""
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.linear_model import LogisticRegression

    from rnnkit.metrics import log_count_ratio

    train, test = prepared.texts["train"], prepared.texts["test"]
    labels = np.asarray(prepared.labels.encode(train.labels))
    vectorizer = CountVectorizer(ngram_range=(1, 2), binary=True)
    features = vectorizer.fit_transform(train.texts)
    ratio = log_count_ratio(features, labels == 1)
    classifier = LogisticRegression(max_iter=2000).fit(features.multiply(ratio).tocsr(), labels == 1)
    return classifier.predict_proba(vectorizer.transform(test.texts).multiply(ratio).tocsr())[:, 1]


def model_probabilities(run_dir: Path, config) -> tuple[np.ndarray, np.ndarray]:
    """The trained model's probability of class 1 on the test part, and the true classes."""
    import rnnkit
    from rnnkit.tasks.classify import probabilities

    bundle = rnnkit.load(run_dir / "bundle")
    prepared = get_task("classify").prepare(config.data, preprocessing=bundle.preprocessing)
    p = np.asarray(probabilities(bundle.model, prepared.test, prepared.codec.vocab.pad_id))
    return (p[:, 1] if p.ndim == 2 else p.ravel()), np.asarray(
        prepared.labels.encode(prepared.texts["test"].labels)
    )


def run(name: str, config) -> dict:
    started = time.perf_counter()
    metrics = train_run(config, overwrite=True, log=lambda line: print(f"  [{name}] {line}", flush=True))
    p, truth = model_probabilities(Path(config.out_dir), config)
    return {"metrics": metrics, "p": p, "truth": truth, "seconds": time.perf_counter() - started}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--adapted", default=None, help="an adapted language model's bundle to start from")
    parser.add_argument("--out", default="/tmp/sentiment_transfer")
    args = parser.parse_args()
    out = Path(args.out)
    if not (PRETRAINED / "bundle.json").is_file():
        raise SystemExit(f"no language model at {PRETRAINED}: `make lm-pretrain` makes it")
    rows, baselines, nbsvm = [], None, None
    adapted = args.adapted
    for seed in args.seeds:
        common = [f"train.seed={seed}", "train.progress=false", "train.tensorboard=false"]
        scratch = load_run_config(SCRATCH, [*common, f"out_dir={out}/scratch-{seed}"])
        transfer = [*common, f"out_dir={out}/ulmfit-{seed}"]
        if adapted is not None:
            transfer += [f"data.encoder_from={adapted}", "data.adapt.epochs=0"]
        ulmfit = load_run_config(ULMFIT, transfer)
        results = {"scratch": run(f"scratch {seed}", scratch), "ulmfit": run(f"ULMFiT {seed}", ulmfit)}
        if adapted is None:
            adapted = str(out / f"ulmfit-{seed}" / "language_model" / "bundle")
        if nbsvm is None:
            nbsvm = nbsvm_probabilities(get_task("classify").prepare(scratch.data))
            baselines = results["scratch"]["metrics"]
        row = {"seed": seed}
        for name, result in results.items():
            row[name] = result["metrics"]["model"]["accuracy"]
            both = (result["p"] + nbsvm) / 2 > 0.5
            row[f"{name}+nbsvm"] = float((both == result["truth"]).mean())
            row[f"{name} s"] = result["seconds"]
        rows.append(row)
        print(f"seed {seed}: " + ", ".join(f"{k} {v:.4f}" for k, v in row.items() if k != "seed"), flush=True)
    bow = baselines["bag_of_words"]["accuracy"]
    nb = baselines["nbsvm"]["accuracy"]
    columns = ["scratch", "ulmfit", "scratch+nbsvm", "ulmfit+nbsvm"]
    print(
        f"\ntest accuracy, Rotten Tomatoes, {len(rows)} seeds (TF-IDF logistic regr. {bow:.4f}, "
        f"NBSVM {nb:.4f})"
    )
    print(f"  {'seed':<6}" + "".join(f"{c:>16}" for c in columns))
    for row in rows:
        print(f"  {row['seed']:<6}" + "".join(f"{row[c]:>16.4f}" for c in columns))
    means = {c: statistics.mean(row[c] for row in rows) for c in columns}
    print(f"  {'mean':<6}" + "".join(f"{means[c]:>16.4f}" for c in columns))
    print(f"  {'- NBSVM':<6}" + "".join(f"{100 * (means[c] - nb):>+15.2f}p" for c in columns))
    seconds = {c: statistics.mean(row[f"{c} s"] for row in rows) for c in ("scratch", "ulmfit")}
    print(f"wall time a run: from scratch {seconds['scratch']:.0f} s, ULMFiT {seconds['ulmfit']:.0f} s")


if __name__ == "__main__":
    main()
