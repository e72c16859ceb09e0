"""The Trainer: its loop is proven equal to hand-written references, and every option does what it says.

Truncated BPTT, streams with per-row resets, accumulation and clipping are replayed by hand from the
same initial weights in float64; the NaN guard, early stopping, seeding, exact resume, atomic
checkpoints, callbacks and optimisers are checked on tiny models that follow the task-model contract.
"""

from __future__ import annotations

import csv
import math
import os
from typing import NamedTuple

import pytest
import torch
from torch import Tensor, nn
from torch.utils.data import TensorDataset

import rnnkit
from rnnkit.config import validate
from rnnkit.data import Batch, Stream, stack_pairs
from rnnkit.errors import ConfigError, TrainingError
from rnnkit.runtime import seed_everything
from rnnkit.train import Callback, TrainConfig, Trainer
from rnnkit.train import checkpoint as ckpt

D, H = 2, 4
LR = 0.1
DTYPE = torch.float64


# ---------------------------------------------------------------- task models


class Regressor(nn.Module):
    """Many-to-many: inputs (B, T, D) -> a prediction per step (B, T, 1), from a GRU and a linear head."""

    def __init__(self, dropout: float = 0.0) -> None:
        super().__init__()
        self.rnn = rnnkit.GRU(D, H)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(H, 1)

    def initial_state(self, batch_size: int) -> NamedTuple:
        return self.rnn.initial_state(batch_size)  # fields (1, B, H)

    def forward(self, inputs: Tensor, lengths=None, state=None):
        out = self.rnn(inputs, state, lengths)  # outputs (B, T, H)
        return self.head(self.drop(out.outputs)), out.state  # (B, T, 1)

    def loss(self, inputs: Tensor, targets: Tensor, lengths=None, state=None):
        predictions, state = self(inputs, lengths, state)
        return nn.functional.mse_loss(predictions, targets), state


class Probe(Regressor):
    """A Regressor that records, per loss call, the state it was given, its weights and the state it
    returned; ``tamper(call, loss)`` (calls counted from 1) may replace the loss."""

    def __init__(self, tamper=None, dropout: float = 0.0) -> None:
        super().__init__(dropout)
        self.tamper = tamper
        self.seen, self.returned, self.weights = [], [], []

    def loss(self, inputs, targets, lengths=None, state=None):
        self.seen.append(state)
        self.weights.append(snapshot(self))
        loss, state = super().loss(inputs, targets, lengths, state)
        self.returned.append(detach(state))
        if self.tamper is not None:
            loss = self.tamper(len(self.seen), loss)
        return loss, state


def make(cls=Regressor, seed: int = 0, **options) -> nn.Module:
    """A float64 model whose weights depend only on ``seed`` (the global RNG is left as it was)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return cls(**options).to(DTYPE)


# ---------------------------------------------------------------- helpers


def config(**options) -> TrainConfig:
    base = dict(
        epochs=1,
        batch_size=2,
        shuffle=False,
        optimizer={"name": "sgd", "lr": LR},
        device="cpu",
        progress=False,
        tensorboard=False,
    )
    return TrainConfig(**{**base, **options})


def sequences(n: int, T: int, seed: int = 0, target_shape=(1,)) -> tuple[Tensor, Tensor]:
    """x (n, T, D) and y (n, T, 1) (or (n, *target_shape)), float64, from a seeded generator."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, T, D, generator=g, dtype=DTYPE)
    y = torch.randn(n, *((T, 1) if target_shape == (1,) else target_shape), generator=g, dtype=DTYPE)
    return x, y


