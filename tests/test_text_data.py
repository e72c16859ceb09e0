"""Text data: readers of the usual files, labels, padded and bucketed batches, streamed corpora, vectors."""

import json
import subprocess
import sys
from typing import NamedTuple

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rnnkit.data import (
    Batch,
    Labels,
    Stream,
    TextCodec,
    TextDataset,
    TokenStream,
    Vocab,
    bucket_order,
    corpus_chunks,
    encode_corpus,
    pad_collate,
    padding_fraction,
    read_class_folders,
    read_labelled,
    read_text,
    read_vectors,
    require_texts,
)
from rnnkit.data import encoding as encoding_module
from rnnkit.errors import ConfigError, DataError, ShapeError
from rnnkit.train import TrainConfig, Trainer

REVIEWS = pd.DataFrame(
    {
        "id": [1, 2, 3, 4],
        "text": ["A fine film, truly.", "NA", 'Dull; "boring" even', "Great\nfun"],
        "label": ["pos", "neg", "neg", "pos"],
    }
)
PROSE = (
    "It was the best of times, it was the worst of times,\nit was the age of wisdom,  it was the age "
    "of foolishness, it was the epoch of belief; it was the epoch of incredulity...\r\nCafé 😀 done.\n"
)


def write_table(frame: pd.DataFrame, path) -> None:
    if path.suffix == ".jsonl":
        frame.to_json(path, orient="records", lines=True, force_ascii=False)
    else:
        frame.to_csv(path, sep="\t" if path.suffix == ".tsv" else ",", index=False)


# ---------------------------------------------------------------- labelled tables


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".jsonl"])
def test_every_table_format_reads_the_same_texts_and_labels(tmp_path, suffix):
    path = tmp_path / f"reviews{suffix}"
    write_table(REVIEWS, path)
    data = read_labelled(path)
    assert data.texts == REVIEWS["text"].tolist()  # "NA" stays text; quotes and newlines survive
    assert data.labels == ["pos", "neg", "neg", "pos"] and not data.multilabel
    assert read_labelled(path, label_column=None).labels is None
    assert read_labelled(path, label_column="id").labels == ["1", "2", "3", "4"]


def test_multi_label_from_json_lists_and_from_a_separator(tmp_path):
    jsonl = tmp_path / "films.jsonl"
    rows = [{"text": "space opera", "tags": ["scifi", "drama"]}, {"text": "a quiet one", "tags": []}]
    jsonl.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    csv = tmp_path / "films.csv"
    csv.write_text("text,tags\nspace opera,scifi| drama\na quiet one,\n")
    for data in (
        read_labelled(jsonl, label_column="tags"),
        read_labelled(csv, "text", "tags", multilabel_sep="|"),
    ):
        assert data.multilabel and data.labels == [["scifi", "drama"], []]
        labels = Labels.fit(data.labels)
        assert labels.classes == ["drama", "scifi"]
        assert labels.encode(data.labels).tolist() == [[1.0, 1.0], [0.0, 0.0]]


def test_latin_1_file_reads_with_its_encoding(tmp_path):
    path = tmp_path / "old.csv"
    path.write_bytes("text,label\ncafé crème,pos\n".encode("latin-1"))
    assert read_labelled(path, encoding="latin-1").texts == ["café crème"]
    path.write_bytes(b"\xef\xbb\xbftext,label\nbom first,pos\n")  # a UTF-8 byte-order mark
    assert read_labelled(path).texts == ["bom first"]


def test_empty_texts_are_named_by_row(tmp_path):
    csv = tmp_path / "reviews.csv"
    csv.write_text('text,label\ngood,pos\n"",neg\n"   ",pos\nfine,pos\n')
    with pytest.raises(
        DataError,
        match=r"reviews\.csv: rows 2, 3 \(counted from 1 after the header\) have no text in column 'text'",
    ):
        read_labelled(csv)
    jsonl = tmp_path / "reviews.jsonl"
    jsonl.write_text('{"text": "good", "label": 1}\n{"label": 0}\n{"text": null, "label": 1}\n')
    with pytest.raises(DataError, match=r"reviews\.jsonl: lines 2, 3 have no text in column 'text'"):
        read_labelled(jsonl)


def test_missing_column_names_the_nearest(tmp_path):
    path = tmp_path / "reviews.csv"
    write_table(REVIEWS.rename(columns={"label": "labels"}), path)
    with pytest.raises(DataError, match=r"reviews\.csv has no column 'label' \(did you mean 'labels'\?\)"):
        read_labelled(path)
    jsonl = tmp_path / "reviews.jsonl"
    jsonl.write_text('{"review": "good", "label": "pos"}\n')
    with pytest.raises(DataError, match=r"no column 'text'.*its columns are \['review', 'label'\]"):
        read_labelled(jsonl)


