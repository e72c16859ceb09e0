"""A damaged ``last.pt`` on resume: the run goes on from the checkpoint kept before it, with a warning
naming the damaged file, and ends as the uninterrupted run does; with nothing readable left, a
TrainingError names each damaged file and says what to do, never a traceback from torch.load.

Runs are interrupted in this process: a callback raises KeyboardInterrupt, or the rename that puts a
new ``last.pt`` in place fails, as a kill between the two renames of a save would leave it.
"""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path

import pytest
import torch
from test_trainer import assert_weights_equal, config, dataset_data, make, read_log, snapshot

from rnnkit.errors import TrainingError
from rnnkit.runtime import seed_everything
from rnnkit.train import Callback, Trainer
from rnnkit.train import checkpoint as ckpt

STEPS_PER_EPOCH = 5  # 10 examples in batches of 2
OPTIONS = dict(shuffle=True, optimizer={"name": "adam", "lr": 0.01})


class InterruptAt(Callback):
    """Raises KeyboardInterrupt (as Ctrl-C would) after the first step of epoch ``epoch`` (from 0)."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_step_end(self, trainer, loss: float, samples: int) -> None:
        if trainer.epoch == self.epoch:
            raise KeyboardInterrupt


class StartRecorder(Callback):
    def on_train_start(self, trainer) -> None:
        self.position = (trainer.step, trainer.epoch)


def uninterrupted(root: Path, epochs: int) -> Trainer:
    train, val = dataset_data(10, 4)
    trainer = Trainer(make(dropout=0.3), config(epochs=epochs, **OPTIONS), run_dir=root / "whole")
    trainer.fit(train, val)
    return trainer


def resume(run: Path, epochs: int) -> tuple[Trainer, StartRecorder]:
    """Resume ``run`` as a fresh process would: other weights, other RNG states, default callbacks."""
    seed_everything(1234)
    trainer = Trainer(make(seed=1, dropout=0.3), config(epochs=epochs, **OPTIONS), run_dir=run)
    recorder = StartRecorder()
    trainer.callbacks.append(recorder)
    trainer.fit(*dataset_data(10, 4), resume=True)
    return trainer, recorder


def assert_same_run(resumed: Trainer, whole: Trainer) -> None:
    assert resumed.step == whole.step
    assert_weights_equal(snapshot(resumed.model), snapshot(whole.model), exact=True)
    assert resumed.history == whole.history
    assert read_log(resumed.run_dir / "log.csv") == read_log(whole.run_dir / "log.csv")


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


# ---------------------------------------------------------------- the fallback to last.prev.pt


def test_a_truncated_last_checkpoint_resumes_from_the_one_before_and_ends_as_the_whole_run(tmp_path):
    whole = uninterrupted(tmp_path, epochs=3)
    cut = tmp_path / "cut"
    trainer = Trainer(make(dropout=0.3), config(epochs=3, **OPTIONS), run_dir=cut, callbacks=[InterruptAt(2)])
    with pytest.raises(KeyboardInterrupt):
        trainer.fit(*dataset_data(10, 4))
    last, previous = cut / "checkpoints" / "last.pt", cut / "checkpoints" / "last.prev.pt"
    assert ckpt.load(last)["position"]["epoch"] == 2
    assert ckpt.load(previous)["position"]["epoch"] == 1
    truncate(last)

    with pytest.warns(UserWarning, match=r"last\.pt cannot be read \(torch\.load: .*\): resuming from"):
        resumed, start = resume(cut, epochs=3)
    assert start.position == (STEPS_PER_EPOCH, 1)  # epoch 1's checkpoint: epochs 2 and 3 run again
    assert_same_run(resumed, whole)
    assert sorted(p.name for p in (cut / "checkpoints").iterdir()) == ["best.pt", "last.pt"]


@pytest.mark.parametrize("links", [True, False], ids=["hard-links", "no-hard-links"])
def test_a_crash_while_saving_resumes_from_the_previous_checkpoint(tmp_path, monkeypatch, links):
    """A save keeps the old last.pt as last.prev.pt, then renames the new file to last.pt. Here that
    rename of epoch 2's save fails: epoch 1's checkpoint is all there is. With hard links last.pt
    itself is still epoch 1's; without them the old file was renamed away, last.pt is missing and
    resume warns and reads last.prev.pt."""
    whole = uninterrupted(tmp_path, epochs=2)
    cut = tmp_path / "cut"
    real_replace = os.replace

    def crash_after_keeping_the_previous(src, dst):
        if Path(dst).name == "last.pt" and (cut / "checkpoints" / "last.prev.pt").exists():
            raise OSError("killed between the renames")
        real_replace(src, dst)

    def no_links(src, dst):
        raise OSError("this file system has no hard links")

    monkeypatch.setattr(ckpt.os, "replace", crash_after_keeping_the_previous)
    if not links:
        monkeypatch.setattr(ckpt.os, "link", no_links)
    trainer = Trainer(make(dropout=0.3), config(epochs=2, **OPTIONS), run_dir=cut)
    with pytest.raises(TrainingError, match=r"could not be written \(killed between the renames\)"):
        trainer.fit(*dataset_data(10, 4))
    monkeypatch.undo()
    kept = ["best.pt", "last.prev.pt", "last.pt"] if links else ["best.pt", "last.prev.pt"]
    assert sorted(p.name for p in (cut / "checkpoints").iterdir() if not p.name.startswith(".")) == kept

    if links:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            resumed, start = resume(cut, epochs=2)
    else:
        with pytest.warns(UserWarning, match=r"last\.pt is missing .*: resuming from .*last\.prev\.pt"):
            resumed, start = resume(cut, epochs=2)
    assert start.position == (STEPS_PER_EPOCH, 1)
    assert_same_run(resumed, whole)


def damage_empty(path: Path) -> None:
    path.write_bytes(b"")


def damage_garbage(path: Path) -> None:
    path.write_bytes(b"not a checkpoint at all")


def damage_keys(path: Path) -> None:
    ckpt.atomic_save({"step": 3, "model": {}}, path)


def damage_type(path: Path) -> None:
    ckpt.atomic_save([1, 2, 3], path)


DAMAGE = {  # how the file is damaged, and what the message says about it
    "empty": (damage_empty, r"is empty"),
    "truncated": (truncate, r"cannot be read \(torch\.load: "),
    "garbage": (damage_garbage, r"cannot be read \(torch\.load: "),
    "missing keys": (damage_keys, r"lacks optimizer, schedule, scaler, ranks, position"),
    "not a dict": (damage_type, r"holds a list, not a checkpoint"),
}


def finished_run(root: Path, epochs: int = 1) -> Path:
    Trainer(make(), config(epochs=epochs), run_dir=root).fit(*dataset_data(4, 3))
    return root / "checkpoints" / "last.pt"


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_each_kind_of_damage_falls_back_to_the_previous_checkpoint(tmp_path, damage):
    damage_file, said = DAMAGE[damage]
    last = finished_run(tmp_path)
    ckpt.atomic_save(ckpt.load(last), last, keep_previous=True)  # last.prev.pt: the same good state
    damage_file(last)
    trainer = Trainer(make(seed=1), config(epochs=2), run_dir=tmp_path)
    with pytest.warns(UserWarning, match=rf"last\.pt {said}.*: resuming from .*last\.prev\.pt"):
        trainer.fit(*dataset_data(4, 3), resume=True)
    assert [row["step"] for row in trainer.history] == [2, 4]  # epoch 1 from the checkpoint, then 2


# ---------------------------------------------------------------- nothing readable


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_damaged_last_checkpoint_without_a_previous_one_is_a_training_error_naming_it(tmp_path, damage):
    damage_file, said = DAMAGE[damage]
    last = finished_run(tmp_path)
    assert not (last.parent / "last.prev.pt").exists()  # a finished run keeps last.pt and best.pt only
    damage_file(last)
    trainer = Trainer(make(), config(epochs=2), run_dir=tmp_path)
    with pytest.raises(TrainingError, match=rf"{re.escape(str(last))} {said}.*Train the run again"):
        trainer.fit(*dataset_data(4, 3), resume=True)


def test_when_both_checkpoints_are_damaged_each_is_named(tmp_path):
    last = finished_run(tmp_path)
    ckpt.atomic_save(ckpt.load(last), last, keep_previous=True)
    damage_empty(last)
    truncate(last.parent / "last.prev.pt")
    trainer = Trainer(make(), config(epochs=2), run_dir=tmp_path)
    with pytest.raises(TrainingError) as error:
        trainer.fit(*dataset_data(4, 3), resume=True)
    message = str(error.value)
    assert message.startswith(
        f"no checkpoint to resume from can be read: {last} is empty; "
        f"{last.parent / 'last.prev.pt'} cannot be read (torch.load: "
    )  # then torch's own words, which differ between versions
    assert message.endswith(
        "). Train the run again from the start (`rnnkit train` with --overwrite replaces it), "
        f"or remove {tmp_path}"
    )


def test_a_missing_last_checkpoint_without_a_previous_one_keeps_its_message(tmp_path):
    trainer = Trainer(make(), config(), run_dir=tmp_path)
    with pytest.raises(TrainingError, match=r"no checkpoint to resume from at .*: train first"):
        trainer.fit(*dataset_data(4, 3), resume=True)


# ---------------------------------------------------------------- keeping the previous checkpoint


def test_keep_previous_moves_the_old_file_aside_and_only_when_asked(tmp_path):
    path = tmp_path / "last.pt"
    ckpt.atomic_save({"value": torch.tensor([1.0])}, path, keep_previous=True)  # nothing to keep yet
    assert os.listdir(tmp_path) == ["last.pt"]
    ckpt.atomic_save({"value": torch.tensor([2.0])}, path, keep_previous=True)
    ckpt.atomic_save({"value": torch.tensor([3.0])}, path, keep_previous=True)
    assert sorted(os.listdir(tmp_path)) == ["last.prev.pt", "last.pt"]
    assert ckpt.load(path)["value"].item() == 3.0
    assert ckpt.load(ckpt.previous_path(path))["value"].item() == 2.0
    ckpt.atomic_save({"value": torch.tensor([4.0])}, path)  # not asked: the previous file stays as it was
    assert ckpt.load(ckpt.previous_path(path))["value"].item() == 2.0


def test_a_failed_write_leaves_the_previous_checkpoint_alone(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    ckpt.atomic_save({"value": torch.tensor([1.0])}, path)
    ckpt.atomic_save({"value": torch.tensor([2.0])}, path, keep_previous=True)

    def torn_save(obj, f):
        f.write(b"PK\x03\x04 half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(ckpt.torch, "save", torn_save)
    with pytest.raises(OSError, match="disk full"):
        ckpt.atomic_save({"value": torch.tensor([3.0])}, path, keep_previous=True)
    monkeypatch.undo()
    assert sorted(os.listdir(tmp_path)) == ["last.prev.pt", "last.pt"]
    assert ckpt.load(path)["value"].item() == 2.0
    assert ckpt.load(ckpt.previous_path(path))["value"].item() == 1.0


def test_a_save_after_a_crash_between_the_renames_keeps_the_previous_file(tmp_path):
    path = tmp_path / "last.pt"
    ckpt.atomic_save({"value": torch.tensor([1.0])}, ckpt.previous_path(path))  # last.pt moved, no new one
    ckpt.atomic_save({"value": torch.tensor([2.0])}, path, keep_previous=True)
    assert ckpt.load(path)["value"].item() == 2.0
    assert ckpt.load(ckpt.previous_path(path))["value"].item() == 1.0


def test_a_run_keeps_the_previous_checkpoint_while_it_trains_and_drops_it_when_done(tmp_path):
    kept = []

    class Look(Callback):
        def on_epoch_end(self, trainer) -> None:  # called before the epoch's checkpoint is saved
            trainer.writer.wait()  # the saves so far on disk (they are written in the background)
            previous = tmp_path / "checkpoints" / "last.prev.pt"
            kept.append(ckpt.load(previous)["position"]["step"] if previous.exists() else None)

    Trainer(make(), config(epochs=3), run_dir=tmp_path, callbacks=[Look()]).fit(*dataset_data(4, 3))
    assert kept == [None, None, 2]  # epoch 3 ends: last.pt holds epoch 2 (step 4), last.prev.pt epoch 1
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["best.pt", "last.pt"]


def test_the_background_writer_keeps_each_files_latest_save_and_reports_a_failure(tmp_path, monkeypatch):
    writer = ckpt.Writer()
    path = tmp_path / "last.pt"
    writer.save({"value": torch.tensor([0.0])}, path, keep_previous=True)
    writer.wait()  # on disk: the saves below keep it, or one of them, as last.prev.pt
    for value in range(1, 5):  # saves still waiting are replaced by newer ones of the same file
        writer.save({"value": torch.tensor([float(value)])}, path, keep_previous=True)
    writer.save({"value": torch.tensor([9.0])}, tmp_path / "best.pt")
    writer.wait()
    assert ckpt.load(path)["value"].item() == 4 and ckpt.load(tmp_path / "best.pt")["value"].item() == 9
    assert ckpt.load(ckpt.previous_path(path))["value"].item() < 4  # an earlier save, kept whole

    def full_disk(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ckpt.os, "fsync", full_disk)
    writer.save({"value": torch.tensor([5.0])}, path, keep_previous=True)
    with pytest.raises(TrainingError, match=r"not be written .*No space left.*the one before it is kept"):
        writer.wait()
    monkeypatch.undo()
    assert ckpt.load(path)["value"].item() == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pt", "last.prev.pt", "last.pt"]
    writer.wait()  # a failure is reported once


def test_a_writer_whose_thread_a_ctrl_c_kept_from_starting_writes_its_saves_itself(tmp_path, monkeypatch):
    """Ctrl-C can land inside ``Thread.start``: the thread is then set but never runs. wait() must
    neither raise "cannot join thread before it is started" nor lose the save."""
    started = []
    monkeypatch.setattr(ckpt.threading.Thread, "start", lambda thread: started.append(thread))
    writer = ckpt.Writer()
    writer.save({"value": torch.tensor([3.0])}, tmp_path / "last.pt")
    assert started and not tmp_path.joinpath("last.pt").exists()  # the thread never ran
    writer.wait()
    assert ckpt.load(tmp_path / "last.pt")["value"].item() == 3
    assert writer._thread is None
