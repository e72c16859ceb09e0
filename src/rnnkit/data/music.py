"""Piano rolls: pieces of music as (T, 88) binary arrays, read from and written to MIDI with music21.

    roll = read_score("chorale.mid", steps_per_quarter=2)    # (T, 88) bool: key k sounds at step t
    write_midi(roll, "out.mid", steps_per_quarter=2)         # runs of sounding steps become notes
    pieces = bach_chorales(steps_per_quarter=1, transpose="c")   # music21's 371 chorales, cached

Column k is the piano's key k, MIDI pitch 21 + k (A0 .. C8). Time is sampled, as the JSB Chorales
benchmark samples it (Boulanger-Lewandowski et al. 2012): step t is the instant ``t /
steps_per_quarter`` quarter notes into the piece, and key k is on at step t when a note of that
pitch sounds then (its onset at or before the instant, its end after it). A note shorter than a step
that falls between two instants is not seen; a step of a quarter note keeps a chorale's harmony, a
step of an eighth (``steps_per_quarter: 2``) its passing notes too. Writing a roll back, each run of
consecutive "on" steps of a key is one note, so ``read(write(roll)) == roll`` (two repeated notes of
one pitch in adjacent steps read as one held note: a roll cannot tell them apart), except that a
roll read from a file ends with its last note: silent steps at the end are not kept.

``transpose="c"`` moves each piece by at most six semitones so that its key's tonic is C (major
pieces to C major, minor ones to C minor; the key is music21's Krumhansl-Schmuckler estimate), as
JSB Chorales was prepared. music21 is an optional extra: ``pip install 'rnnkit[music]'``.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rnnkit.errors import DataError, RnnkitError
from rnnkit.files import cache_dir, locked

KEYS = 88
LOWEST = 21  # MIDI pitch of the lowest piano key, A0
SCORE_SUFFIXES = (".mid", ".midi", ".mxl", ".musicxml", ".xml", ".krn", ".abc")


def _music21():
    try:
        import music21
    except ImportError:
        raise RnnkitError("reading and writing MIDI needs music21: pip install 'rnnkit[music]'") from None
    return music21


def score_to_roll(score: Any, steps_per_quarter: int = 1) -> np.ndarray:
    """A music21 score (or any stream) sampled into a (T, 88) bool roll (module docs)."""
    notes = []
    for element in score.flatten().notes:
        start, length = float(element.offset), float(element.quarterLength)
        if length <= 0:  # grace notes take no time
            continue
        for pitch in element.pitches:
            notes.append((start, start + length, pitch.midi))
    if not notes:
        raise DataError("the piece has no notes")
    end = max(stop for _, stop, _ in notes)  # silence after the last note is not kept
    roll = np.zeros((_step(end, steps_per_quarter), KEYS), dtype=bool)
    for start, stop, midi in notes:
        if not LOWEST <= midi < LOWEST + KEYS:
            raise DataError(
                f"pitch {midi} (MIDI) is outside the piano's 88 keys ({LOWEST}..{LOWEST + KEYS - 1})"
            )
        roll[_step(start, steps_per_quarter) : _step(stop, steps_per_quarter), midi - LOWEST] = True
    return roll


def _step(time: float, steps_per_quarter: int) -> int:
    """The first step at or after ``time`` quarter notes (a hair of float error forgiven)."""
    return math.ceil(time * steps_per_quarter - 1e-6)


def roll_to_score(roll: np.ndarray, steps_per_quarter: int = 1, bpm: float = 90.0) -> Any:
    """A music21 score with one note per run of consecutive "on" steps of each key.

    The notes go into as few parts as hold them without overlaps (each part one melodic line, so a
    chorale comes out in about four): music21 writes overlapping notes of one part into MIDI wrongly
    when it splits them at bar lines.
    """
    music21 = _music21()
    roll = check_roll(roll)
    padded = np.pad(roll, ((1, 1), (0, 0))).astype(np.int8)  # (T + 2, 88)
    changes = np.diff(padded, axis=0)  # +1 where a run starts, -1 one step after it ends
    notes = sorted(
        (int(start), int(stop), key)
        for key in range(KEYS)
        for start, stop in zip(
            np.flatnonzero(changes[:, key] == 1), np.flatnonzero(changes[:, key] == -1), strict=True
        )
    )
    lines: list[list[tuple[int, int, int]]] = []
    for note in notes:  # greedy interval colouring: the first line free at the note's start
        line = next((line for line in lines if line[-1][1] <= note[0]), None)
        if line is None:
            lines.append(line := [])
        line.append(note)
    score = music21.stream.Score()
    for i, line in enumerate(lines or [[]]):
        part = music21.stream.Part()
        if i == 0:
            part.insert(0, music21.tempo.MetronomeMark(number=bpm))
        for start, stop, key in line:
            note = music21.note.Note(LOWEST + key, quarterLength=(stop - start) / steps_per_quarter)
            part.insert(start / steps_per_quarter, note)
        score.insert(0, part)
    return score


def write_midi(roll: np.ndarray, path: str | Path, steps_per_quarter: int = 1, bpm: float = 90.0) -> Path:
    """Write ``roll`` as a standard MIDI file at ``bpm`` quarter notes a minute."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    roll_to_score(roll, steps_per_quarter, bpm).write("midi", fp=str(path))
    return path