def snapshot(model: nn.Module) -> dict[str, Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def detach(state):
    return None if state is None else type(state)(*(t.detach() for t in state))


def assert_weights_equal(a: dict[str, Tensor], b: dict[str, Tensor], exact: bool = False) -> None:
    assert a.keys() == b.keys()
    for key in a:
        if exact:
            assert torch.equal(a[key], b[key]), key
        else:
            torch.testing.assert_close(a[key], b[key], rtol=1e-12, atol=1e-14, msg=key)


def weights_differ(a: dict[str, Tensor], b: dict[str, Tensor]) -> bool:
    return any(not torch.equal(a[k], b[k]) for k in a)


def sgd_step(model: nn.Module, loss: Tensor, lr: float = LR) -> None:
    """One plain SGD step, written out: w <- w - lr * dL/dw."""
    model.zero_grad(set_to_none=True)
    loss.backward()
    with torch.no_grad():
        for p in model.parameters():
            p -= lr * p.grad


def replay_tbptt(model: nn.Module, x: Tensor, y: Tensor, k: int, batch_size: int) -> None:
    """Truncated BPTT by hand: per batch a fresh state; per chunk of k steps loss, backward, SGD step,
    and the state goes on detached."""
    for xb, yb in zip(x.split(batch_size), y.split(batch_size), strict=True):
        state = None
        for xc, yc in zip(xb.split(k, 1), yb.split(k, 1), strict=True):
            loss, state = model.loss(xc, yc, state=state)
            sgd_step(model, loss)
            state = detach(state)


class Recorder(Callback):
    def __init__(self) -> None:
        self.events: list[str] = []

    def on_train_start(self, trainer) -> None:
        self.events.append("start")

    def on_step_end(self, trainer, loss, samples) -> None:
        self.events.append(f"step{trainer.step}")

    def on_evaluate(self, trainer, row) -> None:
        self.events.append(f"evaluate{row['step']}")

    def on_epoch_end(self, trainer) -> None:
        self.events.append(f"epoch_end{trainer.epoch}")

    def on_train_end(self, trainer) -> None:
        self.events.append("end")


def read_log(path) -> tuple[list[str], list[dict[str, str]]]:
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames), list(reader)


# ---------------------------------------------------------------- 1. truncated BPTT


@pytest.mark.parametrize(("T", "k"), [(6, 2), (7, 3), (5, 5)], ids=["T=3k", "T%k!=0", "k=T"])
@pytest.mark.parametrize("batches", [1, 2])
def test_tbptt_equals_hand_replay(T, k, batches):
    B = 3
    x, y = sequences(B * batches, T)
    model, reference = make(), make()
    trainer = Trainer(model, config(tbptt=k, batch_size=B))
    trainer.fit(TensorDataset(x, y))
    replay_tbptt(reference, x, y, k, B)
    assert trainer.step == batches * math.ceil(T / k)
    assert_weights_equal(snapshot(model), snapshot(reference))


def test_tbptt_differs_from_full_bptt():
    """So the replay above could not pass with tbptt ignored."""
    x, y = sequences(3, 6)
    chunked, full = make(), make()
    Trainer(chunked, config(tbptt=2, batch_size=3)).fit(TensorDataset(x, y))
    Trainer(full, config(batch_size=3)).fit(TensorDataset(x, y))
    assert weights_differ(snapshot(chunked), snapshot(full))


@pytest.mark.parametrize("k", [1, 2, 5])
def test_activation_checkpointing_equals_full_bptt(k):
    """Chunks under activation checkpointing carry the gradient across chunk boundaries: full BPTT."""
    x, y = sequences(3, 7)
    checkpointed, full = make(), make()
    Trainer(checkpointed, config(checkpoint_activations=k, batch_size=3, epochs=2)).fit(TensorDataset(x, y))
    Trainer(full, config(batch_size=3, epochs=2)).fit(TensorDataset(x, y))
    assert_weights_equal(snapshot(checkpointed), snapshot(full))


def test_activation_checkpointing_refuses_what_it_cannot_cut_along_time():
    """A padded batch (lengths) or one target per sequence would be cut into nonsense: refused."""
    x, y = sequences(3, 7)

    def with_lengths(examples):
        inputs, targets = stack_pairs(examples)[:2]
        return Batch(inputs, targets, torch.full((len(examples),), 7))

    checkpointed = Trainer(make(), config(checkpoint_activations=3, batch_size=3), collate=with_lengths)
    with pytest.raises(ConfigError, match=r"checkpoint_activations cuts a batch along time.*lengths"):
        checkpointed.fit(TensorDataset(x, y))
    with pytest.raises(ConfigError, match=r"targets of shape \(3, 1\)"):
        Trainer(make(), config(checkpoint_activations=3, batch_size=3)).fit(TensorDataset(x, y[:, -1]))


