"""Piano rolls and the music task: sampling a score into a roll, the roll -> MIDI -> roll round trip,
transposition, the readers, the piano-roll model (its likelihood, padding, carried state, sampling),
the baselines, and the task end to end with ``compose``, ``score`` and ``rnnkit generate``."""

import math

import music21
import numpy as np
import pytest
import torch
from helpers import write_run_config

import rnnkit
from rnnkit.cli.main import main
from rnnkit.data.music import (
    KEYS,
    count_notes,
    read_pieces,
    read_score,
    score_to_roll,
    transpose_to_c,
    write_midi,
)
from rnnkit.errors import ConfigError, DataError
from rnnkit.models import PianoRollConfig, PianoRollModel, build_model
from rnnkit.run import train_run
from rnnkit.tasks import music

C4, E4, G4 = 60 - 21, 64 - 21, 67 - 21  # columns of the roll


def short_piece() -> np.ndarray:
    """Twelve steps: a step of silence, a held C major chord whose E goes on a step longer, a melody
    that comes back to that E after a step, a two-note chord at both ends of the keyboard: 7 notes."""
    roll = np.zeros((12, KEYS), bool)
    roll[1:5, [C4, E4, G4]] = True
    roll[5, E4] = roll[7, E4] = True  # the chord's E held on, then the same pitch again
    roll[6, G4 + 12] = True
    roll[8:12, [0, KEYS - 1]] = True
    return roll


@pytest.mark.parametrize("steps_per_quarter", [1, 2, 4])
def test_a_roll_written_as_midi_reads_back_the_same(tmp_path, steps_per_quarter):
    roll = short_piece()
    path = write_midi(roll, tmp_path / "piece.mid", steps_per_quarter)
    assert np.array_equal(read_score(path, steps_per_quarter), roll)
    assert count_notes(roll) == 3 + 2 + 2


def test_a_score_is_sampled_at_each_step():
    part = music21.stream.Part()
    part.insert(0, music21.chord.Chord(["C4", "E4"], quarterLength=2))
    part.insert(2, music21.note.Note("G4", quarterLength=0.5))  # an eighth on the beat
    part.insert(2.5, music21.note.Note("A4", quarterLength=0.5))  # an eighth between beats
    part.insert(3, music21.note.Note("B4", quarterLength=1).getGrace())  # takes no time
    part.insert(3, music21.note.Note("C5", quarterLength=1))
    quarters, eighths = score_to_roll(part, 1), score_to_roll(part, 2)
    on = lambda roll: [sorted((np.flatnonzero(r) + 21).tolist()) for r in roll]  # noqa: E731
    assert on(quarters) == [[60, 64], [60, 64], [67], [72]]  # the A between beats is not seen
    assert on(eighths) == [[60, 64]] * 4 + [[67], [69], [72], [72]]


def test_transposition_takes_the_tonic_to_c_by_at_most_six_semitones():
    roll = np.zeros((1, KEYS), bool)
    roll[0, 67 - 21] = True  # G4
    assert np.flatnonzero(transpose_to_c(roll, 7))[0] + 21 == 72  # G major: up 5 to C5
    assert np.flatnonzero(transpose_to_c(roll, 2))[0] + 21 == 65  # D: down 2
    roll[0, 0] = True
    with pytest.raises(DataError, match="takes notes off the keyboard"):
        transpose_to_c(roll, 2)


def test_a_folder_of_midi_files_and_an_npz_of_rolls_read_as_the_same_pieces(tmp_path):
    rolls = [short_piece(), short_piece()[1:][::-1]]  # a roll from a file ends with a note
    (tmp_path / "scores").mkdir()
    for i, roll in enumerate(rolls):
        write_midi(roll, tmp_path / "scores" / f"piece{i}.mid")
    (tmp_path / "scores" / "notes.txt").write_text("not a score")
    np.savez(tmp_path / "rolls.npz", rolls=np.concatenate(rolls), lengths=[len(r) for r in rolls])
    folder, arrays = read_pieces(tmp_path / "scores"), read_pieces(tmp_path / "rolls.npz")
    assert folder.names == ["piece0", "piece1"] and arrays.names == ["piece 0", "piece 1"]
    for a, b, roll in zip(folder.rolls, arrays.rolls, rolls, strict=True):
        assert np.array_equal(a, roll) and np.array_equal(b, roll)


@pytest.mark.parametrize(
    "write, message",
    [
        (lambda p: (p / "empty").mkdir(), "holds no scores"),
        (lambda p: (p / "x.mid").write_bytes(b"MThd broken"), "not a score music21 can read"),
        (lambda p: np.savez(p / "x.npz", rolls=np.zeros((4, KEYS))), r"lacks \['lengths'\]"),
        (lambda p: np.savez(p / "x.npz", rolls=np.zeros((4, KEYS)), lengths=[3]), "add up to the rows"),
        (lambda p: np.savez(p / "x.npz", rolls=np.zeros((4, 12)), lengths=[4]), r"must be \(T, 88\)"),
        (lambda p: np.savez(p / "x.npz", rolls=np.full((4, KEYS), 0.5), lengths=[4]), "must hold 0/1"),
        (lambda p: (p / "x.csv").write_text("a,b\n"), "give a folder of scores"),
    ],
)
def test_malformed_music_inputs_are_named(tmp_path, write, message):
    write(tmp_path)
    target = next(iter(sorted(tmp_path.iterdir())))
    with pytest.raises(DataError, match=message):
        read_pieces(target)


