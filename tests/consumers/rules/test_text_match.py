from consumers.rules.text_match import Lexicon, collector_words

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