def test_tbptt_and_activation_checkpointing_together_is_a_config_error():
    with pytest.raises(ConfigError, match=r"set train.tbptt .* or train.checkpoint_activations .*, not both"):
        validate(TrainConfig, {"tbptt": 5, "checkpoint_activations": 5})


def test_tbptt_detaches_the_state_between_chunks():
    model = make(Probe)
    Trainer(model, config(tbptt=2, batch_size=3)).fit(TensorDataset(*sequences(3, 6)))
    assert model.seen[0] is None  # a Dataset batch starts from the model's own initial state
    for state in model.seen[1:]:
        assert not state.h.requires_grad and state.h.grad_fn is None
    for got, want in zip(model.seen[1:], model.returned[:-1], strict=True):
        torch.testing.assert_close(got.h, want.h, rtol=0, atol=0)


# ---------------------------------------------------------------- 2. streams


RESETS = [[True, True, True], [False, True, False], [True, False, False], [False, False, False]]


def make_stream(T: int = 4, resets=RESETS, seed: int = 0) -> Stream:
    batches = []
    for i, reset in enumerate(resets):
        x, y = sequences(len(reset), T, seed=seed + i)
        batches.append(Batch(x, y, reset=torch.tensor(reset)))
    return Stream(batches)


@pytest.mark.parametrize("tbptt", [None, 2])
def test_stream_carries_state_and_resets_exactly_the_marked_rows(tbptt):
    stream = make_stream()
    model = make(Probe)
    Trainer(model, config(tbptt=tbptt, batch_size=3)).fit(stream)
    per_batch = 1 if tbptt is None else 2
    assert len(model.seen) == len(stream) * per_batch
    for i, batch in enumerate(stream):
        got = model.seen[i * per_batch]
        fresh = model.initial_state(3)
        if i == 0:
            torch.testing.assert_close(got.h, fresh.h, rtol=0, atol=0)
            continue
        previous = model.returned[i * per_batch - 1].h  # (1, B, H): the previous batch's final state
        assert previous.abs().min() > 0  # so a reset row (zeros) cannot pass by accident
        want = previous.clone()
        want[:, batch.reset] = fresh.h[:, batch.reset]  # (1, B, H)
        torch.testing.assert_close(got.h, want, rtol=0, atol=0)
        assert not got.h.requires_grad and got.h.grad_fn is None


def test_stream_training_equals_hand_replay():
    stream = make_stream()
    model, reference = make(), make()
    Trainer(model, config(batch_size=3, epochs=2)).fit(stream)
    State, state = type(reference.initial_state(1)), None
    for _ in range(2):
        for batch in stream:
            h = reference.initial_state(3).h if state is None else state.h.clone()
            h[:, batch.reset] = 0.0  # (1, B, H): the GRU's initial state is zeros
            loss, state = reference.loss(batch.inputs, batch.targets, state=State(h))
            sgd_step(reference, loss)
            state = detach(state)
    assert_weights_equal(snapshot(model), snapshot(reference))


# ---------------------------------------------------------------- 3. tbptt refusals


def with_lengths(examples):
    batch = stack_pairs(examples)
    return batch._replace(lengths=torch.full((len(examples),), batch.inputs.shape[1]))


def test_tbptt_with_lengths_is_a_config_error():
    trainer = Trainer(make(), config(tbptt=2), collate=with_lengths)
    with pytest.raises(ConfigError, match=r"train\.tbptt needs equal-length sequences.*has lengths"):
        trainer.fit(TensorDataset(*sequences(2, 4)))


@pytest.mark.parametrize("target_shape", [(1,), (), (3, 1)], ids=["(B,1)", "(B,)", "(B,3,1)"])
def test_tbptt_without_a_target_per_step_is_a_config_error(target_shape):
    x, _ = sequences(2, 4)
    y = torch.zeros(2, *target_shape, dtype=DTYPE)
    trainer = Trainer(make(), config(tbptt=2))
    with pytest.raises(ConfigError, match=r"train.tbptt needs a target per time step .* T = 4"):
        trainer.fit(TensorDataset(x, y))


# ---------------------------------------------------------------- 4. non-finite values