def test_undecodable_bytes_name_the_file_offset_and_fix(tmp_path):
    path = tmp_path / "reviews.csv"
    path.write_bytes(b"text,label\ngood,pos\ncaf\xe9,neg\n")
    with pytest.raises(
        DataError,
        match=r"reviews\.csv is not valid utf-8: byte 0xe9 at offset 23 \(line 3\).*encoding='latin-1'",
    ):
        read_labelled(path)


def test_other_table_refusals(tmp_path):
    csv = tmp_path / "reviews.csv"
    csv.write_text("text,label\ngood,pos\nbad,\n")
    with pytest.raises(
        DataError,
        match=r"reviews\.csv: rows 2 \(counted from 1 after the header\) have no label in column 'label'",
    ):
        read_labelled(csv)
    jsonl = tmp_path / "mixed.jsonl"
    jsonl.write_text('{"text": "a", "label": ["x"]}\n{"text": "b", "label": "y"}\n')
    with pytest.raises(
        DataError, match=r"mixed\.jsonl: .*mixes label lists .* \(single at lines 2\): give every row a list"
    ):
        read_labelled(jsonl)
    jsonl.write_text('{"text": "a", "label": "x"}\n{"text": "b", label: "y"}\n')
    with pytest.raises(DataError, match=r"mixed\.jsonl line 2 is not valid JSON"):
        read_labelled(jsonl)
    with pytest.raises(DataError, match=r"cannot read labelled texts from reviews\.xlsx"):
        read_labelled(tmp_path / "reviews.xlsx")
    with pytest.raises(ConfigError, match="unknown text encoding 'utf-9'"):
        read_labelled(csv, encoding="utf-9")
    (tmp_path / "header.csv").write_text("text,label\n")
    with pytest.raises(DataError, match="has no rows"):
        read_labelled(tmp_path / "header.csv")


# ---------------------------------------------------------------- a folder per class


@pytest.fixture
def imdb(tmp_path):
    root = tmp_path / "train"
    files = {
        "pos/10_9.txt": "Loved it.",
        "pos/2_8.txt": "Great fun<br />really.",
        "neg/0_1.txt": "Awful.",
        "unsup/5_0.txt": "Unlabelled review.",
        "pos/notes.md": "not a review",
    }
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    (root / "empty").mkdir()
    return root


def test_class_folders_read_sorted_and_pick_classes(imdb):
    data = read_class_folders(imdb, classes=["pos", "neg"])
    assert data.labels == ["neg", "pos", "pos"]
    assert data.texts == ["Awful.", "Loved it.", "Great fun<br />really."]  # files by name: 10_9 < 2_8
    assert sorted(set(read_class_folders(imdb).labels)) == ["neg", "pos", "unsup"]  # "empty" holds no .txt


def test_class_folder_refusals(imdb):
    with pytest.raises(DataError, match=r"class 'Pos' is not a subfolder .*did you mean 'pos'"):
        read_class_folders(imdb, classes=["Pos", "neg"])
    with pytest.raises(DataError, match=r"class 'empty' holds no \.txt files"):
        read_class_folders(imdb, classes=["empty", "neg"])
    (imdb / "neg" / "1_2.txt").write_text("  \n")
    with pytest.raises(DataError, match=r"1 files hold no text .*neg/1_2\.txt"):
        read_class_folders(imdb, classes=["neg", "pos"])
    (imdb / "neg" / "1_2.txt").write_bytes(b"ok \xff\xfe")
    with pytest.raises(DataError, match=r"neg/1_2\.txt is not valid utf-8: byte 0xff at offset 3 \(line 1\)"):
        read_class_folders(imdb, classes=["neg", "pos"])
    with pytest.raises(DataError, match="is not a folder"):
        read_class_folders(imdb / "missing")


# ---------------------------------------------------------------- labels


def test_labels_sort_numbers_by_value_and_round_trip():
    labels = Labels.fit(["10", "2", "1", "2"])
    assert labels.classes == ["1", "2", "10"] and labels.encode(["10", "1"]).tolist() == [2, 0]
    assert labels.encode(["2"]).dtype == torch.long and labels.decode([2, 1]) == ["10", "2"]
    again = Labels.from_state(json.loads(json.dumps(labels.state_dict())))
    assert again.classes == labels.classes and not again.multilabel


