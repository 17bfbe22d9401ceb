"""Content matching: normalise text, keep only the collector's words, find lexicon phrases.

Normalisation (the same for texts and for lexicon entries): NFKC (full-width -> half-width),
OpenCC Traditional -> Simplified, case folding; punctuation and spacing removed, except one space
between two ASCII words so English phrases keep their word boundaries; spelled-out letters
("c n m", "s.b") joined; abbreviations and homophones (cnm, 草泥马, ...) replaced by their canonical
form from `lexicons/expansions.txt`. One Aho-Corasick automaton holds every phrase of every
category; ASCII phrases count only on word boundaries.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import ahocorasick

from consumers.text_normalization import normalize

LEXICON_DIR = Path(__file__).parent / "lexicons"

_SEPARATORS = re.compile(r"[\W_]+")
# Both start with what they consume (a letter, a space), not a look-behind, so the regex engine skips
# ahead to candidates instead of trying every position: ~2x faster, the same matches.
_SPELLED = re.compile(r"[a-z](?<![a-z0-9][a-z]) (?:[a-z] )*[a-z](?![a-z0-9])")  # "c n m", not "ab c"
_SPACE_NEXT_TO_WIDE = re.compile(r" (?:(?<=[^\x00-\x7f] )|(?=[^\x00-\x7f]))")
_WORD_CHAR = re.compile(r"[a-z0-9]")
_ASCII_DIGIT = re.compile(r"[0-9]")
_DIGITS_AS_ZERO = bytes.maketrans(b"123456789", b"000000000")
_ASCII_LETTER = re.compile(r"[a-z]")

_DEBT_AMOUNT = re.compile(
    r"\d[\d,]*(?:\.\d+)?(?:元|块|rmb|cny|usd|gbp|美元|英镑)|[¥￥$£]\d|\d[\d,]*(?:\.\d+)? ?(?:dollars|pounds)")
_DUE_DATE = re.compile(
    r"\d{4}[-/.年]\d{1,2}[-/.月]\d{1,2}|\d{1,2}月\d{1,2}[日号]|\d{1,2}/\d{1,2}/\d{2,4}"
    r"|(?:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]* \d{1,2}")

# Speaker labels at the start of a transcript line.
_COLLECTOR_LINE = re.compile(r"^\s*(催收员|坐席|客服|我方|collector|agent|caller)\s*[:：]\s*(.*)$", re.I)
_OTHER_LINE = re.compile(r"^\s*(客户|债务人|借款人|对方|debtor|customer|borrower|consumer)\s*[:：]\s*(.*)$", re.I)


@dataclass(frozen=True)
class Match:
    category: str
    phrase: str  # the lexicon entry as written
    position: int  # character offset in the normalised text

    def describe(self) -> str:
        return f"{self.category} '{self.phrase}' at {self.position}"


def load_expansions(path: Path = LEXICON_DIR / "expansions.txt") -> dict[str, str]:
    expansions = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        variant, sep, canonical = line.partition("=")
        if not sep or not variant.strip() or not canonical.strip():
            raise ValueError(f"{path}:{number}: expected 'variant = canonical'")
        expansions[_basic(variant.strip())] = _basic(canonical.strip())
    return expansions


def _basic(text: str) -> str:
    return _joined(_SEPARATORS.sub(" ", normalize(text)))


def _joined(text: str) -> str:
    """Spelled-out letters joined, spaces next to wide characters dropped."""
    if _ASCII_LETTER.search(text):
        text = _SPELLED.sub(lambda m: m.group(0).replace(" ", ""), text)
    return _SPACE_NEXT_TO_WIDE.sub("", text).strip()


class Normalizer:
    def __init__(self, expansions: dict[str, str]) -> None:
        ascii_variants = sorted((v for v in expansions if v.isascii()), key=len, reverse=True)
        wide_variants = sorted((v for v in expansions if not v.isascii()), key=len, reverse=True)
        self._expansions = expansions
        self._ascii = re.compile(r"(?<![a-z0-9])(" + "|".join(map(re.escape, ascii_variants)) + r")(?![a-z0-9])") \
            if ascii_variants else None
        self._wide = re.compile("|".join(map(re.escape, wide_variants))) if wide_variants else None
        self.plain = lru_cache(maxsize=50_000)(self._from_plain)
        self.reads_digits = any(_ASCII_DIGIT.search(v) for v in expansions)  # a variant that names a digit

    def __call__(self, text: str) -> str:
        return self.plain(normalize(text))

    def _from_plain(self, plain: str) -> str:
        """The rest of the normalisation, for a text already through `text_normalization.normalize`."""
        text = _joined(_SEPARATORS.sub(" ", plain))
        replaced = 0
        if self._ascii is not None and _ASCII_LETTER.search(text):
            text, replaced = self._ascii.subn(lambda m: self._expansions[m.group(1)], text)
        if self._wide is not None:
            text, count = self._wide.subn(lambda m: self._expansions[m.group(0)], text)
            replaced += count
        return _SPACE_NEXT_TO_WIDE.sub("", text) if replaced else text


def collector_words(text: str | None, direction: str) -> str:
    """The collector's side of a message or transcript. Lines labelled with a speaker count only
    when the speaker is the collector; an unlabelled text is the collector's when the collector sent
    it (OUTBOUND) and the debtor's otherwise (a debtor quoting an insult is not a violation)."""
    if not text:
        return ""
    if ":" not in text and "：" not in text:  # no speaker labels
        return text if direction == "OUTBOUND" else ""
    lines = text.splitlines()
    labelled = [(_COLLECTOR_LINE.match(line), _OTHER_LINE.match(line)) for line in lines]
    if any(c or o for c, o in labelled):
        return "\n".join(c.group(2) for c, _ in labelled if c)
    return text if direction == "OUTBOUND" else ""