def nan_dataset(bad_batch: int, n: int = 8, T: int = 3) -> TensorDataset:
    """n sequences in batches of 2; a NaN input in batch ``bad_batch`` (counted from 1)."""
    x, y = sequences(n, T)
    x[2 * (bad_batch - 1), 1, 0] = math.nan
    return TensorDataset(x, y)


def replay_skipping(model: nn.Module, data: TensorDataset, skip: set[int]) -> None:
    """SGD over batches of 2 in order, leaving out the batches in ``skip`` (counted from 1)."""
    x, y = data.tensors
    for i, (xb, yb) in enumerate(zip(x.split(2), y.split(2), strict=True), start=1):
        if i not in skip:
            sgd_step(model, model.loss(xb, yb)[0])


def test_nan_loss_raises_naming_the_step():
    model = make()
    with pytest.raises(TrainingError, match=r"non-finite loss \(nan\) at step 3 \(epoch 1, batch 3\)"):
        Trainer(model, config()).fit(nan_dataset(bad_batch=3))
    assert all(torch.isfinite(p).all() for p in model.parameters())


def nan_grad_hook(model: Probe, call: int):
    """head.weight's gradient turns NaN in the backward pass of loss call ``call``; the loss stays finite."""
    model.head.weight.register_hook(lambda g: torch.full_like(g, math.nan) if len(model.seen) == call else g)


@pytest.mark.parametrize("clip", [{}, {"clip_grad_value": 0.5}, {"clip_grad_norm": 0.5}])
def test_nan_gradient_raises_naming_the_parameter(clip):
    model = make(Probe)
    nan_grad_hook(model, call=2)
    with pytest.raises(TrainingError, match=r"non-finite gradient of head\.weight at step 2 \(epoch 1"):
        Trainer(model, config(**clip)).fit(TensorDataset(*sequences(8, 3)))


def test_skip_leaves_out_the_nan_batch_and_goes_on():
    data = nan_dataset(bad_batch=3)
    model, reference = make(), make()
    trainer = Trainer(model, config(nan_policy="skip"))
    with pytest.warns(UserWarning, match=r"non-finite loss \(nan\) at step 3 .*skipping the batch"):
        trainer.fit(data)
    assert trainer.skipped == 1
    assert all(torch.isfinite(p).all() for p in model.parameters())
    replay_skipping(reference, data, skip={3})
    assert_weights_equal(snapshot(model), snapshot(reference))


def test_skip_of_a_nan_gradient_goes_on():
    data = TensorDataset(*sequences(8, 3))
    model, reference = make(Probe), make()
    nan_grad_hook(model, call=2)
    trainer = Trainer(model, config(nan_policy="skip"))
    with pytest.warns(UserWarning, match=r"non-finite gradient of .* at step 2 .*skipping"):
        trainer.fit(data)
    assert trainer.skipped == 1
    replay_skipping(reference, data, skip={2})
    assert_weights_equal(snapshot(model), snapshot(reference))


def test_skip_at_the_very_first_batch_with_callbacks(tmp_path):
    """The first batch's loss is NaN, and default callbacks (run_dir set) get on_step_end."""
    data = nan_dataset(bad_batch=1)
    model, reference = make(), make()
    trainer = Trainer(model, config(nan_policy="skip"), run_dir=tmp_path)
    with pytest.warns(UserWarning, match="skipping the batch"):
        trainer.fit(data)
    assert trainer.skipped == 1
    replay_skipping(reference, data, skip={1})
    assert_weights_equal(snapshot(model), snapshot(reference))


def test_a_skipped_loss_is_not_counted_as_an_optimiser_step():
    """A NaN gradient is not counted as a step (see the test above); a NaN loss must not be either."""
    trainer = Trainer(make(), config(nan_policy="skip"))
    with pytest.warns(UserWarning, match="skipping"):
        trainer.fit(nan_dataset(bad_batch=3))
    assert trainer.step == 3  # four batches, one skipped


