"""The Trainer: one loop every task model trains with, knowing only the task-model contract.

A task model offers ``loss(inputs, targets, lengths=None, state=None) -> (loss, state)`` and
``initial_state(batch_size)`` whose state is a named tuple of tensors with the batch along dim 1
(torch's (L*K, B, H) layout). Nothing else here knows what the model does (ULMFiT's options also
read its ``layer_groups()``).

Truncated BPTT lives here, once: with ``tbptt=k`` every batch is cut along time into chunks of k
steps, each chunk is one backward pass, and the state goes on to the next chunk detached. Batches
of a :class:`~rnnkit.data.Stream` continue one another, so the state is carried across them too and
reset row by row where the stream's ``reset`` mask says a sequence starts.

The rest of what the trainer does lives beside it: the data order, TBPTT chunks and step count in
:mod:`~rnnkit.train.batches`, the history and early stopping in :mod:`~rnnkit.train.evaluation`, the
NaN guard in :mod:`~rnnkit.train.nonfinite`, ULMFiT's discriminative rates and gradual unfreezing
in :mod:`~rnnkit.train.finetune`, and the checkpoint of its whole state (with the fallback to the
previous one on resume) in :mod:`~rnnkit.train.trainer_state`.
"""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from rnnkit.data import Batch, Stream, stack_pairs
from rnnkit.errors import ConfigError
from rnnkit.runtime import seed_everything
from rnnkit.train import checkpoint, distributed, evaluation, finetune, nonfinite, trainer_state
from rnnkit.train.batches import Data, count_steps, epoch_order, tbptt_chunks
from rnnkit.train.callbacks import Callback, default_callbacks
from rnnkit.train.options import TrainConfig
from rnnkit.train.schedules import LRSchedule, make_optimizer

__all__ = ["Data", "Trainer", "epoch_order"]


