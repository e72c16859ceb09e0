"""English texts that Debian packages ship, as plain-text corpora extracted once into rnnkit's cache.

- ``bible_kjv``: the King James Bible (public domain; ``apt-get install bible-kjv``), one verse a
  line under chapter headings, about 0.8 million words;
- ``gcide``: the GNU Collaborative International Dictionary of English (GPL; Webster's 1913 with
  WordNet and later additions; ``apt-get install dict-gcide``): its definitions, usage notes and
  the quotations from literature that illustrate them, one paragraph a line, about 3.7 million
  words of general English prose. Headwords, pronunciations, etymologies, source tags, authors'
  names and synonym lists are dropped.

    path = gcide(cache_dir)            # the text file, written on first use
"""

from __future__ import annotations

import gzip
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

from rnnkit.errors import DataError

GCIDE = Path("/usr/share/dictd/gcide.dict.dz")
_HEAD = re.compile(r"^[^\\\n]{1,80}\\[^\\]{0,80}\\,?\s*")  # the headword and its \pro*nun"ci*a`tion\
_BRACKETS = re.compile(r"\[[^\[\]]*\]")  # etymologies, [1913 Webster], [Obs.]
_AUTHOR = re.compile(r"--\s?[A-Z][\w.,&' -]*?\.(?=\s|$)")  # --Shak.
_LABELS = re.compile(r"^(?:(?:[a-z]{1,6}\.|\d+\.?|\([a-z]\)|&|;|,)\s*)+(?=[A-Z(\"])")  # n. 1. (a)
_MIN_WORDS = 5


def bible_kjv(directory: Path) -> Path:
    """The King James Bible as plain text, one verse per line under chapter headings.

    Extracted from Debian's ``bible-kjv-text`` with its reader ``bible`` (``apt-get install bible-kjv``,
    which `make lm` runs), without the verse numbers and the reader's line wrapping.
    """
    path = directory / "bible_kjv.txt"
    if path.is_file():
        return path
    program = shutil.which("bible") or next(
        (p for p in ("/usr/bin/bible", "/usr/games/bible") if Path(p).is_file()), None
    )
    if program is None:
        raise DataError(
            "dataset bible_kjv needs Debian's bible-kjv package: apt-get install bible-kjv "
            "(or run `make lm`, which installs it)"
        )
    raw = subprocess.run(
        [program, "gen1:1-rev22:21"], capture_output=True, text=True, check=True, env={"COLUMNS": "80"}
    ).stdout
    verses: list[str] = []
    for line in raw.splitlines():
        if not line.strip():
            continue
        number = re.match(r"^\s+\d+ (.*)$", line)
        if number:
            verses.append(number.group(1).strip())
        elif line.startswith(" ") and verses:
            verses[-1] += " " + line.strip()
        elif re.match(r"^\S.* \d+$", line):  # a chapter heading, e.g. "Genesis 1"
            verses.append(line.strip())
        elif verses:
            verses[-1] += " " + line.strip()
    if len(verses) < 30000:
        raise DataError(f"{program} printed {len(verses)} verses, expected about 31,000: reinstall bible-kjv")
    _write(path, "\n".join(verses) + "\n")
    return path


def gcide(directory: Path, source: Path = GCIDE) -> Path:
    """The dictionary's prose as plain text, one paragraph a line (module docs)."""
    path = directory / "gcide.txt"
    if path.is_file():
        return path
    if not source.is_file():
        raise DataError(
            f"dataset gcide needs Debian's dict-gcide package ({source} is missing): apt-get install "
            "dict-gcide (or run `make lm-pretrain`, which installs it)"
        )
    with gzip.open(source, "rt", encoding="utf-8", errors="replace") as file:
        paragraphs = [p for p in map(dictionary_prose, re.split(r"\n\s*\n", file.read())) if p]
    if len(paragraphs) < 100_000:
        raise DataError(
            f"{source} gave {len(paragraphs)} paragraphs, expected about 210,000: reinstall dict-gcide"
        )
    _write(path, "\n".join(paragraphs) + "\n")
    return path


def dictionary_prose(block: str) -> str:
    """One block of a dictd-format GCIDE entry as a line of prose, or "" when it holds none."""
    text = " ".join(line.strip() for line in block.splitlines() if line.strip())
    if not text or text.startswith(("Syn:", "00-database", "00database")):
        return ""
    text = _HEAD.sub("", text)
    for _ in range(3):  # brackets nest in etymologies
        text = _BRACKETS.sub("", text)
    text = _AUTHOR.sub("", text)
    text = re.sub(r"\s+", " ", text.replace("{", "").replace("}", "").replace("\\", "")).strip()
    text = _LABELS.sub("", text).strip()
    if len(text.split()) < _MIN_WORDS or "[" in text or "]" in text:
        return ""
    return text


def _write(path: Path, text: str) -> None:
    """``text`` into ``path`` whole or not at all (a temporary file renamed over it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


DATASETS: dict[str, Callable[[Path], Path]] = {"bible_kjv": bible_kjv, "gcide": gcide}
