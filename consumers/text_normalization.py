"""Text normalisation for search and matching: Traditional -> Simplified Chinese (OpenCC),
full-width -> half-width (NFKC), case folding.

A text is normalised piece by piece between its runs of ASCII digits, each distinct piece once:
collection texts are templates filled in with amounts, dates and card digits, so their pieces repeat
where the texts do not. The result is the same as normalising the whole text, because no step lets a
digit act on its neighbours: NFKC composes no pair with an ASCII digit (no canonical decomposition
holds one) and leaves it as it is, OpenCC's t2s dictionaries hold no key with an ASCII character
(dumped with the wheel's `opencc_dict`), so no conversion spans a digit, and case folding maps each
character alone. For the same reasons an all-ASCII text only needs lower-casing.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

import opencc

_ASCII_DIGIT_RUNS = re.compile(r"([0-9]+)")


@lru_cache(maxsize=1)
def _converter() -> opencc.OpenCC:
    return opencc.OpenCC("t2s")


def normalize(text: str) -> str:
    if not text:
        return ""
    if text.isascii():
        return text.lower()
    pieces = _ASCII_DIGIT_RUNS.split(text)  # text, digits, text, ...: the digits stand as they are
    pieces[::2] = map(_normalize_piece, pieces[::2])
    return "".join(pieces)


@lru_cache(maxsize=50_000)
def _normalize_piece(piece: str) -> str:
    if not piece:
        return ""
    simplified: str = _converter().convert(unicodedata.normalize("NFKC", piece))
    return simplified.casefold()
