"""After a simulated run plus events that hide PII in every shape we know (spaced, dashed, +country,
full-width digits, inside Chinese text, id numbers, bank cards), no string column of the trail holds a
phone number, a national id number or a bank card number in clear.

The scanner is independent of the masker: phonenumbers' own matcher (valid numbers of CN, US, GB) on
NFKC-normalised text, plus the id-number checksum and the Luhn check over digit runs. It is shown to
find every planted number in the raw events first, so a clean scan means something. The raw payloads of
dead letters are base64 by design (admins only, docs/operations.md) and are not scanned.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

import phonenumbers
import pytest
from clickhouse_connect.driver.client import Client

from consumers.pii import _cn_id_valid, _luhn_valid
from deploy.supervisor import EmbeddedStack
from producers.simulator import SimConfig, Simulation
from tests.conftest import action, unique_token, wait_until

pytestmark = pytest.mark.stack
RUN = unique_token(6)
PLANTED = [
    "请回电13800138000，谢谢", "call 138 0013 8000 today", "+86-138-0013-8000", "手机：１３８００１３８０００",
    "身份证11010519491231002X已核实", "卡号6222 0212 3456 7890 128", "US (212) 555-0147 or +1 212-555-0147",
    "UK 07700 900123", "6222021234567890128", "電話 139-1234-5678 請回覆",
]
NOT_SCANNED = {("dead_letters", "raw_key_base64"), ("dead_letters", "raw_value_base64")}
DIGIT_RUN = re.compile(r"(?<![0-9A-Za-z])\d[\d \-]{11,22}[\dXx](?![0-9A-Za-z])")
ALNUM = re.compile(r"[0-9A-Za-z]")


def _standalone(text: str, start: int, end: int) -> bool:
    """Not part of a longer token such as a hex hash (ASCII only: Chinese text around a number is fine)."""
    return not (start > 0 and ALNUM.match(text[start - 1])) and not (end < len(text) and ALNUM.match(text[end]))


def findings(text: str) -> list[str]:
    """Phone, id and card numbers in `text`, found without the masker's code."""
    text = unicodedata.normalize("NFKC", text)
    found = [m.raw_string for region in ("CN", "US", "GB")
             for m in phonenumbers.PhoneNumberMatcher(text, region, leniency=phonenumbers.Leniency.VALID)
             if _standalone(text, m.start, m.end)]
    for run in DIGIT_RUN.findall(text):
        digits = re.sub(r"[ \-]", "", run)
        id_number = re.fullmatch(r"\d{17}[\dXx]", digits) is not None and _cn_id_valid(digits)
        card = digits.isdigit() and 13 <= len(digits) <= 19 and _luhn_valid(digits)
        if id_number or card:
            found.append(run)
    return found


def string_columns(client: Client) -> list[tuple[str, str]]:
    return [(t, c) for t, c in client.query(
        "SELECT table, name FROM system.columns WHERE database = 'audit' AND type LIKE '%String%' "
        "AND table IN (SELECT name FROM system.tables WHERE database = 'audit' AND engine NOT LIKE '%View%')"
    ).result_rows if (t, c) not in NOT_SCANNED]


def test_the_scanner_sees_every_planted_number() -> None:
    assert all(findings(text) for text in PLANTED), [t for t in PLANTED if not findings(t)]
    assert findings("应还1,250.00元，到期日2024-11-01，尾号1234") == []
    assert findings("d9227070229482774e39b9d59946fd7f") == []  # digits inside a hash are not a number


def test_no_string_column_of_the_trail_holds_pii_in_clear(stack: EmbeddedStack, clickhouse: Client) -> None:
    assert stack.producer is not None
    debtor = f"D-PII-{RUN}"
    planted: list[dict[str, Any]] = [action(debtor_id=debtor, message_text=text, contact_address="13800138000",
                                            occurred_at=f"2024-06-01T10:{i:02d}:00+08:00")
                                     for i, text in enumerate(PLANTED)]
    planted.append({"kind": "CEASE_REQUEST", "occurred_at": "2024-06-01T11:00:00+08:00", "source_system": "crm",
                    "debtor_id": debtor, "contact_address": "+1 (212) 555-0147",
                    "attributes": {"note": "客户电话 139 1234 5678"}})
    simulated = [item.event for _, item in zip(range(3_000), Simulation(SimConfig(seed=23)).events(), strict=False)]
    stack.producer.emit_many(planted + simulated)
    stack.producer.flush()
    stored = f"debtor_id = '{debtor}'"
    assert wait_until(lambda: clickhouse.query(f"SELECT count() FROM audit.actions WHERE {stored}")
                      .result_rows[0][0] == len(PLANTED), 60)
    masked = clickhouse.query(f"SELECT sum(pii_redactions) FROM audit.actions WHERE {stored}").result_rows[0][0]
    assert masked >= len(PLANTED)

    columns = string_columns(clickhouse)
    assert ("actions", "message_text") in columns and ("reference_events", "attributes") in columns
    leaks = []
    for table, column in columns:
        for (value,) in clickhouse.query(f"SELECT DISTINCT toString({column}) FROM audit.{table}").result_rows:
            if value and (found := findings(value)):
                leaks.append(f"audit.{table}.{column}: {found} in {value[:120]!r}")
    assert leaks == []
