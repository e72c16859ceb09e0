"""ULMFiT's fine-tuning recipe (Howard & Ruder 2018) in the trainer: the models' layer groups,
discriminative rates, gradual unfreezing (frozen weights bit-identical, exact resume, two processes).

Slanted triangular rates are in test_schedules.py, concat pooling in test_classifier.py.
"""

from __future__ import annotations

import os
import re
import runpy
import subprocess
import sys

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from rnnkit.errors import ConfigError
from rnnkit.models import build_model
from rnnkit.runtime import seed_everything
from rnnkit.train import Callback, TrainConfig, Trainer

V, C = 12, 3


def classifier(seed: int = 0, **options) -> nn.Module:
    torch.manual_seed(seed)
    keys = {"vocab_size": V, "num_classes": C, "embedding_dim": 4, "hidden_size": 4, "num_layers": 2}
    return build_model({"name": "classifier", **keys, **options})


def texts(n: int = 12, T: int = 5, seed: int = 0) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    return TensorDataset(torch.randint(1, V, (n, T), generator=g), torch.randint(0, C, (n,), generator=g))


def config(**options) -> TrainConfig:
    base = dict(
        epochs=3,
        batch_size=4,
        shuffle=False,
        optimizer={"name": "adam", "lr": 0.01},
        device="cpu",
        progress=False,
        tensorboard=False,
    )
    return TrainConfig(**{**base, **options})


# ---------------------------------------------------------------- layer groups


GROUPS = {  # model keys -> a pattern per group, bottom to top, that each parameter's name matches
    "text-bi-attention": (
        {"name": "classifier", "vocab_size": V, "num_classes": C, "num_layers": 2, "bidirectional": True}
        | {"pooling": "attention"},
        [r"embedding\.", r"encoder\.stack\.layers\.0\.", r"encoder\.stack\.layers\.1\.", r"(pooling|head)\."],
    ),
    "numeric-conv-chunks": (
        {"name": "classifier", "input_size": 2, "num_classes": C, "conv_channels": [3], "chunk_size": 2}
        | {"cell": "mingru", "num_layers": 2, "pooling": "concat"},
        [
            r"conv\.",
            r"encoder\..*\.0\.",
            r"encoder\..*\.1\.",
            r"upper\..*\.0\.",
            r"upper\..*\.1\.",
            r"head\.",
        ],
    ),
    "numeric": (
        {"name": "classifier", "input_size": 2, "num_classes": C},
        [r"encoder\.", r"head\."],
    ),
    "language-tied-projected": (
        {"name": "language_model", "vocab_size": V, "embedding_dim": 3, "hidden_size": 4, "num_layers": 2},
        [r"embedding\.weight", r"layers\.0\.", r"layers\.1\.", r"projection\.weight|decoder\.bias"],
    ),
    "language-untied-conditioned": (
        {"name": "language_model", "vocab_size": V, "num_layers": 3, "tie_weights": False}
        | {"num_conditions": 2, "condition_inputs": True, "hidden_size": 4},
        [r"embedding\.|conditioning\.", r"layers\.0\.", r"layers\.1\.", r"layers\.2\.", r"decoder\."],
    ),
}


@pytest.mark.parametrize("key", list(GROUPS))
def test_layer_groups_hold_every_parameter_once_bottom_to_top(key):
    keys, patterns = GROUPS[key]
    model = build_model(keys)
    groups = model.layer_groups()
    listed = [id(p) for group in groups for p in group]
    assert sorted(listed) == sorted(id(p) for p in model.parameters())  # each once (tied weights too)
    name = {id(p): n for n, p in model.named_parameters()}
    assert len(groups) == len(patterns)
    for group, pattern in zip(groups, patterns, strict=True):
        assert all(re.match(pattern, name[id(p)]) for p in group), [name[id(p)] for p in group]


def test_a_bidirectional_layer_is_one_group_with_both_directions():
    groups = classifier(bidirectional=True).layer_groups()
    assert len(groups) == 4  # embedding, two layers, head
    assert len(groups[1]) == len(groups[2]) == 8  # 4 tensors per direction


# ---------------------------------------------------------------- discriminative rates