def read_score(path: str | Path, steps_per_quarter: int = 1, transpose: str = "none") -> np.ndarray:
    """A MIDI, MusicXML, Humdrum or ABC file (what music21 reads) as a (T, 88) bool roll."""
    music21 = _music21()
    path = Path(path)
    if not path.is_file():
        raise DataError(f"no score at {path}")
    try:
        score = music21.converter.parse(str(path))
    except Exception as error:  # music21 raises many types for a file it cannot read
        raise DataError(f"{path} is not a score music21 can read ({type(error).__name__}: {error})") from None
    try:
        roll = score_to_roll(score, steps_per_quarter)
        return transpose_to_c(roll, _tonic(score)) if transpose == "c" else roll
    except DataError as error:
        raise DataError(f"{path}: {error}") from None


def count_notes(roll: np.ndarray) -> int:
    """The notes a roll holds: runs of consecutive "on" steps of a key."""
    roll = check_roll(roll).astype(np.int8)
    return int((np.diff(roll, axis=0, prepend=0) == 1).sum())


def check_roll(roll: Any, name: str = "the roll") -> np.ndarray:
    """``roll`` as a (T, 88) bool array; a clear error for another shape or values other than 0/1."""
    array = np.asarray(roll)
    if array.ndim != 2 or array.shape[1] != KEYS:
        raise DataError(f"{name} must be (T, {KEYS}): one column per piano key; got shape {array.shape}")
    if array.dtype != bool:
        if not np.issubdtype(array.dtype, np.number) or not np.isin(array, (0, 1)).all():
            raise DataError(f"{name} must hold 0/1 (or True/False) values, one per step and key")
        array = array.astype(bool)
    return array


def transpose_to_c(roll: np.ndarray, tonic: int) -> np.ndarray:
    """``roll`` moved by the interval of at most six semitones that takes pitch class ``tonic`` to C."""
    shift = -tonic % 12
    if shift > 6:
        shift -= 12
    moved = np.zeros_like(roll)
    if shift >= 0:
        moved[:, shift:] = roll[:, : KEYS - shift]
        lost = roll[:, KEYS - shift :].any()
    else:
        moved[:, :shift] = roll[:, -shift:]
        lost = roll[:, :-shift].any()
    if lost:
        raise DataError(f"moving the piece by {shift} semitones takes notes off the keyboard")
    return moved


class Pieces:
    """Named piano rolls, each (T_i, 88) bool."""

    def __init__(self, rolls: Sequence[np.ndarray], names: Sequence[str]) -> None:
        self.rolls, self.names = list(rolls), list(names)

    def __len__(self) -> int:
        return len(self.rolls)

    def subset(self, indices) -> Pieces:
        return Pieces([self.rolls[i] for i in indices], [self.names[i] for i in indices])


