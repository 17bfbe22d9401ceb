import itertools
import random
import unicodedata
from pathlib import Path

import yaml

from consumers.rules.text_match import Lexicon, Normalizer, TextReader, collector_words, load_expansions
from producers.simulator import SimConfig, Simulation

LEXICON = Lexicon.from_directory()


def found(text: str) -> set[tuple[str, str]]:
    return {(m.category, m.phrase) for m in LEXICON.find(LEXICON.normalize(text))}


def test_traditional_full_width_spacing_and_abbreviations_normalise_to_the_lexicon() -> None:
    assert ("threat", "小心你全家") in found("小 心 你 全 家！")
    assert ("threat", "小心你全家") in found("不還錢小心你全家")
    assert ("obscenity", "操你妈") in found("ＣＮＭ快还钱")
    assert ("obscenity", "操你妈") in found("草泥马")
    assert ("obscenity", "傻逼") in found("s.b")


def test_english_phrases_match_whole_words_only() -> None:
    assert found("This bill is bad, we are closer.") == set()
    assert ("insult", "deadbeat") in found("You DEADBEAT.")


def test_only_the_collectors_words_count() -> None:
    assert collector_words("不还钱就弄死你", "INBOUND") == ""
    assert collector_words("不还钱就弄死你", "OUTBOUND") == "不还钱就弄死你"
    assert collector_words("客户：再打我就报警\n催收员：小心你全家", "INBOUND") == "小心你全家"


def test_a_labelled_transcript_and_a_colon_in_plain_text_are_told_apart() -> None:
    # the fast path for texts without a colon must agree with the labelled-line parser
    assert collector_words("还款时间: 明天 10:00", "OUTBOUND") == "还款时间: 明天 10:00"
    assert collector_words("还款时间: 明天 10:00", "INBOUND") == ""
    assert collector_words("Collector: pay now\nDebtor: no", "OUTBOUND") == "pay now"


def test_the_reader_reads_a_repeated_text_once_and_as_the_lexicon_does() -> None:
    reader = TextReader(LEXICON, size=10)
    shape = reader.key("不還錢小心你全家，欠款3000元")
    said, matches = reader.collector_said(shape, "OUTBOUND")
    assert said == LEXICON.normalize("不還錢小心你全家，欠款0000元")  # digits as the shape has them
    assert ("threat", "小心你全家") in {(m.category, m.phrase) for m in matches}
    assert reader.collector_said(shape, "INBOUND") == ("", ())  # the debtor's words are not the collector's
    assert reader.debt_facts(shape) == (True, False)  # states an amount, no due date
    assert {m.category for m in reader.all_said(shape)} >= {"threat"}
    for amount in ("3000", "3000", "5125"):  # the same template with another amount is the same shape
        assert reader.collector_said(reader.key(f"不還錢小心你全家，欠款{amount}元"), "OUTBOUND") == (said, matches)
    assert reader.collector_said.cache_info().hits == 3


def readings(reader: TextReader, text: str) -> tuple[object, ...]:
    """What the rules take from a text: the phrases found (with positions) and the debt facts."""
    shape = reader.key(text)
    return (reader.collector_said(shape, "OUTBOUND")[1], reader.collector_said(shape, "INBOUND")[1],
            reader.all_said(shape), reader.debt_facts(shape))


def texts_with_digits() -> list[str]:
    """Every text the simulator and the case files write, and each again with its digits redrawn
    (full-width and non-ASCII digits kept, which normalisation turns into ASCII ones or leaves)."""
    sim = Simulation(SimConfig(seed=3, debtors=300, violation_rate=0.3))
    texts = {t for e in itertools.islice(sim.events(), 6_000) if (t := e.event.get("message_text"))}
    for path in Path("consumers/rules/cases").glob("*.yaml"):
        for case in yaml.safe_load(path.read_text(encoding="utf-8"))["cases"]:
            texts.update(t for event in case.get("events", []) if (t := event.get("message_text")))
    texts.update(["还款日3月5号，欠款¥1,250", "请于2024年11月1日前还 5000 块", "pay $30 by Nov 3", "c 1 n m", "s2b",
                  "欠款１２３４元", "due ١٢/٠٣/2024", "sb250", "250 sb", "cnm1", "a1 b c"])
    rng = random.Random(5)
    redrawn = {"".join(rng.choice("0123456789") if ch.isascii() and ch.isdigit() else ch for ch in t) for t in texts}
    return sorted(texts | redrawn)


def test_a_shape_reads_as_each_of_its_texts() -> None:
    # the digit-blind reader against one that reads every text as written
    blind, literal = TextReader(LEXICON), TextReader(LEXICON, digits_matter=True)
    texts = texts_with_digits()
    assert len(texts) > 500 and sum(any(c.isdigit() for c in t) for t in texts) > 250
    for text in texts:
        assert readings(blind, text) == readings(literal, text), text
    assert blind.collector_said.cache_info().currsize < literal.collector_said.cache_info().currsize / 2


def test_a_lexicon_that_names_a_digit_reads_every_text_as_written(tmp_path: Path) -> None:
    (tmp_path / "insult.zh.txt").write_text("二百五\n你个250\n", encoding="utf-8")
    (tmp_path / "expansions.txt").write_text("sb = 傻逼\n", encoding="utf-8")
    lexicon = Lexicon.from_directory(tmp_path)
    assert lexicon.reads_digits and not LEXICON.reads_digits
    reader = TextReader(lexicon)
    assert [m.phrase for m in readings(reader, "你个250")[0]] == ["你个250"]
    assert readings(reader, "你个251")[0] == ()
    variant = Normalizer({"sb": "傻逼", "2b": "傻逼"})
    assert variant.reads_digits and not Normalizer(load_expansions()).reads_digits


def test_no_character_composes_with_an_ascii_digit() -> None:
    # NFKC composes only pairs that some character decomposes into canonically: with no ASCII digit in
    # any canonical decomposition, NFKC leaves each digit where and what it is, as TextReader relies on
    digits = {f"{0x30 + d:04X}" for d in range(10)}
    for code in range(0x110000):
        decomposition = unicodedata.decomposition(chr(code))
        if decomposition and not decomposition.startswith("<"):
            assert not digits & set(decomposition.split()), hex(code)
