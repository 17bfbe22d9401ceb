"""Property-based fuzzing of the auditor API's query parameters over the real stack: whatever a
client sends in any filter, cursor, range or path segment, the answer is a result or a clear refusal
(400/404/422), never a server error, and never a row the filters do not allow.

`make test` runs FUZZ_API_EXAMPLES (default 40) examples per endpoint; a long run:
`FUZZ_API_EXAMPLES=20000 .venv/bin/pytest tests/fuzz/test_api_params.py`. Inputs that once failed
are pinned below with @example and replay every time.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from deploy.auditor import queries
from deploy.auditor.tokens import TokenStore
from deploy.supervisor import EmbeddedStack
from tests.conftest import unique_token

pytestmark = pytest.mark.stack
EXAMPLES = int(os.environ.get("FUZZ_API_EXAMPLES", "40"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
ALLOWED = {200, 400, 404, 422}
ENDPOINTS = ["/actions", "/alerts", "/dead-letters", "/access-log", "/verify",
             *(f"/reports/{name}" for name in queries.REPORTS)]
FILTERS = ["agency", "collector", "debtor", "rule", "severity", "action_type", "reason", "format", "limit", "cursor"]
HOSTILE = st.sampled_from(["' OR 1=1 --", "'; DROP TABLE audit.actions; --", "\\", "%", "\x00", "{x:String}",
                           "🙂", "欠款", "1e309", "-1", "9" * 40, "../../etc/passwd", "NaN", ""])
TEXT = st.one_of(HOSTILE, st.text(max_size=200), st.text(alphabet=st.characters(codec="utf-8"), max_size=20))
MOMENT = st.one_of(TEXT, st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31),
                                      timezones=st.just(UTC)).map(lambda d: d.isoformat()))
CURSOR = st.one_of(TEXT, st.builds(lambda moment, row: queries.encode_cursor(moment, row),
                                   st.datetimes(min_value=datetime(1900, 1, 1), timezones=st.just(UTC)), TEXT))


@pytest.fixture(scope="module")
def api(stack: EmbeddedStack) -> Iterator[httpx.Client]:
    token = TokenStore(stack.settings.tokens_path).create(f"fuzz-{unique_token(6)}", "admin")
    with httpx.Client(base_url=f"http://{stack.settings.http_host}:{stack.settings.http_port}/api/v1",
                      headers={"Authorization": f"Bearer {token}"}, timeout=60) as client:
        yield client


def answered(response: httpx.Response) -> None:
    assert response.status_code in ALLOWED, (response.request.url, response.status_code, response.text[:500])
    if response.status_code == 200 and response.headers["content-type"].startswith("application/json"):
        response.json()


@FUZZ
@given(endpoint=st.sampled_from(ENDPOINTS), params=st.dictionaries(st.sampled_from(FILTERS), TEXT, max_size=5),
       start=st.none() | MOMENT, end=st.none() | MOMENT, cursor=st.none() | CURSOR)
@example(endpoint="/actions", params={}, start=None, end=None,
         cursor=queries.encode_cursor(datetime(2024, 5, 1, tzinfo=UTC), "not-a-uuid"))
@example(endpoint="/actions", params={}, start="0001-01-01T00:00:00+00:00", end=None, cursor=None)
@example(endpoint="/reports/alerts-by-rule", params={}, start=None, end="0001-01-01T00:01:04+00:00", cursor=None)
@example(endpoint="/alerts", params={}, start="0001-01-01T00:00:00+05:00", end="9999-12-31T23:59:59-05:00",
         cursor=None)
def test_any_filter_values_get_an_answer_not_a_server_error(api: httpx.Client, endpoint: str, params: dict[str, str],
                                                            start: str | None, end: str | None,
                                                            cursor: str | None) -> None:
    query = dict(params)
    for name, value in (("from", start), ("to", end), ("cursor", cursor)):
        if value is not None:
            query[name] = value
    answered(api.get(endpoint, params=query))


@FUZZ
@given(debtor=TEXT.filter(lambda d: d not in ("", ".", "..")),
       params=st.dictionaries(st.sampled_from(["limit", "cursor", "from", "to"]), TEXT, max_size=3))
def test_any_debtor_path_segment_gets_an_answer(api: httpx.Client, debtor: str, params: dict[str, str]) -> None:
    answered(api.get(f"/debtors/{quote(debtor, safe='')}/timeline", params=params))


@FUZZ
@given(severity=st.sampled_from(queries.SEVERITIES), agency=TEXT)
def test_filtered_rows_only_ever_match_the_filter(api: httpx.Client, severity: str, agency: str) -> None:
    response = api.get("/alerts", params={"severity": severity, "agency": agency, "limit": 50})
    answered(response)
    if response.status_code == 200:
        for row in response.json()["rows"]:
            assert row["severity"] == severity and row["agency_id"] == agency