def test_restore_reloads_the_last_checkpoint_and_goes_on(tmp_path):
    saved = {}

    def tamper(call, loss):
        if call == 4:  # steps 1-3 are done; last.pt holds step 2 (checkpoint_every=2)
            trainer.writer.wait()  # the file is written in the background; the restore waits too
            saved.update(ckpt.load(tmp_path / "checkpoints" / "last.pt"))
            return loss * math.nan
        return loss

    model = make(Probe, tamper=tamper)
    trainer = Trainer(model, config(nan_policy="restore", checkpoint_every=2, epochs=2), run_dir=tmp_path)
    with pytest.warns(UserWarning, match=r"non-finite loss \(nan\) at step 4 .*restoring"):
        trainer.fit(TensorDataset(*sequences(8, 3)))
    assert saved["position"]["step"] == 2
    assert_weights_equal(model.weights[4], saved["model"], exact=True)  # the call after the NaN
    assert_weights_equal(model.weights[2], saved["model"], exact=True)  # what step 2 had left
    assert trainer.skipped == 1 and len(model.seen) == 8  # training went on to the end
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert weights_differ(snapshot(model), saved["model"])


def test_restore_without_a_run_directory_is_a_config_error():
    with pytest.raises(ConfigError, match="nan_policy 'restore' needs a run directory"):
        Trainer(make(), config(nan_policy="restore"), run_dir=None)


# ---------------------------------------------------------------- 5. gradient accumulation


def test_accumulate_equals_a_larger_batch():
    data = TensorDataset(*sequences(8, 6))
    accumulated, large = make(), make()
    Trainer(accumulated, config(accumulate=2, batch_size=2, epochs=2)).fit(data)
    Trainer(large, config(accumulate=1, batch_size=4, epochs=2)).fit(data)
    assert_weights_equal(snapshot(accumulated), snapshot(large))
    assert weights_differ(snapshot(accumulated), snapshot(make()))


def test_accumulate_over_tbptt_chunks_equals_hand_replay():
    """With tbptt the chunks are the micro-batches: accumulate=2 makes one step of a batch's 2 chunks."""
    x, y = sequences(4, 6)
    model, reference = make(), make()
    Trainer(model, config(accumulate=2, tbptt=3)).fit(TensorDataset(x, y))
    for xb, yb in zip(x.split(2), y.split(2), strict=True):
        reference.zero_grad(set_to_none=True)
        state = None
        for xc, yc in zip(xb.split(3, 1), yb.split(3, 1), strict=True):
            loss, state = reference.loss(xc, yc, state=state)
            (loss / 2).backward()
            state = detach(state)
        with torch.no_grad():
            for p in reference.parameters():
                p -= LR * p.grad
    assert_weights_equal(snapshot(model), snapshot(reference))


class MicroCounter(Callback):
    """Loss calls (micro-batches) behind each optimiser step."""

    def __init__(self, model: Probe) -> None:
        self.model, self.seen, self.per_step = model, 0, []

    def on_step_end(self, trainer, loss, samples) -> None:
        self.per_step.append(len(self.model.seen) - self.seen)
        self.seen = len(self.model.seen)


def test_a_partial_accumulation_ends_with_the_epoch_and_the_next_starts_afresh():
    """Three batches per epoch, accumulate=2: each epoch steps after batches (1, 2) and (3)."""
    model = make(Probe)
    counter = MicroCounter(model)
    Trainer(model, config(accumulate=2, epochs=3), callbacks=[counter]).fit(TensorDataset(*sequences(6, 3)))
    assert counter.per_step == [2, 1] * 3


# ---------------------------------------------------------------- 6. clipping


def one_step_gradient(model: nn.Module, data: TensorDataset) -> dict[str, Tensor]:
    x, y = data.tensors
    model.zero_grad()
    model.loss(x, y)[0].backward()
    return {n: p.grad.clone() for n, p in model.named_parameters()}


