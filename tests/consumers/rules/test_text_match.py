from consumers.rules.text_match import Lexicon, TextReader, collector_words

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
    text = "不還錢小心你全家，欠款3000元"
    said, matches = reader.collector_said(text, "OUTBOUND")
    assert said == LEXICON.normalize(text)
    assert ("threat", "小心你全家") in {(m.category, m.phrase) for m in matches}
    assert reader.collector_said(text, "INBOUND") == ("", ())  # the debtor's words are not the collector's
    assert reader.debt_facts(text) == (True, False)  # states an amount, no due date
    assert {m.category for m in reader.all_said(text)} >= {"threat"}
    for _ in range(3):
        assert reader.collector_said(text, "OUTBOUND") == (said, matches)
    assert reader.collector_said.cache_info().hits == 3
