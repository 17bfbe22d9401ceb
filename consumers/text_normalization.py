"""Text normalisation for search and matching: Traditional -> Simplified Chinese (OpenCC),
full-width -> half-width (NFKC), case folding."""

from __future__ import annotations

import unicodedata
from functools import lru_cache

import opencc


@lru_cache(maxsize=1)
def _converter() -> opencc.OpenCC:
    return opencc.OpenCC("t2s")


def normalize(text: str) -> str:
    if not text:
        return ""
    simplified: str = _converter().convert(unicodedata.normalize("NFKC", text))
    return simplified.casefold()
