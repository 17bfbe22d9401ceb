import random
import unicodedata

from consumers.text_normalization import _converter, normalize
from tests.consumers.rules.test_text_match import texts_with_digits


def whole(text: str) -> str:
    """The normalisation read literally: NFKC, then OpenCC t2s, then case folding, over the whole text."""
    simplified: str = _converter().convert(unicodedata.normalize("NFKC", text))
    return simplified.casefold()


def test_normalising_piece_by_piece_is_normalising_the_whole_text() -> None:
    # digits next to what NFKC composes, decomposes or reorders, next to Traditional phrases OpenCC
    # converts as a whole, and all-ASCII texts (lower-cased only)
    tricky = ["e\u0301", "1\u0301", "1\u0327\u0301x", "Ａ1\u030a", "①2③", "憑藉", "憑1藉", "深沈2深沈", "１２3４",
              "ﬁ9ﬃ", "İ1ß", "ǅ0Ǆ", "\u3000 9\u00a0", "Straße 12", "TEXT STOP 4821", "\u1100\u1161", "\u11001\u1161",
              "가1\u11a8", "ﾊﾞ1ﾟ", "㍱0㎏", "\u0f73\u0f71"]
    rng = random.Random(11)
    alphabet = "".join({c for t in tricky for c in t}) + "0123456789 應還款元，：、ABCxyz\u0300\u0308"
    random_texts = ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 30))) for _ in range(3_000)]
    texts = texts_with_digits() + tricky + random_texts
    assert sum(t.isascii() for t in texts) > 200 and sum(not t.isascii() for t in texts) > 2_000
    for text in texts:
        assert normalize(text) == whole(text), text