class Lexicon:
    """Every phrase of every category in one automaton."""

    def __init__(self, phrases: Iterable[tuple[str, str]], normalizer: Normalizer) -> None:
        self.normalize = normalizer
        self.categories: set[str] = set()
        self._automaton = ahocorasick.Automaton()
        entries: dict[str, list[tuple[str, str, bool]]] = {}
        for category, phrase in phrases:
            key = normalizer(phrase)
            if not key:
                continue
            self.categories.add(category)
            entries.setdefault(key, []).append((category, phrase, key.isascii()))
        for key, values in entries.items():
            self._automaton.add_word(key, (len(key), values))
        if entries:
            self._automaton.make_automaton()
        self._empty = not entries
        # whether a digit's value can change what this lexicon finds (see TextReader)
        self.reads_digits = normalizer.reads_digits or any(_ASCII_DIGIT.search(key) for key in entries)

    @classmethod
    def from_directory(cls, directory: Path = LEXICON_DIR) -> Lexicon:
        """`<category>.<language>.txt` files: one phrase per line, `#` starts a comment."""
        phrases = []
        for path in sorted(directory.glob("*.*.txt")):
            category = path.name.split(".", 1)[0]
            for line in path.read_text(encoding="utf-8").splitlines():
                phrase = line.split("#", 1)[0].strip()
                if phrase:
                    phrases.append((category, phrase))
        return cls(phrases, Normalizer(load_expansions(directory / "expansions.txt")))

    def find(self, text: str) -> list[Match]:
        """Matches in a normalised text, in order of position."""
        if self._empty or not text:
            return []
        found = []
        for end, (length, values) in self._automaton.iter(text):
            start = end - length + 1
            for category, phrase, ascii_only in values:
                if ascii_only and not _on_word_boundaries(text, start, end):
                    continue
                found.append(Match(category, phrase, start))
        return found


def _on_word_boundaries(text: str, start: int, end: int) -> bool:
    before = text[start - 1] if start > 0 else " "
    after = text[end + 1] if end + 1 < len(text) else " "
    return not _WORD_CHAR.match(before) and not _WORD_CHAR.match(after)


class TextReader:
    """What a message says, as the rules read it, each text *shape* read once.

    Collection messages come from templates filled in with each debtor's amount, due date and card
    digits, so texts rarely repeat but their shapes do. A text's shape (`key`) is its UTF-8 bytes with
    every ASCII digit made 0 (UTF-8 writes no other character with those bytes), and every reading here
    depends on where digits are, never on which digit: NFKC and OpenCC leave ASCII digits as they are
    and key no conversion on one (OpenCC's t2s dictionaries hold no key with a digit, checked with its
    `opencc_dict`), the patterns and the word boundaries name only `\\d` or `[0-9]`, and a digit keeps
    its position. So a shape reads as each of its texts does, positions included, as long as no phrase
    or spelling variant of the lexicons read holds a digit; when one does (`digits_matter`), the shape
    is the text itself. 14,512 distinct texts in 50,000 simulated events are 119 shapes.

    The caches are closures over the lexicon, not over the engine, so an engine dropped at a rebalance
    is freed at once rather than at a full collection."""

    def __init__(self, lexicon: Lexicon, size: int = 20_000, *, digits_matter: bool | None = None) -> None:
        normalizer, find = lexicon.normalize, lexicon.find
        if digits_matter is None:
            digits_matter = lexicon.reads_digits
        table = None if digits_matter else _DIGITS_AS_ZERO

        def key(text: str) -> bytes:
            """The text's shape, what the other readings take."""
            return text.encode("utf-8", "surrogatepass").translate(table)

        @lru_cache(maxsize=size)
        def plain(shape: bytes) -> str:
            """The text through `normalize` (what the other readings start from)."""
            return normalize(shape.decode("utf-8", "surrogatepass"))

        @lru_cache(maxsize=size)
        def debt_facts(shape: bytes) -> tuple[bool, bool]:
            """(states an amount, states a due date): read only when the event's fields are absent."""
            text = plain(shape)
            return _DEBT_AMOUNT.search(text) is not None, _DUE_DATE.search(text) is not None

        @lru_cache(maxsize=size)
        def collector_said(shape: bytes, direction: str) -> tuple[str, tuple[Match, ...]]:
            """The collector's words, fully normalised (digits as the shape has them), and the lexicon
            phrases found in them."""
            text = shape.decode("utf-8", "surrogatepass")
            words = collector_words(text, direction)
            if not words:
                return "", ()
            # the whole text is the collector's: continue from its cached first normalisation
            said = normalizer.plain(plain(shape)) if words is text else normalizer(words)
            return said, tuple(find(said))

        @lru_cache(maxsize=size)
        def all_said(shape: bytes) -> tuple[Match, ...]:
            """The lexicon phrases found in the whole text, whoever said them."""
            return tuple(find(normalizer.plain(plain(shape))))

        self.key, self.plain, self.debt_facts, self.collector_said, self.all_said = \
            key, plain, debt_facts, collector_said, all_said