def test_clip_grad_norm_bounds_the_update():
    data = TensorDataset(*sequences(4, 5))
    grad = one_step_gradient(make(), data)
    norm = torch.linalg.vector_norm(torch.stack([g.norm() for g in grad.values()]))
    clip = float(norm) / 4  # clipping is active
    model = make()
    before = dict(model.named_parameters())
    before = {n: p.detach().clone() for n, p in before.items()}
    cfg = config(clip_grad_norm=clip, optimizer={"name": "sgd", "lr": 1.0}, batch_size=4)
    Trainer(model, cfg).fit(data)
    change = {n: p.detach() - before[n] for n, p in model.named_parameters()}
    total = torch.linalg.vector_norm(torch.stack([c.norm() for c in change.values()]))
    assert total <= clip * (1 + 1e-9)
    for n, c in change.items():  # the direction is the gradient's, scaled by clip / norm
        torch.testing.assert_close(c, -grad[n] * clip / norm, rtol=1e-5, atol=1e-12)


def test_clip_grad_value_clips_each_element():
    data = TensorDataset(*sequences(4, 5))
    grad = one_step_gradient(make(), data)
    clip = 0.05
    assert any((g.abs() > clip).any() for g in grad.values())
    assert any(((g.abs() < clip) & (g != 0)).any() for g in grad.values())
    model = make()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    cfg = config(clip_grad_value=clip, optimizer={"name": "sgd", "lr": 1.0}, batch_size=4)
    Trainer(model, cfg).fit(data)
    for n, p in model.named_parameters():
        torch.testing.assert_close(
            p.detach() - before[n], -grad[n].clamp(-clip, clip), rtol=1e-12, atol=1e-15
        )


# ---------------------------------------------------------------- 7. early stopping


def diverging_data() -> tuple[TensorDataset, TensorDataset]:
    """Training pulls every prediction to +1 while validation wants -1: the validation loss only rises."""
    x, _ = sequences(8, 3)
    return TensorDataset(x, torch.ones(8, 3, 1, dtype=DTYPE)), TensorDataset(
        x, -torch.ones(8, 3, 1, dtype=DTYPE)
    )


@pytest.mark.parametrize("restore_best", [True, False])
def test_early_stopping_stops_and_restores_the_best(tmp_path, restore_best):
    train, val = diverging_data()
    model = make()
    stopping = {"patience": 2, "restore_best": restore_best}
    trainer = Trainer(model, config(epochs=5, eval_every=1, early_stopping=stopping), run_dir=tmp_path)
    history = trainer.fit(train, val)
    losses = [row["val_loss"] for row in history]
    assert losses == sorted(losses) and len(set(losses)) == len(losses)  # strictly worse every time
    assert trainer.stopped_early and trainer.step == 3 and len(history) == 3
    best = ckpt.load(tmp_path / "checkpoints" / "best.pt")
    last = ckpt.load(tmp_path / "checkpoints" / "last.pt")
    assert best["step"] == 1 and last["position"]["step"] == 3
    assert weights_differ(best["model"], last["model"])
    want = best["model"] if restore_best else last["model"]
    assert_weights_equal(snapshot(model), want, exact=True)


def test_without_patience_training_runs_to_the_end():
    train, val = diverging_data()
    trainer = Trainer(make(), config(epochs=2, eval_every=1))
    trainer.fit(train, val)
    assert not trainer.stopped_early and trainer.step == 8


def test_mode_max_counts_a_rising_value_as_improvement(tmp_path):
    train, val = diverging_data()
    cfg = config(epochs=1, eval_every=1, mode="max", early_stopping={"patience": 1})
    trainer = Trainer(make(), cfg, run_dir=tmp_path)
    trainer.fit(train, val)
    assert not trainer.stopped_early and trainer.best_step == trainer.step == 4
    assert ckpt.load(tmp_path / "checkpoints" / "best.pt")["step"] == 4


def test_without_validation_the_training_loss_is_monitored():
    train, _ = diverging_data()
    trainer = Trainer(make(), config(epochs=2, early_stopping={"patience": 1}))
    history = trainer.fit(train)
    assert all(set(row) == {"step", "epoch", "lr", "train_loss"} for row in history)
    assert trainer.best == min(row["train_loss"] for row in history)


def test_an_unknown_monitor_is_named():
    train, val = diverging_data()
    trainer = Trainer(make(), config(monitor="val_acc"))
    with pytest.raises(TrainingError, match=r"train.monitor 'val_acc' is not among .*'val_loss'"):
        trainer.fit(train, val)


# ---------------------------------------------------------------- 8. seeding


