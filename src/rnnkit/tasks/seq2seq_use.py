"""Using a trained sequence-to-sequence model: outputs by beam search or greedy decoding, and where
the decoder looked.

    predictor = rnnkit.load("runs/g2p/bundle")
    predictor.predict("phoneme")                  # {'text': 'phoneme', 'output': 'F OW N IY M', 'score': ...}
    predictor.predict(["cat", "dog"], n_best=3)   # each with 'outputs': the 3 best, best first
    predictor.align("phoneme")                    # source and output tokens, attention (T_out, S)
    predictor.plot(["phoneme", "colonel"], "attention.png")
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from rnnkit.data import read_pairs, require_texts
from rnnkit.data.encoding import _decoded
from rnnkit.data.vocab import TextCodec
from rnnkit.errors import ConfigError, DataError, warn_user
from rnnkit.tasks import Predictor
from rnnkit.tasks.seq2seq import decode_texts


def _codecs(preprocessing: dict[str, Any]) -> tuple[TextCodec, TextCodec]:
    return (
        TextCodec.from_state(preprocessing["source_codec"]),
        TextCodec.from_state(preprocessing["target_codec"]),
    )


@torch.no_grad()
def translate(
    model: torch.nn.Module,
    texts: Sequence[str],
    preprocessing: dict[str, Any],
    beam_width: int = 5,
    length_penalty: float = 1.0,
    n_best: int = 1,
) -> list[dict[str, Any]]:
    """For each text: the best output and its log-probability; with ``n_best`` > 1, the n best."""
    require_texts(texts)
    if n_best > beam_width:
        raise ConfigError(f"n_best ({n_best}) cannot exceed beam_width ({beam_width}): raise beam_width")
    source_codec, target_codec = _codecs(preprocessing)
    _warn_unknown(source_codec, texts)
    found = decode_texts(model, list(texts), source_codec, target_codec, beam_width, length_penalty, n_best)
    results = []
    for text, hypotheses in zip(texts, found, strict=True):
        outputs = [{"output": target_codec.tokenizer.detokenize(t), "score": s} for t, s, _ in hypotheses]
        result = {"text": text, **outputs[0]}
        if n_best > 1:
            result["outputs"] = outputs
        results.append(result)
    return results


def _warn_unknown(codec: TextCodec, texts: Sequence[str]) -> None:
    unknown = [(text, codec.unknown(text)) for text in texts]
    unknown = [(text, tokens) for text, tokens in unknown if tokens]
    if unknown:
        text, tokens = unknown[0]
        shown = ", ".join(repr(t) for t in dict.fromkeys(tokens))
        warn_user(
            f"{len(unknown)} source(s) hold tokens the training data never had (e.g. {text[:40]!r}: "
            f"{shown[:120]}); the model reads them as <unk>"
        )


@torch.no_grad()
def align(model: torch.nn.Module, text: str, preprocessing: dict[str, Any], beam_width: int = 5) -> dict:
    """The best output for ``text``, its tokens and the attention weights (T_out, S): row t is where
    the decoder looked to emit output token t."""
    if getattr(model.config, "attention", "none") == "none":
        raise ConfigError("this model has no attention (model.attention: none): there is nothing to show")
    require_texts([text])
    source_codec, target_codec = _codecs(preprocessing)
    ((tokens, score, attention), *_) = decode_texts(model, [text], source_codec, target_codec, beam_width)[0]
    source = source_codec.vocab.decode(source_codec.encode(text))
    weights = attention.float().cpu().tolist() if attention is not None else None
    return {"text": text, "source": source, "output": tokens, "score": score, "attention": weights}


def plot_alignments(
    model: torch.nn.Module,
    texts: Sequence[str],
    preprocessing: dict[str, Any],
    path: str | Path,
    beam_width: int = 5,
) -> Path:
    """A heat map per text: source tokens along x, output tokens along y."""
    from rnnkit import plots

    panels = []
    for text in texts:
        found = align(model, text, preprocessing, beam_width)
        panels.append((found["source"], found["output"], found["attention"]))
    return plots.plot_alignments(panels, path)


class Seq2SeqPredictor(Predictor):
    """A trained encoder-decoder: ``predict`` outputs for sources, ``align`` and ``plot`` attention."""

    verbs = (*Predictor.verbs, "predict", "align", "plot")

    def predict(
        self,
        inputs: str | Sequence[str] | Path,
        beam_width: int | None = None,
        n_best: int = 1,
        length_penalty: float | None = None,
        **options,
    ) -> dict | list[dict]:
        """The output for one source (a dict), for each of a list, or for each source in a file (the
        first column of a pairs file, or one source a line). Beam width and length penalty default
        to the training config's (``data.beam_width``, ``data.length_penalty``); 1 is greedy."""
        if options:
            raise ConfigError(
                f"unknown option(s) {sorted(options)}: predict takes beam_width, n_best, length_penalty"
            )
        config = self.data_config
        width = config.beam_width if beam_width is None else beam_width
        penalty = config.length_penalty if length_penalty is None else length_penalty
        if width < 1 or n_best < 1:
            raise ConfigError(f"beam_width and n_best must be >= 1, got {width} and {n_best}")
        texts = (
            [inputs] if isinstance(inputs, str) else self.read(inputs) if isinstance(inputs, Path) else inputs
        )
        results = translate(self.model, list(texts), self.preprocessing, width, penalty, n_best)
        return results[0] if isinstance(inputs, str) else results

    def format(self, result: dict[str, Any]) -> str:
        """The source and its output, tab-separated; with n_best, one line per output and its score."""
        if "outputs" in result:
            return "\n".join(f"{result['text']}\t{o['output']}\t{o['score']:.4f}" for o in result["outputs"])
        return f"{result['text']}\t{result['output']}"

    def align(self, inputs: str, beam_width: int | None = None) -> dict[str, Any]:
        """One source's best output with its attention weights (rows: output tokens)."""
        width = self.data_config.beam_width if beam_width is None else beam_width
        return align(self.model, inputs, self.preprocessing, width)

    def plot(self, inputs: str | Sequence[str], path: str | Path = "attention.png") -> Path:
        """Attention heat maps of the given sources, one panel each, written to ``path``."""
        texts = [inputs] if isinstance(inputs, str) else list(inputs)
        return plot_alignments(self.model, texts, self.preprocessing, path, self.data_config.beam_width)

    def read(self, path: Path) -> list[str]:
        """The sources of a file: the source side of a pairs file, or its non-blank lines."""
        config = self.data_config
        content = _decoded(path, config.encoding)
        if path.suffix.lower() in (".csv", ".jsonl", ".json") or "\t" in content:
            pairs = read_pairs(path, None, config.source_column, config.target_column, config.encoding)
            return list(dict.fromkeys(pairs.sources))
        texts = [line.strip() for line in content.splitlines() if line.strip()]
        if not texts:
            raise DataError(f"{path} holds no text")
        return texts