def tiny_model(**keys) -> PianoRollModel:
    torch.manual_seed(0)
    return build_model({"name": "piano_roll", "hidden_size": 8, **keys})


def test_the_loss_is_each_frames_bernoulli_log_likelihood_averaged_over_real_frames():
    model = tiny_model()
    rolls = (torch.rand(2, 5, KEYS) < 0.1).float()
    inputs = torch.cat([torch.zeros(2, 1, KEYS), rolls[:, :-1]], 1)
    loss, _ = model.loss(inputs, rolls, lengths=torch.tensor([5, 3]))
    probs, _ = model.predict(inputs)
    nll = -(rolls * probs.log() + (1 - rolls) * (1 - probs).log()).sum(-1)  # (2, 5)
    assert loss.item() == pytest.approx((nll[0].sum() + nll[1, :3].sum()).item() / 8, rel=1e-5)


def test_padding_changes_no_frame_and_a_piece_read_in_chunks_equals_it_read_whole():
    model = tiny_model(num_layers=2)
    a, b = (torch.rand(1, 7, KEYS) < 0.1).float(), (torch.rand(1, 4, KEYS) < 0.1).float()
    padded = torch.cat([a, torch.cat([b, torch.zeros(1, 3, KEYS)], 1)])
    nll, _ = model.frame_nll(padded, padded, lengths=torch.tensor([7, 4]))
    alone, _ = model.frame_nll(b, b)
    torch.testing.assert_close(nll[1, :4], alone[0])
    assert nll[1, 4:].abs().sum() == 0
    whole, _ = model(a)
    first, state = model(a[:, :3])
    rest, _ = model(a[:, 3:], state)
    torch.testing.assert_close(torch.cat([first, rest], 1), whole)


def test_sampling_is_seeded_and_continues_a_primer():
    model = tiny_model()
    seeded = lambda seed: model.sample(6, 2, generator=torch.Generator().manual_seed(seed))  # noqa: E731
    assert seeded(1).shape == (2, 6, KEYS) and seeded(1).dtype == torch.bool
    assert torch.equal(seeded(1), seeded(1)) and not torch.equal(seeded(1), seeded(2))
    primer = torch.zeros(1, 3, KEYS)
    primer[0, :, C4] = 1
    greedy = model.sample(2, primer=primer, greedy=True)
    probs, _ = model.predict(torch.cat([torch.zeros(1, 1, KEYS), primer], 1))
    assert torch.equal(greedy[0, 0], probs[0, -1] > 0.5)  # the first new frame follows the primer
    with pytest.raises(ConfigError, match="temperature must be > 0"):
        model.sample(2, temperature=0)


def test_a_model_that_reads_backwards_is_refused():
    with pytest.raises(ConfigError, match="reads forward: set bidirectional=false"):
        build_model({"name": "piano_roll", "bidirectional": True})
    assert PianoRollConfig().num_keys == KEYS


def test_the_baselines_are_the_training_frequencies_with_add_one_smoothing():
    roll = np.zeros((4, KEYS), bool)
    roll[1:, C4] = True  # off, on, on, on
    fitted = music.baselines([roll])
    assert fitted["frequency"][C4] == pytest.approx((3 + 1) / (4 + 2))
    assert fitted["after_off"][C4] == pytest.approx((1 + 1) / (2 + 2))  # the silent start, step 0
    assert fitted["after_on"][C4] == pytest.approx((2 + 1) / (2 + 2))
    assert fitted["frequency"][0] == pytest.approx(1 / 6)