def seeded_run(seed: int):
    model = make(dropout=0.3)
    cfg = config(seed=seed, shuffle=True, epochs=2, optimizer={"name": "adam", "lr": 0.01})
    data = TensorDataset(*sequences(10, 4))
    history = Trainer(model, cfg).fit(data, TensorDataset(*sequences(4, 4, seed=1)))
    return snapshot(model), history


def test_same_seed_gives_identical_runs_and_another_seed_differs():
    weights, history = seeded_run(seed=3)
    again_weights, again_history = seeded_run(seed=3)
    other_weights, other_history = seeded_run(seed=4)
    assert_weights_equal(weights, again_weights, exact=True)
    assert history == again_history
    assert weights_differ(weights, other_weights)
    assert history != other_history


# ---------------------------------------------------------------- 9. exact resume


def stream_data():
    return make_stream(T=4, resets=RESETS * 2), make_stream(T=4, resets=RESETS[:2], seed=10)


def dataset_data(n: int, T: int):
    return TensorDataset(*sequences(n, T)), TensorDataset(*sequences(4, T, seed=1))


RESUME = {  # data, config, the step run B stops at
    "mid-epoch": (lambda: dataset_data(10, 4), dict(epochs=3), 7),
    "epoch-end": (lambda: dataset_data(10, 4), dict(epochs=3), 5),
    "tbptt-mid-batch": (lambda: dataset_data(8, 6), dict(epochs=2, tbptt=2), 4),
    "stream-tbptt-mid-batch": (stream_data, dict(epochs=2, tbptt=2, batch_size=3, shuffle=False), 9),
}


@pytest.mark.parametrize("case", list(RESUME))
def test_resume_in_process_repeats_the_uninterrupted_run_exactly(tmp_path, case):
    data, options, stop = RESUME[case]
    train, val = data()
    common = dict(shuffle=True, eval_every=3, checkpoint_every=1, optimizer={"name": "adam", "lr": 0.01})
    options = {**common, **options}
    full = make(dropout=0.3)
    a = Trainer(full, config(**options), run_dir=tmp_path / "a")
    a.fit(train, val)

    b = Trainer(make(dropout=0.3), config(max_steps=stop, **options), run_dir=tmp_path / "b")
    b.fit(train, val)
    assert b.step == stop < a.step

    seed_everything(1234)  # as a fresh process would: the checkpoint must bring the RNG states back
    resumed = make(seed=1, dropout=0.3)  # other weights: the checkpoint must bring them back
    c = Trainer(resumed, config(**options), run_dir=tmp_path / "b")
    history = c.fit(train, val, resume=True)

    assert c.step == a.step
    assert_weights_equal(snapshot(resumed), snapshot(full), exact=True)
    assert history == a.history
    steps = [row["step"] for row in history]
    assert len(steps) == len(set(steps))
    _, logged = read_log(tmp_path / "b" / "log.csv")
    assert [int(row["step"]) for row in logged] == steps


def test_resume_without_a_checkpoint_says_so(tmp_path):
    trainer = Trainer(make(), config(), run_dir=tmp_path)
    with pytest.raises(TrainingError, match="no checkpoint to resume from"):
        trainer.fit(TensorDataset(*sequences(2, 3)), resume=True)


# ---------------------------------------------------------------- 10. atomic checkpoints


