import pytest

from consumers.pii import PiiMasker

KEY = bytes(range(32))


@pytest.fixture()
def masker() -> PiiMasker:
    return PiiMasker(KEY)


def _cn_id(first17: str) -> str:
    weights = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
    return first17 + "10X98765432"[sum(int(d) * w for d, w in zip(first17, weights, strict=True)) % 11]


VALID_ID = _cn_id("11010519491231002")
VALID_CARD = "6222021234567890128"  # Luhn-valid test number


@pytest.mark.parametrize(("text", "kind", "last4"), [
    ("请致电13800138000联系", "PHONE", "8000"),          # inside Chinese text, no separators
    ("电话 +86 138 0013 8000。", "PHONE", "8000"),
    ("call (212) 555-0143 today", "PHONE", "0143"),
    (f"身份证{VALID_ID}已核实", "ID", VALID_ID[-4:]),
    ("SSN 123-45-6789 on file", "ID", "6789"),
    (f"卡号{VALID_CARD}", "CARD", VALID_CARD[-4:]),
])
def test_numbers_are_replaced_by_keyed_hash_and_last_four(masker: PiiMasker, text: str, kind: str,
                                                          last4: str) -> None:
    masked, count = masker.mask_text(text, "US" if "(212)" in text or "SSN" in text else "CN")
    assert count == 1
    assert f"[{kind}#" in masked and masked.count(f":{last4}]") == 1
    digits = "".join(ch for ch in text if ch.isdigit())
    assert digits not in "".join(ch for ch in masked if ch.isdigit())


@pytest.mark.parametrize("text", [
    "您的贷款应还1,250.00元，到期日2024-11-01",  # amounts and dates are not PII
    "工号123，逾期30天", "balance of $1250000 due", f"卡号{VALID_CARD[:-1]}0",  # not Luhn-valid
    f"身份证{VALID_ID[:-1]}{'0' if VALID_ID[-1] != '0' else '1'}",  # bad id checksum
])
def test_things_that_are_not_pii_are_left_alone(masker: PiiMasker, text: str) -> None:
    assert masker.mask_text(text)[1] == 0 or "卡号" in text or "身份证" in text
    masked, _ = masker.mask_text(text)
    assert "[ID#" not in masked and "[CARD#" not in masked


def test_the_same_number_in_any_format_hashes_alike_and_the_key_matters(masker: PiiMasker) -> None:
    a, _ = masker.mask_text("13800138000")
    b, _ = masker.mask_text("+86 138-0013-8000")
    assert a == b
    other, _ = PiiMasker(bytes(32)).mask_text("13800138000")
    assert other != a


def test_contact_addresses(masker: PiiMasker) -> None:
    phone_hash, last4 = masker.mask_address("+86 13800138000")
    assert last4 == "8000" and len(phone_hash) == 64 and "13800138000" not in phone_hash
    assert masker.mask_address("138 0013 8000") == (phone_hash, "8000")
    email_hash, email_last4 = masker.mask_address("Debtor@Example.com")
    assert email_last4 == "" and masker.mask_address("debtor@example.com")[0] == email_hash
    assert masker.mask_address(None) == ("", "")


def test_a_short_key_is_refused() -> None:
    with pytest.raises(ValueError, match="16 bytes"):
        PiiMasker(b"short")
