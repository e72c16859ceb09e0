"""Data: batches, windows over series, scalers, synthetic series, text (tokenisers, readers, streams), and
the NTM paper's algorithmic sequences.

Importing this package loads neither pandas nor ``tokenizers``: the functions that need them import them.
"""

from rnnkit.data.algorithmic import (
    AlgorithmicDataset,
    associative_recall_example,
    copy_example,
    repeat_copy_example,
)
from rnnkit.data.batch import Batch, Stream, stack_pairs
from rnnkit.data.conll import (
    TagCodec,
    TaggedDataset,
    TaggedSentences,
    check_scheme,
    read_conll,
    to_bio,
    to_bioes,
    write_conll,
)
from rnnkit.data.corpus import TokenStream, corpus_chunks, encode_corpus
from rnnkit.data.datasets import TextDataset, pad_collate
from rnnkit.data.labels import LabelledTexts, Labels
from rnnkit.data.pairs import PairDataset, TextPairs, pad_pairs, read_pairs
from rnnkit.data.readers import read_class_folders, read_labelled, read_text, require_texts
from rnnkit.data.sampling import bucket_order, padding_fraction
from rnnkit.data.scalers import (
    MinMaxScaler,
    RobustScaler,
    Scaler,
    StandardScaler,
    make_scaler,
    scaler_from_state,
)
from rnnkit.data.synthetic import noisy_sine, seasonal_temperature, seasonal_temperature_frame
from rnnkit.data.vectors import read_vectors
from rnnkit.data.vocab import (
    WORD_PATTERN,
    BPETokenizer,
    CharTokenizer,
    TextCodec,
    Vocab,
    WordTokenizer,
    tokenizer_from_state,
)
from rnnkit.data.windows import sliding_windows, split_by_time

__all__ = [
    "WORD_PATTERN",
    "AlgorithmicDataset",
    "BPETokenizer",
    "Batch",
    "CharTokenizer",
    "LabelledTexts",
    "Labels",
    "MinMaxScaler",
    "PairDataset",
    "RobustScaler",
    "Scaler",
    "StandardScaler",
    "Stream",
    "TagCodec",
    "TaggedDataset",
    "TaggedSentences",
    "TextCodec",
    "TextDataset",
    "TextPairs",
    "TokenStream",
    "Vocab",
    "WordTokenizer",
    "associative_recall_example",
    "bucket_order",
    "check_scheme",
    "copy_example",
    "corpus_chunks",
    "encode_corpus",
    "make_scaler",
    "noisy_sine",
    "pad_collate",
    "pad_pairs",
    "padding_fraction",
    "read_class_folders",
    "read_conll",
    "read_labelled",
    "read_pairs",
    "read_text",
    "read_vectors",
    "repeat_copy_example",
    "require_texts",
    "scaler_from_state",
    "seasonal_temperature",
    "seasonal_temperature_frame",
    "sliding_windows",
    "split_by_time",
    "stack_pairs",
    "to_bio",
    "to_bioes",
    "tokenizer_from_state",
    "write_conll",
]