def test_unknown_label_names_it_and_the_known_ones():
    labels = Labels.fit(["pos", "neg"])
    with pytest.raises(
        DataError,
        match=r"unknown label 'poss' \(example 1\) \(did you mean 'pos'\?\); "
        r"the known labels are \['neg', 'pos'\]",
    ):
        labels.encode(["neg", "poss"])
    with pytest.raises(DataError, match=r"a single class \['pos'\]: a classifier needs at least 2"):
        Labels.fit(["pos", "pos"])


def test_require_texts_names_the_blank_ones():
    require_texts(["fine"])
    with pytest.raises(DataError, match=r"the input: text 2 is empty or only whitespace \(counted from 1\)"):
        require_texts(["fine", " \n"])


# ---------------------------------------------------------------- datasets, padding, buckets


def test_dataset_items_and_padded_batches():
    dataset = TextDataset([[5, 6, 7], [8], [9, 10]], torch.tensor([1, 0, 1]))
    assert dataset.lengths.tolist() == [3, 1, 2] and len(dataset) == 3
    ids, target = dataset[-1]
    assert ids.dtype == torch.long and ids.tolist() == [9, 10] and target.item() == 1
    batch = pad_collate([dataset[i] for i in range(3)])
    assert isinstance(batch, Batch)
    assert batch.inputs.tolist() == [[5, 6, 7], [8, 0, 0], [9, 10, 0]]
    assert batch.lengths.tolist() == [3, 1, 2] and batch.targets.tolist() == [1, 0, 1]
    assert pad_collate([dataset[1]], pad_id=7).inputs.tolist() == [[8]]


def test_dataset_refusals():
    with pytest.raises(DataError, match=r"sequences 1 \(counted from 0\) have no tokens"):
        TextDataset([[4], []], [0, 1])
    with pytest.raises(ShapeError, match="2 sequences but 3 targets"):
        TextDataset([[4], [5]], [0, 1, 1])
    with pytest.raises(IndexError):
        TextDataset([[4]], [0])[1]
    with pytest.raises(DataError, match="cannot collate an empty list"):
        pad_collate([])