def write_patterns(tmp_path, n: int = 24) -> None:
    """Pieces that cycle through three chords, each held for two steps, from a random point."""
    chords = [[C4, E4, G4], [C4 + 5, C4 + 9, C4 + 12], [C4 + 7, C4 + 11, C4 + 14]]
    rng, rolls = np.random.default_rng(0), []
    for _ in range(n):
        start, steps = int(rng.integers(0, 3)), int(rng.integers(10, 16))
        roll = np.zeros((steps, KEYS), np.uint8)
        for t in range(steps):
            roll[t, chords[(start + t // 2) % 3]] = 1
        rolls.append(roll)
    np.savez(tmp_path / "patterns.npz", rolls=np.concatenate(rolls), lengths=[len(r) for r in rolls])


@pytest.mark.parametrize("output", ["independent", "nade"])
def test_the_task_learns_a_pattern_beats_its_baselines_and_composes(tmp_path, capsys, output):
    write_patterns(tmp_path)
    data = {"path": "patterns.npz", "steps_per_quarter": 2, "transpose": "none", "test": 0.25}
    train = {"epochs": 40, "batch_size": 4, "optimizer": {"lr": 0.02}}
    config = write_run_config(tmp_path, "music", data, {"hidden_size": 24, "output": output}, train)
    said = []
    metrics = train_run(config, log=said.append)
    table = "\n".join(said)
    assert "6 pieces" in table and "(a step is an eighth note)" in table
    assert metrics["model"]["nll"] < 0.5 * metrics["per-key Markov"]["nll"]
    assert metrics["per-key Markov"]["nll"] < metrics["frame-independent"]["nll"]
    assert metrics["model"]["frame_accuracy"] > 0.8
    run = tmp_path / "run"
    assert {"piano_roll.png", "sample_1.mid", "sample_2.mid"} <= {p.name for p in run.iterdir()}

    composer = rnnkit.load(run / "bundle")
    piece = composer.compose(8, seed=3)
    assert piece.shape == (8, KEYS) and np.array_equal(piece, composer.compose(8, seed=3))
    primer = np.zeros((2, KEYS), bool)
    primer[:, [C4, E4, G4]] = True  # the first chord for its two steps: the second one follows
    following = composer.compose(2, primer=primer, greedy=True)
    assert set(np.flatnonzero(following[0])) == {C4 + 5, C4 + 9, C4 + 12}
    path = composer.write_midi(piece, tmp_path / "piece.mid")
    assert np.array_equal(read_score(path, 2), piece[: np.flatnonzero(piece.any(1))[-1] + 1])
    scored = composer.score(tmp_path / "piece.mid")
    assert math.isfinite(scored["nll"]) and 0 <= scored["frame_accuracy"] <= 1
    with pytest.raises(DataError, match=r"the piece must be \(T, 88\)"):
        composer.score(np.zeros((4, 12)))

    session = composer.session()
    session.feed(piece[:3])
    followed = session.feed(piece[3:])
    assert followed["steps_read"] == 8 and followed["nll"] == pytest.approx(
        composer.score(piece)["nll"], rel=1e-5
    )
    assert all(21 <= p <= 108 for p in followed["likeliest_next"])

    assert main(["generate", str(run / "bundle"), "--output", str(tmp_path / "new.mid"), "--seed", "0",
                 "--max-tokens", "12"]) == 0  # fmt: skip
    assert capsys.readouterr().out.startswith(f"wrote {tmp_path / 'new.mid'}: 12 steps")
    assert main(["generate", str(run / "bundle")]) == 2
    assert "give an output path (--output piece.mid)" in capsys.readouterr().err


def test_a_config_with_no_source_or_two_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="give path or dataset, one of them"):
        write_run_config(tmp_path, "music", {"path": "x.npz", "dataset": "bach_chorales"})


def test_a_nade_frame_distribution_sums_to_one_and_its_greedy_frame_is_its_own_choice():
    model = build_model(
        {"name": "piano_roll", "num_keys": 4, "hidden_size": 6, "output": "nade", "nade_size": 5}
    )
    with torch.no_grad():
        model.W.normal_(0, 1.0), model.V.normal_(0, 1.0)  # keys that pull on one another
    inputs = torch.tensor([[[1.0, 0, 1, 0], [0, 1, 0, 0]]])  # (1, 2, 4): the frame after each is scored
    frames = torch.tensor([[int(b) for b in f"{i:04b}"] for i in range(16)], dtype=torch.float32)
    total = torch.zeros(2)
    for frame in frames:
        nll, _ = model.frame_nll(inputs, frame.expand(1, 2, 4))
        total += (-nll[0]).exp()
    torch.testing.assert_close(total, torch.ones(2))
    guess = model.guess(inputs)  # (1, 2, 4)
    features, _ = model(inputs)
    probs = torch.sigmoid(model.logits(features[0], guess[0].float()))[None]
    assert torch.equal(probs > 0.5, guess)  # key k on exactly where p(k | the guessed keys below) > 1/2
    with pytest.raises(ConfigError, match="use frame_nll, guess or sample"):
        model.predict(inputs)


def test_a_nade_models_padded_frames_change_nothing_and_it_samples_and_trains():
    model = tiny_model(output="nade", nade_size=6)
    a, b = (torch.rand(1, 7, KEYS) < 0.1).float(), (torch.rand(1, 4, KEYS) < 0.1).float()
    padded = torch.cat([a, torch.cat([b, torch.zeros(1, 3, KEYS)], 1)])
    nll, _ = model.frame_nll(padded, padded, lengths=torch.tensor([7, 4]))
    torch.testing.assert_close(nll[1, :4], model.frame_nll(b, b)[0][0])
    loss, _ = model.loss(padded, padded, lengths=torch.tensor([7, 4]))
    loss.backward()
    assert model.W.grad.abs().sum() > 0 and model.V.grad.abs().sum() > 0
    assert model.sample(3, 2, generator=torch.Generator().manual_seed(0)).shape == (2, 3, KEYS)
