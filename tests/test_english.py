"""English corpora from Debian packages: GCIDE's dictd entries become lines of prose (headwords,
pronunciations, etymologies, source tags, authors and synonym lists dropped); a missing package is
named with the command that installs it."""

import gzip

import pytest

from rnnkit.data.english import dictionary_prose, gcide
from rnnkit.errors import DataError

ENTRY = """Abuse \\A*buse"\\, v. t. [imp. & p. p. {Abused}; p. pr. & vb. n.
   {Abusing}.] [F. abuser; L. abusus, p. p. of abuti to abuse,
   misuse; ab + uti to use. See {Use}.]
   1. To put to a wrong use; to misapply; to misuse; to put to a
      bad use; to use for a wrong purpose or end; to pervert.
      [1913 Webster]"""

QUOTE = """            This principle (if one may so abuse the word) shoots
            rapidly into popularity.              --Froude.
      [1913 Webster]"""


@pytest.mark.parametrize(
    "block, prose",
    [
        (ENTRY, "To put to a wrong use; to misapply; to misuse; to put to a bad use; to use for a wrong "
                "purpose or end; to pervert."),
        (QUOTE, "This principle (if one may so abuse the word) shoots rapidly into popularity."),
        ("   Syn: To maltreat; injure; revile; reproach; vilify.\n        [1913 Webster]", ""),
        ("   3. To revile; to disparage.\n      [1913 Webster]", ""),  # under five words
        ("   Note: Abuse is used of the {misapplication} of a thing to its wrong end.", "Note: Abuse is "
         "used of the misapplication of a thing to its wrong end."),
    ],
)  # fmt: skip
def test_gcide_blocks_become_prose(block, prose):
    assert dictionary_prose(block) == prose


def test_gcide_is_extracted_once_and_a_missing_package_is_named(tmp_path):
    with pytest.raises(DataError, match="apt-get install dict-gcide"):
        gcide(tmp_path / "cache", source=tmp_path / "missing.dict.dz")
    small = tmp_path / "small.dict.dz"
    small.write_bytes(gzip.compress(f"{ENTRY}\n\n{QUOTE}\n".encode()))
    with pytest.raises(DataError, match="gave 2 paragraphs, expected about 210,000: reinstall"):
        gcide(tmp_path / "cache", source=small)
    assert not (tmp_path / "cache" / "gcide.txt").exists()  # nothing half-made is left