@settings(max_examples=60, deadline=None)
@given(
    lengths=st.lists(st.integers(1, 40), min_size=0, max_size=120),
    batch_size=st.integers(1, 9),
    pool=st.integers(1, 5),
    seed=st.integers(0, 3),
    data=st.data(),
)
def test_bucketing_never_drops_or_repeats_an_example(lengths, batch_size, pool, seed, data):
    order = data.draw(st.permutations(range(len(lengths))))
    padded = order + order[: data.draw(st.integers(0, 2))]  # a distributed sampler repeats a few indices
    assert sorted(bucket_order(padded, lengths, batch_size, pool, seed)) == sorted(padded)
    bucketed = bucket_order(order, lengths, batch_size, pool, seed)
    assert sorted(bucketed) == sorted(order)
    pool_of = {index: position // (batch_size * pool) for position, index in enumerate(order)}
    for start in range(0, len(bucketed), batch_size):  # each batch: one pool's run of sorted lengths
        batch = bucketed[start : start + batch_size]
        assert len({pool_of[i] for i in batch}) == 1
        mine = sorted(lengths[i] for i in order if pool_of[i] == pool_of[batch[0]])
        got = sorted(lengths[i] for i in batch)
        assert any(mine[k : k + len(got)] == got for k in range(len(mine) - len(got) + 1))
        if len(batch) < batch_size:  # the partial batch comes last, from the last pool
            assert start + len(batch) == len(order) and pool_of[batch[0]] == pool_of[order[-1]]


def test_bucketing_lowers_padding_and_is_seeded():
    rng = np.random.default_rng(0)
    lengths = np.concatenate([rng.integers(1, 10, 300), rng.integers(50, 400, 100)])  # tweets and reviews
    order = rng.permutation(len(lengths)).tolist()
    bucketed = bucket_order(order, lengths, batch_size=16, pool=20, seed=1)
    random_waste = padding_fraction(order, lengths, 16)
    bucket_waste = padding_fraction(bucketed, lengths, 16)
    print(f"padding waste: random batches {random_waste:.1%}, bucketed {bucket_waste:.1%}")
    assert bucket_waste < random_waste / 3  # about 21% against 81%
    assert bucket_order(order, lengths, 16, 20, seed=1) == bucketed
    assert bucket_order(order, lengths, 16, 20, seed=2) != bucketed
    with pytest.raises(ConfigError, match="batch_size and pool must be >= 1"):
        bucket_order(order, lengths, 0)


# ---------------------------------------------------------------- streamed corpora


@pytest.fixture
def prose(tmp_path):
    path = tmp_path / "prose.txt"
    path.write_bytes(PROSE.encode())
    return path


def test_chunks_are_cut_before_whitespace_and_join_to_the_text(prose):
    text = read_text(prose)
    assert text == PROSE.replace("\r\n", "\n")  # universal newlines
    chunks = list(corpus_chunks(prose, chunk_chars=7))
    assert "".join(chunks) == text and len(chunks) > 10
    assert all(not c[-1].isspace() for c in chunks[:-1]) and all(c[0].isspace() for c in chunks[1:])


@pytest.mark.parametrize("level", ["char", "word", "bpe"])
@pytest.mark.parametrize("chunk_chars", [1, 7, 1 << 20])
def test_encoded_corpus_equals_encoding_the_whole_text(tmp_path, prose, level, chunk_chars):
    codec = TextCodec.fit(corpus_chunks(prose, chunk_chars=5), level=level, bpe_vocab_size=300)
    assert (
        codec.vocab.tokens == TextCodec.fit([read_text(prose)], level=level, bpe_vocab_size=300).vocab.tokens
    )
    ids = encode_corpus(prose, codec, tmp_path / "new" / "prose.ids", chunk_chars=chunk_chars)
    assert isinstance(ids, np.memmap) and ids.dtype == np.uint16 and not ids.flags.writeable
    assert ids.tolist() == codec.encode(read_text(prose))
    assert not list(tmp_path.glob("new/*.part"))


def test_corpus_ids_widen_for_a_large_vocabulary_and_refuse_empty_files(tmp_path, prose):
    codec = TextCodec(TextCodec.fit(["x"], "word").tokenizer, Vocab(str(i) for i in range(70_000)))
    ids = encode_corpus(prose, codec, tmp_path / "wide.ids")
    assert ids.dtype == np.uint32 and ids.tolist() == codec.encode(read_text(prose))
    (tmp_path / "blank.txt").write_text(" \n\n ")
    with pytest.raises(DataError, match=r"blank\.txt holds no text"):
        encode_corpus(tmp_path / "blank.txt", codec, tmp_path / "blank.ids")
    with pytest.raises(DataError, match=r"blank\.txt holds no text"):
        read_text(tmp_path / "blank.txt")


@pytest.mark.parametrize("block", [3, 1 << 20])
def test_streamed_undecodable_byte_names_its_offset(tmp_path, monkeypatch, block):
    monkeypatch.setattr(encoding_module, "_BLOCK", block)
    path = tmp_path / "book.txt"
    path.write_bytes("é1\né2\n".encode() + b"ba \xc3( byte")  # offset 11: a lead byte, no follower
    # with 3-byte blocks the lead byte ends a block and the decoder holds it over to the next
    with pytest.raises(DataError, match=r"book\.txt is not valid utf-8: byte 0xc3 at offset 11 \(line 3\)"):
        list(corpus_chunks(path, chunk_chars=2))
    with pytest.raises(DataError, match=r"book\.txt is not valid utf-8: byte 0xc3 at offset 11"):
        encode_corpus(path, TextCodec.fit(["x"], "char"), tmp_path / "book.ids")


def stream_of(n: int, batch_size: int, seq_len: int, drop_last: bool = False) -> TokenStream:
    return TokenStream(np.arange(n, dtype=np.uint16), batch_size, seq_len, drop_last)


def test_token_stream_batches_shift_targets_and_continue_rows():
    stream = stream_of(50, batch_size=3, seq_len=4)  # 16 columns a row, 2 tokens dropped; 15 input steps
    assert isinstance(stream, Stream) and len(stream) == 4 and stream.tokens == 3 * 15
    batches = list(stream)
    for i, batch in enumerate(batches):
        Stream.check(batch, i)
        assert batch.inputs.dtype == batch.targets.dtype == torch.int64
        assert torch.equal(batch.targets[:, :-1], batch.inputs[:, 1:])  # the next token
        assert torch.equal(batch.targets[:, -1], batch.inputs[:, -1] + 1)
        assert batch.reset.tolist() == [i == 0] * 3
    rows = torch.cat([b.inputs for b in batches], dim=1)  # (B, 15): batches continue row by row
    assert torch.equal(rows, torch.arange(48).view(3, 16)[:, :15])
    assert batches[-1].inputs.shape == (3, 3)  # the short last batch is kept
    assert torch.equal(stream[-1].inputs, batches[-1].inputs) and len(stream[1:3]) == 2
    with pytest.raises(IndexError):
        stream[4]


def test_token_stream_drop_last_and_refusals():
    stream = stream_of(50, batch_size=3, seq_len=4, drop_last=True)
    assert len(stream) == 3 and stream.tokens == 3 * 12
    assert all(b.inputs.shape == (3, 4) for b in stream)
    with pytest.raises(DataError, match="5 tokens are too few for batch_size 3 and seq_len 4"):
        stream_of(5, 3, 4)
    with pytest.raises(ShapeError, match="token ids must be a 1-D integer array"):
        TokenStream(np.zeros((2, 5), dtype=np.int64), 1, 2)


class State(NamedTuple):
    h: torch.Tensor


class TinyLM(torch.nn.Module):
    """Embedding, GRU, linear head: enough of the task-model contract to train over a stream."""

    def __init__(self, vocab: int, hidden: int = 8) -> None:
        super().__init__()
        self.embed, self.gru = (
            torch.nn.Embedding(vocab, hidden),
            torch.nn.GRU(hidden, hidden, batch_first=True),
        )
        self.head = torch.nn.Linear(hidden, vocab)

    def initial_state(self, batch_size: int):
        return State(torch.zeros(1, batch_size, self.gru.hidden_size))  # (1, B, H)

    def loss(self, inputs, targets, lengths=None, state=None):
        outputs, h = self.gru(self.embed(inputs), None if state is None else state[0])  # (B, T, H)
        logits = self.head(outputs)  # (B, T, V)
        return torch.nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten()), State(h)

    forward = loss


