from datetime import UTC, datetime

import pytest

from consumers.local_time import local_view, resolve_zone


@pytest.mark.parametrize(("profile", "phone", "region", "jurisdiction", "expected"), [
    ("Asia/Urumqi", "+1 212 555 0143", "US", "US", ("Asia/Urumqi", "PROFILE")),
    (None, "+1 212 555 0143", None, "US", ("America/New_York", "PHONE")),
    (None, "+1 415 555 0143", None, "US", ("America/Los_Angeles", "PHONE")),
    (None, "13800138000", None, "CN", ("Asia/Shanghai", "PHONE")),
    (None, None, "HK", "CN", ("Asia/Hong_Kong", "PHONE")),
    (None, None, "US", "US", ("America/New_York", "DEFAULT")),  # the US spans zones: no guess
    (None, "not a number", None, "UK", ("Europe/London", "DEFAULT")),
    (None, None, None, "CN", ("Asia/Shanghai", "DEFAULT")),
])
def test_zone_resolution_order(profile: str | None, phone: str | None, region: str | None, jurisdiction: str,
                               expected: tuple[str, str]) -> None:
    assert resolve_zone(profile, phone, region, jurisdiction) == expected


@pytest.mark.parametrize(("utc", "zone", "text", "hour"), [
    (datetime(2024, 3, 10, 6, 59, 59, tzinfo=UTC), "America/New_York", "2024-03-10T01:59:59-05:00", 1),
    (datetime(2024, 3, 10, 7, 0, 0, tzinfo=UTC), "America/New_York", "2024-03-10T03:00:00-04:00", 3),  # DST starts
    (datetime(2024, 3, 10, 12, 5, tzinfo=UTC), "America/New_York", "2024-03-10T08:05:00-04:00", 8),
    (datetime(2024, 11, 3, 6, 30, tzinfo=UTC), "America/New_York", "2024-11-03T01:30:00-05:00", 1),  # DST ends
    (datetime(2024, 5, 1, 14, 0, tzinfo=UTC), "Asia/Shanghai", "2024-05-01T22:00:00+08:00", 22),
])
def test_local_view_is_dst_correct(utc: datetime, zone: str, text: str, hour: int) -> None:
    rendered, local = local_view(utc, zone)
    assert rendered == text and local.hour == hour