def test_discriminative_rates_divide_by_the_factor_per_group_below_the_top():
    model = classifier(bidirectional=True)
    options = {"name": "adam", "lr": 0.01, "discriminative": 2.6}
    trainer = Trainer(model, config(optimizer=options, schedule={"name": "slanted_triangular"}))
    groups = trainer.optimizer.param_groups
    assert [g["lr"] for g in groups] == pytest.approx([0.01 / 2.6**3, 0.01 / 2.6**2, 0.01 / 2.6, 0.01])
    assert [g["params"] for g in groups] == model.layer_groups()
    history = trainer.fit(texts())
    top = groups[-1]["lr"]
    assert top < 0.01 and [g["lr"] for g in groups] == pytest.approx([top / 2.6**d for d in (3, 2, 1, 0)])
    assert history[-1]["lr"] == top  # the log shows the top group's rate


def test_without_discriminative_the_optimizer_has_one_group_as_before():
    model = classifier()
    (group,) = Trainer(model, config()).optimizer.param_groups
    assert group["params"] == list(model.parameters()) and group["lr"] == 0.01


class Plain(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(2, 1)


@pytest.mark.parametrize(
    ("options", "key"),
    [
        ({"optimizer": {"discriminative": 2.6}}, "train.optimizer.discriminative"),
        ({"gradual_unfreezing": True}, "train.gradual_unfreezing"),
    ],
)
def test_a_model_without_layer_groups_is_refused(options, key):
    with pytest.raises(ConfigError, match=f"model Plain has no layer groups: drop {re.escape(key)}"):
        Trainer(Plain(), config(**options))


@pytest.mark.parametrize(
    "groups", [lambda m: [[m.linear.weight]], lambda m: [[m.linear.weight], [*m.parameters()]]]
)
def test_layer_groups_that_miss_or_repeat_a_parameter_are_refused(groups):
    model = Plain()
    model.layer_groups = lambda: groups(model)
    with pytest.raises(ConfigError, match=r"Plain.layer_groups\(\) must list each of the model's parameters"):
        Trainer(model, config(gradual_unfreezing=True))


# ---------------------------------------------------------------- gradual unfreezing


class Watch(Callback):
    """Per step, which groups train; per epoch end, the weights; raises at step ``crash``."""

    def __init__(self, model: nn.Module, crash: int | None = None) -> None:
        self.groups, self.crash = model.layer_groups(), crash
        self.training: dict[int, list[bool]] = {}
        self.weights: list[list[list[torch.Tensor]]] = []

    def on_step_end(self, trainer, loss, samples) -> None:
        self.training[trainer.step] = [all(p.requires_grad for p in g) for g in self.groups]
        if trainer.step == self.crash:
            raise KeyboardInterrupt

    def on_epoch_end(self, trainer) -> None:
        self.weights.append([[p.detach().clone() for p in g] for g in self.groups])


@pytest.mark.parametrize(
    "optimizer",
    [
        {"name": "adamw", "lr": 0.01, "weight_decay": 0.1},
        {"name": "sgd", "lr": 0.1, "momentum": 0.9, "weight_decay": 0.1},
    ],
    ids=["adamw", "sgd-momentum"],
)
def test_each_epoch_unfreezes_one_more_group_and_frozen_ones_do_not_move(optimizer):
    model = classifier()  # groups: embedding, layer 0, layer 1, head
    start = [[p.detach().clone() for p in g] for g in model.layer_groups()]
    watch = Watch(model)
    Trainer(model, config(epochs=5, gradual_unfreezing=True, optimizer=optimizer), callbacks=[watch]).fit(
        texts()
    )
    for epoch in range(5):  # 3 steps an epoch: steps 3e + 1 .. 3e + 3
        lowest = max(0, 3 - epoch)
        trained = [i >= lowest for i in range(4)]
        assert [watch.training[s] for s in range(3 * epoch + 1, 3 * epoch + 4)] == [trained] * 3
        for i in range(lowest):  # frozen through this epoch: bit-identical, no decay nor momentum
            assert all(torch.equal(a, b) for a, b in zip(watch.weights[epoch][i], start[i], strict=True))
        assert not any(torch.equal(a, b) for a, b in zip(watch.weights[epoch][3], start[3], strict=True))
    assert all(p.requires_grad for p in model.parameters())  # released after training


def test_a_parameter_frozen_before_training_stays_frozen():
    model = classifier()
    vectors = torch.randn(V, 4)
    model.load_embeddings(vectors, freeze=True)
    Trainer(model, config(epochs=4, gradual_unfreezing=True), callbacks=[]).fit(texts())
    assert torch.equal(model.embedding.weight, vectors) and not model.embedding.weight.requires_grad
    assert all(p.requires_grad for n, p in model.named_parameters() if not n.startswith("embedding"))


def test_a_run_resumed_mid_epoch_freezes_and_trains_as_the_uninterrupted_one(tmp_path):
    """Stopped (a crash) in epoch 1 at step 5 of 9 with rates that depend on the step budget: the
    resumed run freezes the same groups and ends with the same weights, bit for bit."""
    options = dict(
        gradual_unfreezing=True,
        shuffle=True,
        checkpoint_every=1,
        optimizer={"name": "adam", "lr": 0.01, "discriminative": 2.6},
        schedule={"name": "slanted_triangular", "cut_frac": 0.3},
    )
    whole = classifier(embedding_dropout=0.2)
    whole_watch = Watch(whole)
    whole_history = Trainer(whole, config(**options), tmp_path / "a", callbacks=[whole_watch]).fit(texts())

    cut = classifier(embedding_dropout=0.2)
    with pytest.raises(KeyboardInterrupt):
        Trainer(cut, config(**options), tmp_path / "b", callbacks=[Watch(cut, crash=5)]).fit(texts())
    seed_everything(1234)  # as a fresh process would
    resumed = classifier(seed=7, embedding_dropout=0.2)  # other weights: the checkpoint brings them back
    watch = Watch(resumed)
    trainer = Trainer(resumed, config(**options), tmp_path / "b", callbacks=[watch])
    history = trainer.fit(texts(), resume=True)
    assert list(watch.training) == [5, 6, 7, 8, 9]  # step 5 again: its checkpoint was not written
    assert watch.training == {s: whole_watch.training[s] for s in range(5, 10)}
    assert watch.training[5] == [False, False, True, True]
    for (name, a), b in zip(resumed.state_dict().items(), whole.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    assert history == whole_history and [row["step"] for row in history] == [3, 6, 9]


# ---------------------------------------------------------------- two processes

SCRIPT = """
import sys, torch
from torch.utils.data import TensorDataset
from rnnkit.models import build_model
from rnnkit.train import TrainConfig, Trainer, distributed

torch.manual_seed(0)
model = build_model({"name": "classifier", "vocab_size": 9, "num_classes": 3, "num_layers": 2,
                     "hidden_size": 4, "embedding_dim": 3}).double()
g = torch.Generator().manual_seed(0)
data = TensorDataset(torch.randint(1, 9, (16, 5), generator=g), torch.randint(0, 3, (16,), generator=g))
config = TrainConfig(epochs=3, batch_size=8, shuffle=False, device="cpu", progress=False, tensorboard=False,
                     gradual_unfreezing=True, optimizer={"name": "adam", "lr": 0.01, "discriminative": 2.6})
trainer = Trainer(model, config)
trainer.fit(data)
if trainer.dist.is_main:
    torch.save(model.state_dict(), sys.argv[1])
distributed.teardown()
"""


def test_two_processes_unfreeze_as_one_does(tmp_path, monkeypatch):
    """DDP is built before any group is frozen; with find_unused_parameters it leaves a frozen
    parameter's gradient None on every process (without it, the second step fails)."""
    script = tmp_path / "ulmfit.py"
    script.write_text(SCRIPT)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [*torchrun, str(script), str(tmp_path / "two.pt")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    monkeypatch.setattr(sys, "argv", ["ulmfit.py", str(tmp_path / "one.pt")])
    runpy.run_path(str(script), run_name="__main__")
    two, one = torch.load(tmp_path / "two.pt"), torch.load(tmp_path / "one.pt")
    for name in one:
        torch.testing.assert_close(two[name], one[name], rtol=0, atol=1e-12)