def test_trainer_reads_a_memory_mapped_token_stream(tmp_path, prose):
    codec = TextCodec.fit(corpus_chunks(prose), level="char")
    stream = TokenStream(encode_corpus(prose, codec, tmp_path / "ids"), batch_size=4, seq_len=8)
    torch.manual_seed(0)
    model = TinyLM(len(codec.vocab))
    config = TrainConfig(epochs=3, batch_size=4, optimizer={"name": "adam", "lr": 0.03}, progress=False)
    history = Trainer(model, config).fit(stream, stream)
    assert len(history) == 3 and history[-1]["val_loss"] < history[0]["val_loss"]


# ---------------------------------------------------------------- pretrained vectors


@pytest.mark.parametrize("header", [True, False])
def test_vectors_fill_found_words_and_draw_the_rest(tmp_path, header):
    vocab = Vocab(["the", "cat", "zebra"])
    lines = ["The 9 9 9", "the 1 2 3", "cat -1 0.5 2", "dog 7 7 7", "The 8 8 8"]
    path = tmp_path / "vectors.txt"
    path.write_text(("5 3\n" if header else "") + "\n".join(lines) + " \n")
    weights, found = read_vectors(path, vocab)
    assert weights.shape == (len(vocab), 3) and weights.dtype == torch.float32 and found == 2
    assert weights[vocab.ids["the"]].tolist() == [1, 2, 3]  # the exact match beats "The"
    assert weights[vocab.ids["cat"]].tolist() == [-1, 0.5, 2]
    assert weights[vocab.pad_id].abs().sum() == 0 and weights[vocab.ids["zebra"]].abs().sum() > 0
    again, _ = read_vectors(path, vocab)
    assert torch.equal(again, weights)  # seeded


def test_vectors_case_variant_and_refusals(tmp_path):
    path = tmp_path / "vectors.txt"
    path.write_text("The 1 2\nTHE 3 4\n")
    weights, found = read_vectors(path, Vocab(["the"]))
    assert found == 1 and weights[4].tolist() == [1, 2]  # the first case variant in the file
    path.write_text("the 1 2\ncat 1 2 3\n")
    with pytest.raises(
        DataError, match=r"vectors\.txt line 2 \('cat'\) has 3 numbers, but the vectors have 2"
    ):
        read_vectors(path, Vocab(["the"]))
    path.write_text("2 3\nthe 1 2 3\ncat 1 2\n")
    with pytest.raises(DataError, match=r"line 3 \('cat'\) has 2 numbers, but the vectors have 3"):
        read_vectors(path, Vocab(["the"]))
    path.write_text("the 1 x\n")
    with pytest.raises(DataError, match=r"line 1 \('the'\) holds a value that is not a number"):
        read_vectors(path, Vocab(["the"]))
    path.write_text("the\n")
    with pytest.raises(DataError, match=r"line 1 \('the'\) holds a word and no numbers"):
        read_vectors(path, Vocab(["the"]))
    path.write_text("dog 1 2\n")
    with pytest.raises(DataError, match=r"none of the vocabulary's 5 tokens has a vector in vectors\.txt"):
        read_vectors(path, Vocab(["the"]))


# ---------------------------------------------------------------- import cost


def test_importing_the_data_package_loads_no_pandas_or_tokenizers():
    code = "import sys, rnnkit.data; print(sorted({'pandas', 'tokenizers'} & set(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