class Trainer:
    """Trains ``model`` by ``config``; writes logs, plots and checkpoints under ``run_dir`` (rank 0).

    Example:
        >>> trainer = Trainer(model, TrainConfig(epochs=5, batch_size=16), run_dir="runs/demo")
        >>> history = trainer.fit(train_dataset, val_dataset)   # rows of step, train_loss, val_loss, lr
    """

    def __init__(
        self,
        model: torch.nn.Module,
        config: TrainConfig,
        run_dir: str | Path | None = None,
        callbacks: list[Callback] | None = None,
        collate=stack_pairs,
        dist: distributed.Dist | None = None,
    ) -> None:
        self.config, self.collate = config, collate
        self.dist = dist or distributed.setup(config.device)
        if config.batch_size % self.dist.world_size:
            raise ConfigError(
                f"train.batch_size {config.batch_size} must divide evenly across "
                f"{self.dist.world_size} processes"
            )
        self.device = self.dist.device
        self.model = model.to(self.device)
        self.unfreezing = finetune.GradualUnfreezing(self.model) if config.gradual_unfreezing else None
        self.module = distributed.wrap(
            self.model, self.dist, config.checkpoint_activations, find_unused=config.gradual_unfreezing
        )
        self.run_dir = None if run_dir is None else Path(run_dir)
        if self.run_dir is not None and self.dist.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        if callbacks is None and self.run_dir is not None:
            callbacks = default_callbacks(self.run_dir, config.progress, config.tensorboard)
        self.callbacks = (callbacks or []) if self.dist.is_main else []
        if config.nan_policy == "restore" and self.run_dir is None:
            raise ConfigError("train.nan_policy 'restore' needs a run directory to keep checkpoints in")
        params = finetune.optimizer_params(self.model, config.optimizer)  # groups for discriminative rates
        self.optimizer = make_optimizer(params, config.optimizer)
        self.writer = checkpoint.Writer()  # checkpoints reach the disk in the background
        self.amp_dtype = None
        if config.amp and self.device.type == "cuda":
            self.amp_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        self.scaler = torch.amp.GradScaler("cuda") if self.amp_dtype == torch.float16 else None
        self.step = self.epoch = self.batch_index = self.chunk_index = self.micro = 0
        self.history: list[dict[str, Any]] = []
        self.best, self.best_step, self.bad_evals, self.best_model = None, None, 0, None
        self.carried = None  # state carried to the next chunk or stream batch
        self.skipped, self.stopped_early, self._stop = 0, False, False
        self._loss_sum, self._loss_count = 0.0, 0

    @property
    def checkpoint_path(self) -> Path | None:
        return None if self.run_dir is None else self.run_dir / "checkpoints" / "last.pt"

    # ---- the loop -------------------------------------------------------------------------------

    def fit(self, train: Data, val: Data | None = None, resume: bool = False) -> list[dict[str, Any]]:
        """Train until the epochs or the step budget run out or early stopping fires."""
        self._stream = isinstance(train, Stream)
        self.total_steps = count_steps(train, self.config)
        self.schedule = LRSchedule(self.optimizer, self.config.schedule, self.total_steps)
        if resume:
            self.load_checkpoint(self.checkpoint_path)
        else:
            seed_everything(self.config.seed + self.dist.rank)
            if self.config.nan_policy == "restore":
                self._save()
        self.model.train()
        for callback in self.callbacks:
            callback.on_train_start(self)
        try:
            while not self._finished():
                if self.unfreezing is not None:
                    self.unfreezing.apply(self.epoch)
                for index, batch in self._epoch_batches(train):
                    self.batch_index = index
                    self._run_batch(batch, val)
                    if self._finished():
                        break
                else:
                    self._end_epoch(val)
        finally:
            if self.unfreezing is not None:
                self.unfreezing.release()
            for callback in self.callbacks:
                callback.on_train_end(self)
            self.writer.wait(raise_failure=False)  # what was saved is on disk before any message
        self.save_checkpoint()
        trainer_state.drop_previous(self)  # finished: the fallback for a damaged last.pt is not needed
        if self.stopped_early and self.config.early_stopping.restore_best and self.best_model is not None:
            self.model.load_state_dict(self.best_model)
        return self.history

    def _finished(self) -> bool:
        c = self.config
        return (
            self._stop
            or (c.max_steps is not None and self.step >= c.max_steps)
            or (c.epochs is not None and self.epoch >= c.epochs)
        )

    def _end_epoch(self, val: Data | None) -> None:
        if self.micro % self.config.accumulate:  # a partial accumulation never spans epochs
            self._optimizer_step(val)
        self.epoch, self.batch_index, self.chunk_index = self.epoch + 1, 0, 0
        if not self.history or self.history[-1]["step"] != self.step:
            evaluation.evaluate_and_log(self, val)
        for callback in self.callbacks:
            callback.on_epoch_end(self)
        self._save()

    def _run_batch(self, batch: Batch, val: Data | None) -> None:
        lengths = batch.lengths
        batch = Batch(*(t if t is None or t is lengths else t.to(self.device) for t in batch))
        chunks = tbptt_chunks(batch, self.config.tbptt)
        if self.chunk_index == 0:
            self.carried = self._reset_rows(self.carried, batch.reset) if batch.reset is not None else None
        for index in range(self.chunk_index, len(chunks)):
            inputs, targets = chunks[index]
            stepped = self._micro_step(inputs, targets, lengths, last=index == len(chunks) - 1)
            self.chunk_index = index + 1
            if stepped and self.micro % self.config.accumulate == 0:
                self._optimizer_step(val)
                if self._finished():
                    return
        self.batch_index, self.chunk_index = self.batch_index + 1, 0

    def _micro_step(self, inputs, targets, lengths, last: bool) -> bool:
        """Forward and backward of one chunk; False when its loss was not finite and it was dropped."""
        boundary = (self.micro + 1) % self.config.accumulate == 0
        with nullcontext() if boundary or not self.dist.enabled else self.module.no_sync():
            with self._autocast():
                loss, state = self.module(inputs, targets, lengths=lengths, state=self.carried)
            value = distributed.mean_if_finite(loss.detach(), self.dist)  # the global batch's loss
            if value is None:
                nonfinite.handle(self, f"loss ({loss.item()})")
                return False
            scaled = loss / self.config.accumulate
            (scaled if self.scaler is None else self.scaler.scale(scaled)).backward()
        carry = self._stream or (self.config.tbptt is not None and not last)
        self.carried = _detach(state) if carry else None
        self.micro += 1
        self._loss_sum += value
        self._loss_count += 1
        self._last_loss, self._last_rows = value, inputs.shape[0] * self.dist.world_size
        return True

    def _optimizer_step(self, val: Data | None) -> None:
        c = self.config
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        params = [p for p in self.model.parameters() if p.grad is not None]
        if self.scaler is None and not nonfinite.finite_grads(params):  # before clipping, which spreads a NaN
            nonfinite.handle(self, f"gradient of {nonfinite.first_non_finite_grad(self.model)}")
            return
        if c.clip_grad_value is not None:
            torch.nn.utils.clip_grad_value_(params, c.clip_grad_value)
        if c.clip_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(params, c.clip_grad_norm)
        self.schedule.set(self.step)
        if self.scaler is None:
            self.optimizer.step()
        else:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.step, self.micro = self.step + 1, 0
        for callback in self.callbacks:
            callback.on_step_end(self, self._last_loss, self._last_rows)
        if c.eval_every and self.step % c.eval_every == 0:
            evaluation.evaluate_and_log(self, val)
        if c.checkpoint_every and self.step % c.checkpoint_every == 0:
            self._save()

    # ---- data -----------------------------------------------------------------------------------

    def _epoch_batches(self, train: Data):
        if self._stream:
            for index in range(self.batch_index, len(train)):
                yield index, self._my_rows(train[index])
            return
        per_rank = self.config.batch_size // self.dist.world_size
        order = epoch_order(
            len(train),
            self.config.shuffle,
            self.config.seed,
            self.epoch,
            self.dist.rank,
            self.dist.world_size,
            lengths=getattr(train, "lengths", None) if self.config.bucket else None,
            batch_size=self.config.batch_size,
            weights=getattr(train, "weights", None),
        )
        loader = DataLoader(
            train,
            batch_size=per_rank,
            sampler=order[self.batch_index * per_rank :],
            collate_fn=self.collate,
            num_workers=self.config.num_workers,
            generator=torch.Generator(),
        )  # never draws from the global RNG
        yield from enumerate(loader, start=self.batch_index)

    def _my_rows(self, batch: Batch) -> Batch:
        if not self.dist.enabled:
            return batch
        rows = slice(self.dist.rank, None, self.dist.world_size)
        return Batch(*(None if t is None else t[rows] for t in batch))

    def _reset_rows(self, state, reset: torch.Tensor):
        fresh = self.model.initial_state(reset.shape[0])
        if state is None:
            return fresh
        keep_fresh = reset.to(self.device).view(1, -1, 1)  # (1, B, 1): batch along dim 1
        return type(state)(*(torch.where(keep_fresh, f, s) for f, s in zip(fresh, state, strict=True)))

    # ---- evaluation -----------------------------------------------------------------------------

    @torch.no_grad()
    def evaluate(self, data: Data) -> dict[str, float]:
        """Mean loss over ``data`` (weighted by real target elements), in eval mode: {"val_loss": ...}."""
        self.model.eval()
        total = weight = 0.0
        state = None
        batches = (
            data
            if isinstance(data, Stream)
            else DataLoader(data, batch_size=self.config.batch_size, collate_fn=self.collate)
        )
        for batch in batches:
            inputs, targets = batch.inputs.to(self.device), batch.targets.to(self.device)
            if batch.reset is not None:
                state = self._reset_rows(state, batch.reset)
            with self._autocast():
                loss, state = self.model.loss(inputs, targets, lengths=batch.lengths, state=state)
            # a model's mean loss is over real targets: integer ids of -100 (padding) are not scored
            count = targets.numel() if targets.is_floating_point() else int((targets != -100).sum())
            total += loss.item() * count
            weight += count
            state = state if batch.reset is not None else None
        self.model.train()
        return {"val_loss": total / weight}

    def _autocast(self):
        if self.amp_dtype is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    # ---- checkpoints ----------------------------------------------------------------------------

    def save_checkpoint(self, path: str | Path | None = None) -> None:
        """Everything needed to go on exactly: weights, optimiser, schedule, RNG and data position;
        on disk when this returns."""
        self._save(path)
        self.writer.wait()

    def _save(self, path: str | Path | None = None) -> None:
        """As ``save_checkpoint``, the disk's part left to the writer's thread (training goes on)."""
        path = path or self.checkpoint_path
        if path is not None:
            trainer_state.save(self, Path(path))

    def load_checkpoint(self, path: str | Path | None) -> None:
        """Go on from a checkpoint; a damaged ``last.pt`` falls back to ``last.prev.pt`` with a warning."""
        trainer_state.load(self, path)


def _detach(state):
    if state is None or isinstance(state, torch.Tensor):
        return None if state is None else state.detach()
    return type(state)(*(_detach(s) for s in state))