def read_pieces(path: str | Path, steps_per_quarter: int = 1, transpose: str = "none") -> Pieces:
    """Every score in a folder (MIDI, MusicXML, ...; sorted by name), one score file, or an ``.npz``
    of rolls (``rolls`` (sum T_i, 88) 0/1, ``lengths`` (N,), optional ``names``)."""
    path = Path(path)
    if path.suffix == ".npz":
        return _read_npz(path)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in SCORE_SUFFIXES)
        if not files:
            raise DataError(f"{path} holds no scores ({', '.join(SCORE_SUFFIXES)})")
    elif path.suffix.lower() in SCORE_SUFFIXES:
        files = [path]
    else:
        raise DataError(
            f"{path}: give a folder of scores, a score ({', '.join(SCORE_SUFFIXES)}) or an .npz of rolls"
        )
    return Pieces([read_score(f, steps_per_quarter, transpose) for f in files], [f.stem for f in files])


def _read_npz(path: Path) -> Pieces:
    if not path.is_file():
        raise DataError(f"no file at {path}")
    try:
        arrays = np.load(path, allow_pickle=False)
        missing = [key for key in ("rolls", "lengths") if key not in arrays]
        if missing:
            raise DataError(f"{path} lacks {missing}: an .npz of pieces holds rolls and lengths (and names)")
        rolls, lengths = arrays["rolls"], arrays["lengths"]
        names = [str(n) for n in arrays["names"]] if "names" in arrays else None
    except (OSError, ValueError) as error:
        raise DataError(f"{path} is not a readable .npz ({error})") from None
    lengths = np.asarray(lengths)
    if lengths.ndim != 1 or (lengths < 1).any() or lengths.sum() != len(rolls):
        raise DataError(f"{path}: lengths must be >= 1 and add up to the rows of rolls ({len(rolls)})")
    rolls = check_roll(rolls, f"{path}'s rolls")
    names = names or [f"piece {i}" for i in range(len(lengths))]
    if len(names) != len(lengths):
        raise DataError(f"{path}: {len(names)} names for {len(lengths)} pieces")
    return Pieces(np.split(rolls, np.cumsum(lengths)[:-1]), names)


def _tonic(score: Any) -> int:
    """The pitch class of the piece's tonic (music21's key estimate)."""
    return score.analyze("key").tonic.pitchClass


def bach_chorales(steps_per_quarter: int = 1, transpose: str = "c") -> Pieces:
    """The 371 four-part chorales of music21's corpus (Riemenschneider's numbering), as rolls.

    Parsing them takes about a minute; the rolls are cached in rnnkit's cache directory
    (``<cache>/music``) the first time and read from there afterwards."""
    directory = cache_dir("music")
    path = directory / f"bach_chorales_{steps_per_quarter}_{transpose}.npz"
    with locked(directory):
        if not path.is_file():
            _cache_chorales(path, steps_per_quarter, transpose)
    return _read_npz(path)


def _cache_chorales(path: Path, steps_per_quarter: int, transpose: str) -> None:
    music21 = _music21()
    names = list(music21.corpus.chorales.Iterator(returnType="filename"))
    rolls, live = [], sys.stderr.isatty()
    print(
        f"reading the {len(names)} Bach chorales of music21's corpus once (about a minute)", file=sys.stderr
    )
    for i, name in enumerate(names, 1):
        if live:
            print(f"\r  {i}/{len(names)}", end="", file=sys.stderr, flush=True)
        score = music21.corpus.parse(name)
        roll = score_to_roll(score, steps_per_quarter)
        rolls.append(transpose_to_c(roll, _tonic(score)) if transpose == "c" else roll)
    if live:
        print(file=sys.stderr)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.npz")
    np.savez_compressed(
        tmp, rolls=np.concatenate(rolls).astype(np.uint8), lengths=[len(r) for r in rolls], names=names
    )
    os.replace(tmp, path)
