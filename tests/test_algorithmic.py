"""The NTM paper's algorithmic tasks: generators and the bits-wrong metric on hand-made examples, the
bit-sequence model's masked loss, `cell: ntm` in the encoder keys, and tiny runs end to end."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from helpers import write_run_config

import rnnkit
from rnnkit.config import validate
from rnnkit.data.algorithmic import (
    AlgorithmicDataset,
    associative_recall_example,
    copy_example,
    normalised_repeats,
    num_steps,
    repeat_copy_example,
)
from rnnkit.errors import ConfigError, DataError
from rnnkit.models import build_model
from rnnkit.models.algorithmic import IGNORE
from rnnkit.models.encoder import MemoryEncoderConfig, build_encoder
from rnnkit.run import load_run_config, train_run
from rnnkit.tasks import get_task
from rnnkit.tasks.algorithmic import AlgorithmicDataConfig, bits_wrong, collate

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def t(rows):
    return torch.tensor(rows, dtype=torch.float32)


# --- generators on hand-made examples ------------------------------------------------------------


def test_copy_puts_the_delimiter_after_the_sequence_and_asks_for_it_back_on_the_masked_steps():
    example = copy_example([[1, 0, 1], [0, 1, 1]])
    assert torch.equal(
        example.inputs,
        t([[1, 0, 1, 0], [0, 1, 1, 0], [0, 0, 0, 1], [0, 0, 0, 0], [0, 0, 0, 0]]),  # delimiter at step L = 2
    )
    assert torch.equal(example.targets, t([[0, 0, 0], [0, 0, 0], [0, 0, 0], [1, 0, 1], [0, 1, 1]]))
    assert example.mask.tolist() == [False, False, False, True, True]


def test_repeat_copy_reads_the_normalised_repeats_and_ends_with_the_marker():
    example = repeat_copy_example([[1, 0], [0, 1]], repeats=2, max_repeats=3)  # T = (2 + 1) * 2 + 2
    assert example.inputs.shape == (8, 4) and example.targets.shape == (8, 3)
    assert torch.equal(example.inputs[:2], t([[1, 0, 0, 0], [0, 1, 0, 0]]))
    assert torch.equal(example.inputs[2], t([0, 0, 1, 0]))  # delimiter; 2 repeats of 1..3 normalise to 0
    assert not example.inputs[3:].any()
    repeated = [[1, 0, 0], [0, 1, 0], [1, 0, 0], [0, 1, 0]]
    assert torch.equal(example.targets[3:], t([*repeated, [0, 0, 1]]))  # then the end marker
    assert example.mask.tolist() == [False] * 3 + [True] * 5
    assert normalised_repeats(1, 3) == pytest.approx(-1 / math.sqrt(8 / 12))
    assert normalised_repeats(3, 3) == pytest.approx(1 / math.sqrt(8 / 12))
    values = [normalised_repeats(n, 10) for n in range(1, 11)]
    assert np.mean(values) == pytest.approx(0) and np.var(values) == pytest.approx(1)  # as the paper's


def test_associative_recall_delimits_items_and_query_and_asks_for_the_next_item():
    items = [[[1, 0]], [[0, 1]], [[1, 1]]]  # K = 3 items of I = 1 vector of 2 bits
    example = associative_recall_example(items, query=1)
    item, query = [0, 0, 1, 0], [0, 0, 0, 1]
    expected = [
        item,
        [1, 0, 0, 0],
        item,
        [0, 1, 0, 0],
        item,
        [1, 1, 0, 0],
        query,
        [0, 1, 0, 0],
        query,
        [0] * 4,
    ]
    assert torch.equal(example.inputs, t(expected))
    assert example.mask.tolist() == [False] * 9 + [True]
    assert torch.equal(example.targets[9], t([1, 1])) and not example.targets[:9].any()
    assert num_steps("associative_recall", 3, item_length=1) == 10


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: copy_example([[1, 2]]), r"sequence must be a non-empty \(L, bits\) array of 0s and 1s"),
        (lambda: repeat_copy_example([[1]], 0, 3), r"repeats must be an int >= 1, got 0"),
        (lambda: associative_recall_example([[[1]], [[0]]], 1), r"0 <= query < 1, got 1"),
    ],
)
def test_generators_refuse_bad_inputs(call, message):
    with pytest.raises(DataError, match=message):
        call()


@pytest.mark.parametrize("problem", ["copy", "repeat_copy", "associative_recall"])
def test_a_dataset_is_seeded_within_its_lengths_and_says_each_examples_steps(problem):
    data = AlgorithmicDataset(problem, 40, 2, 4, bits=3, seed=7, max_repeats=3, item_length=2)
    again = AlgorithmicDataset(problem, 40, 2, 4, bits=3, seed=7, max_repeats=3, item_length=2)
    other = AlgorithmicDataset(problem, 40, 2, 4, bits=3, seed=7, stream=1, max_repeats=3, item_length=2)
    assert all(torch.equal(data[i].inputs, again[i].inputs) for i in range(40))
    assert any(not torch.equal(data[i].inputs, other[i].inputs) for i in range(40))
    assert set(data.sizes.tolist()) == {2, 3, 4}
    assert [len(data[i].inputs) for i in range(40)] == data.lengths.tolist()
    if problem == "associative_recall":
        for i in range(40):
            x = data[i].inputs
            vectors = x[(x[:, -2:] == 0).all(1), :3][: data.sizes[i] * 2].view(-1, 6)  # (K, I * bits)
            assert len(torch.unique(vectors, dim=0)) == data.sizes[i]  # distinct items


# --- the metric and the masked loss ---------------------------------------------------------------


def test_bits_wrong_counts_a_flipped_bit_and_a_whole_wrong_vector_on_the_masked_steps_only():
    example = copy_example([[1, 0, 1], [0, 1, 1]])
    targets, mask = example.targets[None], example.mask[None]  # (1, 5, 3), (1, 5)
    right = targets.clone()
    right[0, :3] = 1.0  # anything before the output phase does not count
    assert bits_wrong(right, targets, mask).tolist() == [0]
    flipped = right.clone()
    flipped[0, 3, 1] = 1.0
    assert bits_wrong(flipped, targets, mask).tolist() == [1]
    whole = right.clone()
    whole[0, 4] = 1 - whole[0, 4]
    assert bits_wrong(whole, targets, mask).tolist() == [3]
    probabilities = targets * 0.9 + 0.05  # rounded at 0.5
    probabilities[0, 3, 0] = 0.4
    assert bits_wrong(probabilities, targets, mask).tolist() == [1]
    batch = collate([example])  # the same, the mask carried as -1 targets
    assert bits_wrong(flipped, batch.targets).tolist() == [1]
    assert bits_wrong(torch.zeros_like(targets), batch.targets).tolist() == [4]  # the all-zeros baseline


def test_collate_pads_and_marks_every_uncounted_target_minus_one():
    batch = collate([copy_example([[1, 1]]), copy_example([[1, 0], [0, 1]])])
    assert batch.inputs.shape == (2, 5, 3) and batch.lengths.tolist() == [3, 5]
    assert batch.targets[0].tolist() == [[-1, -1], [-1, -1], [1, 1], [-1, -1], [-1, -1]]
    assert batch.targets[1, 3:].tolist() == [[1, 0], [0, 1]] and (batch.targets[1, :3] == IGNORE).all()


def test_the_loss_is_binary_cross_entropy_on_the_counted_bits_alone():
    torch.manual_seed(0)
    model = build_model(
        {"name": "bit_sequence", "input_size": 3, "output_size": 2, "cell": "lstm", "hidden_size": 4}
    )
    batch = collate([copy_example([[1, 1]]), copy_example([[1, 0], [0, 1]])])
    loss, state = model.loss(batch.inputs, batch.targets, batch.lengths)
    logits = model(batch.inputs, batch.lengths)
    counted = batch.targets >= 0
    assert state is None and counted.sum() == 6
    torch.testing.assert_close(
        loss, F.binary_cross_entropy_with_logits(logits[counted], batch.targets[counted])
    )
    with pytest.raises(
        DataError, match=r"targets must be 0 or 1 where they count and -1 \(IGNORE\) elsewhere"
    ):
        model.loss(batch.inputs, batch.targets * 2, batch.lengths)


# --- cell: ntm --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"bidirectional": True}, r"cell='ntm' cannot run bidirectional: set bidirectional: false"),
        ({"layer_norm": True}, r"cell='ntm' .* takes no layer_norm: drop it, or use cell='lstm'"),
        ({"zoneout": 0.1, "init": "orthogonal"}, r"takes no zoneout, init: drop them"),
    ],
)
def test_cell_ntm_refuses_what_it_cannot_run_and_names_the_fix(options, message):
    with pytest.raises(ConfigError, match=message):
        validate(MemoryEncoderConfig, {"cell": "ntm", **options}, source="model")


def test_memory_keys_belong_to_cell_ntm_and_build_its_layers():
    with pytest.raises(
        ConfigError, match=r"memory_rows sets the memory of cell='ntm' or 'dnc' only, got cell='lstm'"
    ):
        validate(MemoryEncoderConfig, {"cell": "lstm", "memory_rows": 16}, source="model")
    with pytest.raises(ConfigError, match=r"cell='ntm' cannot run bidirectional"):
        build_encoder("ntm", 3, 4, bidirectional=True)
    with pytest.raises(
        ConfigError, match=r"applies to cell='ntm' or 'dnc' only, got cell='gru': drop memory"
    ):
        build_encoder("gru", 3, 4, memory={"memory_rows": 4})
    config = MemoryEncoderConfig(cell="ntm", hidden_size=5, num_layers=2, memory_rows=6, memory_width=3)
    encoder = config.encoder(4)
    cells = encoder.cells
    assert len(cells) == 2 and (cells[1].input_size, cells[1].memory_rows, cells[1].memory_width) == (5, 6, 3)
    assert MemoryEncoderConfig(cell="ntm").encoder(4).cells[0].memory_rows == 128  # the paper's 128 x 20


def test_the_step_by_step_trace_ends_where_the_layers_end():
    torch.manual_seed(0)
    encoder = MemoryEncoderConfig(
        cell="ntm", hidden_size=5, num_layers=2, memory_rows=6, memory_width=3
    ).encoder(4)
    encoder.eval()
    x = torch.randn(2, 7, 4)
    out = encoder(x)
    traces = encoder.trace(x)
    for layer, trace in enumerate(traces):
        for name, field in zip(trace._fields, trace, strict=True):
            torch.testing.assert_close(field[-1], getattr(out.state, name)[layer])
    torch.testing.assert_close(traces[0].write_weights.sum(-1), torch.ones(7, 2))


# --- configs and runs end to end -----------------------------------------------------------------


def test_data_config_errors_name_the_key_and_the_fix():
    with pytest.raises(
        ConfigError, match=r"max_repeats applies to problem repeat_copy only, got problem copy"
    ):
        validate(AlgorithmicDataConfig, {"problem": "copy", "max_repeats": 3}, source="data")
    with pytest.raises(
        ConfigError, match=r"associative_recall trains on lengths 2 <= min_length <= max_length"
    ):
        validate(AlgorithmicDataConfig, {"problem": "associative_recall", "min_length": 1}, source="data")
    assert AlgorithmicDataConfig(max_length=20).lengths == [10, 20, 40, 80]


def test_the_shipped_lstm_configs_match_their_ntm_in_parameter_count():
    for problem in ("copy", "associative_recall"):
        counts = []
        for kind in ("ntm", "lstm"):
            config = load_run_config(CONFIGS / f"{problem}_{kind}.yaml")
            sizes = get_task("algorithmic").model_keys(config.data).fixed
            model = build_model({**config.model, **sizes})
            counts.append(sum(p.numel() for p in model.parameters()))
        assert 0.9 < counts[1] / counts[0] < 1.1, counts


TINY = {"max_length": 3, "eval_lengths": [2, 4], "train_size": 32, "validation_size": 8, "test_size": 4}


# problem, model, a sequence to predict with its options, and what the model should output for it
TINY_NTM = {"cell": "ntm", "hidden_size": 6, "memory_rows": 5, "memory_width": 4}
TINY_DNC = {"cell": "dnc", "hidden_size": 6, "memory_rows": 5, "memory_width": 4}
RUNS = [
    ("copy", TINY_NTM, "101 011 110", {}, "101 011 110"),
    ("copy", TINY_DNC, "101 011 110", {}, "101 011 110"),
    ("repeat_copy", TINY_NTM, "101 011", {"repeats": 2}, "101 011 101 011"),
    (
        "associative_recall",
        {"cell": "lstm", "hidden_size": 6},
        "101 011 | 110 000 | 001 111",
        {"query": 1},
        "001 111",
    ),
]


@pytest.mark.parametrize(
    ("problem", "model", "text", "options", "expected"), RUNS, ids=[f"{r[0]}-{r[1]['cell']}" for r in RUNS]
)
def test_a_tiny_run_trains_saves_loads_and_reports_bits_wrong_by_length(
    tmp_path, problem, model, text, options, expected
):
    extra = {"copy": {}, "repeat_copy": {"max_repeats": 2}, "associative_recall": {"item_length": 2}}[problem]
    data = {"problem": problem, "bits": 3, **TINY, **extra}
    config = write_run_config(tmp_path, "algorithmic", data, model, {"epochs": 1, "batch_size": 16})
    metrics = train_run(config, log=lambda _: None)
    run = tmp_path / "run"
    saved = json.loads((run / "bundle" / "metrics.json").read_text())
    assert saved["lengths"] == [2, 4] and set(saved["bits_wrong"]) == {"model", "all_zeros"}
    for who in ("model", "all_zeros"):
        assert set(saved["bits_wrong"][who]) == {"2", "4"}
    assert saved["bits_wrong"] == metrics["bits_wrong"]
    assert (run / "bits_wrong.png").is_file() and (run / "memory.png").is_file() == (
        model["cell"] in ("ntm", "dnc")
    )
    assert yaml.safe_load((run / "config.yaml").read_text())["model"]["cell"] == model["cell"]

    predictor = rnnkit.load(run / "bundle")
    assert predictor.evaluate()["bits_wrong"] == saved["bits_wrong"]
    result = predictor.predict(text, **options)
    assert result["expected"] == expected and 0 <= result["bits_wrong"] <= 3 * len(expected.split()) + 1
    if problem == "repeat_copy":  # the output up to the end marker, wherever the model put it
        assert result["end"] is None or len(result["output"].split()) == result["end"]
    else:
        assert len(result["output"]) == len(expected)
    with pytest.raises(DataError, match=r"write each vector as 3 characters 0 or 1"):
        predictor.predict("10 01")
    with pytest.raises(DataError, match=r"generates its sequences and reads no file"):
        predictor.evaluate(tmp_path / "x.csv")


def test_cell_ntm_bidirectional_in_a_run_config_is_refused_with_the_fix(tmp_path):
    with pytest.raises(
        ConfigError, match=r"run\.yaml: cell='ntm' cannot run bidirectional: set bidirectional: false"
    ):
        write_run_config(tmp_path, "algorithmic", {"problem": "copy"}, {"cell": "ntm", "bidirectional": True})