@pytest.mark.parametrize("interruption", [OSError("disk full"), KeyboardInterrupt()])
def test_atomic_save_interrupted_mid_write_keeps_the_previous_file(tmp_path, monkeypatch, interruption):
    path = tmp_path / "last.pt"
    ckpt.atomic_save({"value": torch.tensor([1.0])}, path)
    before = path.read_bytes()

    def torn_save(obj, f):
        f.write(b"PK\x03\x04 half a checkpoint")
        f.flush()
        raise interruption

    monkeypatch.setattr(ckpt.torch, "save", torn_save)
    with pytest.raises(type(interruption)):
        ckpt.atomic_save({"value": torch.tensor([2.0])}, path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert ckpt.load(path)["value"].item() == 1.0
    assert os.listdir(tmp_path) == ["last.pt"]


def test_atomic_save_replaces_the_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "sub" / "last.pt"
    ckpt.atomic_save({"value": torch.tensor([1.0])}, path)
    ckpt.atomic_save({"value": torch.tensor([2.0])}, path)
    assert ckpt.load(path)["value"].item() == 2.0
    assert os.listdir(path.parent) == ["last.pt"]


# ---------------------------------------------------------------- 11. callbacks


def test_log_csv_and_loss_png(tmp_path):
    train, val = dataset_data(8, 3)
    trainer = Trainer(make(), config(epochs=2), run_dir=tmp_path)
    history = trainer.fit(train, val)
    columns, rows = read_log(tmp_path / "log.csv")
    assert columns == ["step", "epoch", "lr", "train_loss", "val_loss"]
    assert [int(r["step"]) for r in rows] == [4, 8] == [h["step"] for h in history]
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    for row, logged in zip(history, rows, strict=True):
        assert float(logged["val_loss"]) == pytest.approx(row["val_loss"], rel=1e-12)
        assert float(logged["train_loss"]) == pytest.approx(row["train_loss"], rel=1e-12)
        assert float(logged["lr"]) == LR
    png = tmp_path / "loss.png"
    assert png.is_file() and png.read_bytes().startswith(b"\x89PNG")


@pytest.mark.parametrize(("every", "steps"), [(2, [2, 4, 6, 8]), (3, [3, 4, 6, 8]), (5, [4, 5, 8])])
def test_eval_every_adds_to_epoch_ends_without_repeating_a_step(every, steps):
    train, val = dataset_data(8, 3)
    history = Trainer(make(), config(epochs=2, eval_every=every)).fit(train, val)
    assert [row["step"] for row in history] == steps


def test_a_callback_gets_every_event_in_order(tmp_path):
    recorder = Recorder()
    train, val = dataset_data(4, 3)
    Trainer(make(), config(epochs=2), run_dir=tmp_path, callbacks=[recorder]).fit(train, val)
    assert recorder.events == [
        "start",
        "step1",
        "step2",
        "evaluate2",
        "epoch_end1",
        "step3",
        "step4",
        "evaluate4",
        "epoch_end2",
        "end",
    ]
    assert not (tmp_path / "log.csv").exists()  # callbacks given: no default ones


# ---------------------------------------------------------------- 12. optimisers


@pytest.mark.parametrize(
    ("optimizer", "cls"),
    [
        ({"name": "sgd", "lr": 0.05, "momentum": 0.9, "nesterov": True}, torch.optim.SGD),
        ({"name": "adam", "lr": 0.02}, torch.optim.Adam),
        ({"name": "adamw", "lr": 0.02, "weight_decay": 0.01}, torch.optim.AdamW),
        ({"name": "rmsprop", "lr": 0.01}, torch.optim.RMSprop),
    ],
    ids=lambda v: v["name"] if isinstance(v, dict) else "",
)
def test_each_optimiser_reduces_the_loss(optimizer, cls):
    x, _ = sequences(8, 3)
    data = TensorDataset(x, torch.full((8, 3, 1), 0.5, dtype=DTYPE))
    trainer = Trainer(make(), config(optimizer=optimizer, epochs=10, shuffle=True))
    assert type(trainer.optimizer) is cls
    start = trainer.evaluate(data)["val_loss"]
    trainer.fit(data)
    assert trainer.evaluate(data)["val_loss"] < 0.5 * start


def test_nesterov_without_momentum_is_a_config_error():
    with pytest.raises(ConfigError, match=r"nesterov needs optimizer.name 'sgd' and momentum > 0"):
        validate(TrainConfig, {"optimizer": {"name": "sgd", "nesterov": True}})


def test_tensorboard_gets_every_evaluation(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    x, y = sequences(4, 3)
    trainer = Trainer(make(), config(epochs=3, tensorboard=True), run_dir=tmp_path)
    trainer.fit(TensorDataset(x, y), TensorDataset(x, y))
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    assert set(events.Tags()["scalars"]) == {"lr", "train_loss", "val_loss"}
    logged = events.Scalars("val_loss")
    assert [e.step for e in logged] == [r["step"] for r in trainer.history]
    assert [e.value for e in logged] == pytest.approx([r["val_loss"] for r in trainer.history], rel=1e-6)
