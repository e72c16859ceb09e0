"""Tokenisers, vocabulary and codec: exact round trips through JSON, frequency rules, clear refusals."""

import json

import pytest

from rnnkit.data import WORD_PATTERN, BPETokenizer, CharTokenizer, TextCodec, Vocab, WordTokenizer
from rnnkit.errors import ConfigError, DataError

TRAIN = [
    "The cat sat on the mat. The dog sat on the log!",
    "A well-known cat doesn't like dogs; it's 3.14 times shyer.",
    "Dogs and cats, cats and dogs:  two spaces\tand a tab\nand a newline.",
    "Café, naïve, 😀 and 中文 too.",
] * 3
HELD_OUT = [
    "The zebra sat on the unknown mat.",
    "  leading spaces, trailing spaces  ",
    "Émoji 🚀 and 日本語 never seen before\r\n",
]


def json_round_trip(codec: TextCodec) -> TextCodec:
    return TextCodec.from_state(json.loads(json.dumps(codec.state_dict())))


# ---------------------------------------------------------------- vocabulary


def test_specials_have_fixed_ids():
    vocab = Vocab()
    assert vocab.tokens == ["<pad>", "<unk>", "<bos>", "<eos>"]
    assert (vocab.pad_id, vocab.unk_id, vocab.bos_id, vocab.eos_id) == (0, 1, 2, 3)


def test_build_orders_by_frequency_then_first_appearance():
    vocab = Vocab.build(["c", "b", "a", "b", "c", "d", "b"])  # b 3, c 2, then a and d once each (a first)
    assert vocab.tokens[4:] == ["b", "c", "a", "d"]
    assert vocab.encode(["a", "zebra", "b"]) == [6, vocab.unk_id, 4]
    assert vocab.decode([4, 5, 0]) == ["b", "c", "<pad>"]
    assert "a" in vocab and "zebra" not in vocab and len(vocab) == 8


def test_min_freq_and_max_size_counting_the_specials():
    tokens = ["a", "a", "a", "b", "b", "b", "c", "c", "d", "e"]
    assert Vocab.build(tokens, min_freq=2).tokens[4:] == ["a", "b", "c"]
    assert Vocab.build(tokens, max_size=6).tokens[4:] == ["a", "b"]  # 4 specials + 2
    assert len(Vocab.build(tokens, min_freq=1, max_size=7)) == 7
    with pytest.raises(ConfigError, match=r"max_size counts the 4 special tokens.*must be > 4; got 4"):
        Vocab.build(tokens, max_size=4)
    with pytest.raises(ConfigError, match="min_freq must be >= 1, got 0"):
        Vocab.build(tokens, min_freq=0)


def test_a_special_seen_in_the_data_keeps_its_id():
    vocab = Vocab.build(["<unk>", "x", "<unk>"])
    assert vocab.tokens == [*Vocab.SPECIALS, "x"]


def test_vocab_state_round_trips_and_refuses_bad_states():
    vocab = Vocab.build(["to", "be", "or", "not", "to", "be"])
    again = Vocab.from_state(json.loads(json.dumps(vocab.state_dict())))
    assert again.tokens == vocab.tokens and again.encode(["be", "xx"]) == vocab.encode(["be", "xx"])
    with pytest.raises(DataError, match=r"must start with the specials \['<pad>'"):
        Vocab.from_state({"tokens": ["a", "b"]})
    with pytest.raises(DataError, match="repeats tokens: 6 given, 5 distinct"):
        Vocab.from_state({"tokens": [*Vocab.SPECIALS, "a", "a"]})


@pytest.mark.parametrize("ids", [[4, 9], [-1]])
def test_decoding_an_id_outside_the_vocabulary_is_refused(ids):
    with pytest.raises(DataError, match=rf"ids \[{ids[-1]}\] are not in this vocabulary of 5 tokens"):
        Vocab(["a"]).decode(ids)


# ---------------------------------------------------------------- tokenisers


def test_word_pattern_keeps_inner_apostrophes_hyphens_and_numbers():
    tokens = WordTokenizer(lower=False).tokenize("Don't stop: it's well-known, 3.14 or 1,000 (mp3)!")
    assert tokens == [
        "Don't", "stop", ":", "it's", "well-known", ",", "3.14", "or", "1,000", "(", "mp3", ")", "!",
    ]  # fmt: skip
    assert WordTokenizer().tokenize("ROCK\u2019N\u2019ROLL 😀") == ["rock\u2019n\u2019roll", "😀"]
    assert WordTokenizer().pattern == WORD_PATTERN


def test_word_detokenize_loses_only_whitespace():
    tokenizer = WordTokenizer(lower=False)
    text = "Hello,   world (really)!\nIt costs $5, or 50% less."
    assert (
        tokenizer.detokenize(tokenizer.tokenize(text)) == "Hello, world (really)! It costs $5, or 50% less."
    )


def test_bad_word_pattern_is_a_config_error():
    with pytest.raises(ConfigError, match=r"word pattern '\(' is not a valid regex"):
        WordTokenizer(pattern="(")


@pytest.mark.parametrize("text", [*TRAIN, *HELD_OUT, ""])
def test_char_and_bpe_detokenize_inverts_tokenize_exactly(text):
    bpe = BPETokenizer.train(TRAIN, vocab_size=300)
    for tokenizer in (CharTokenizer(), bpe):
        assert tokenizer.detokenize(tokenizer.tokenize(text)) == text


def test_bpe_learns_merges_and_lower_cases():
    bpe = BPETokenizer.train(TRAIN, vocab_size=320, lower=True)
    tokens = bpe.tokenize("The CAT sat")
    assert tokens == ["the", "Ġcat", "Ġsat"]  # merged whole words; Ġ is the byte of a space
    assert bpe.detokenize(tokens) == "the cat sat"
    with pytest.raises(ConfigError, match="bpe_vocab_size must exceed the 256 byte tokens, got 100"):
        BPETokenizer.train(TRAIN, vocab_size=100)


# ---------------------------------------------------------------- codec


@pytest.mark.parametrize("level", ["char", "word", "bpe"])
def test_codec_round_trips_through_json_with_identical_encodings(level):
    codec = TextCodec.fit(TRAIN, level=level, bpe_vocab_size=300)
    again = json_round_trip(codec)
    assert again.level == level and again.vocab.tokens == codec.vocab.tokens
    for text in HELD_OUT:
        assert again.encode(text, bos=True, eos=True) == codec.encode(text, bos=True, eos=True)
        assert again.decode(codec.encode(text)) == codec.decode(codec.encode(text))


@pytest.mark.parametrize("level", ["char", "bpe"])
def test_char_and_bpe_codecs_decode_to_the_text_itself(level):
    codec = TextCodec.fit(TRAIN, level=level, bpe_vocab_size=300)
    for text in [*TRAIN, "  the cat sat, twice  "]:
        assert codec.decode(codec.encode(text, bos=True, eos=True)) == text
    assert codec.vocab.unk_id not in TextCodec.fit(TRAIN, "bpe", bpe_vocab_size=300).encode(HELD_OUT[2])


def test_word_codec_maps_unknown_words_to_unk_and_frames_with_bos_eos():
    codec = TextCodec.fit(["the cat sat", "the dog"], level="word")
    assert codec.vocab.tokens[4:] == ["the", "cat", "sat", "dog"]
    ids = codec.encode("The zebra sat", bos=True, eos=True)
    assert ids == [Vocab.bos_id, 4, Vocab.unk_id, 6, Vocab.eos_id]
    assert codec.decode([*ids, Vocab.pad_id, Vocab.pad_id]) == "the <unk> sat"
    assert codec.encode("   ") == [] and codec.encode("", bos=True) == [Vocab.bos_id]


def test_codec_options_reach_the_tokeniser_and_vocabulary():
    cased = TextCodec.fit(TRAIN, level="word", lower=False, min_freq=6)
    assert "The" in cased.vocab and "the" in cased.vocab and "Café" not in cased.vocab  # 6, 6, 3 times
    assert "The" not in TextCodec.fit(TRAIN, level="word").vocab
    assert TextCodec.fit(TRAIN, level="char").tokenizer.lower is False
    assert TextCodec.fit(TRAIN, level="word").tokenizer.lower is True
    assert len(TextCodec.fit(TRAIN, level="char", max_size=10).vocab) == 10
    bpe = TextCodec.fit(TRAIN, level="bpe", bpe_vocab_size=290)
    assert len(bpe.vocab) == 4 + 290


def test_codec_fits_from_an_iterator_read_once():
    chunks = iter(["the cat ", "sat on ", "the mat"])
    codec = TextCodec.fit(chunks, level="word")
    assert codec.vocab.tokens[4:] == ["the", "cat", "sat", "on", "mat"]


def test_codec_refusals():
    with pytest.raises(ConfigError, match=r"unknown text level 'chars'.*Did you mean 'char'\?"):
        TextCodec.fit(TRAIN, level="chars")
    with pytest.raises(ConfigError, match="size a bpe vocabulary by bpe_vocab_size"):
        TextCodec.fit(TRAIN, level="bpe", max_size=500)
    with pytest.raises(DataError, match="no token occurs 1 or more times"):
        TextCodec.fit(["", "   "], level="word")
    with pytest.raises(DataError, match="no text to learn a vocabulary from"):
        TextCodec.fit(["", "  "], level="bpe", bpe_vocab_size=300)
    with pytest.raises(DataError, match="text codec state format 99 is not the one"):
        TextCodec.from_state({"format": 99})
    with pytest.raises(ConfigError, match="unknown tokenizer kind 'sentencepiece'"):
        TextCodec.from_state({"format": 1, "tokenizer": {"kind": "sentencepiece"}, "vocab": {}})
