import random
from datetime import UTC, datetime, timedelta

import pytest

from consumers.local_time import local_fields, local_view, resolve_zone
from schemas.contract import to_micros


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


# Zones with DST of 30 minutes (Lord Howe), offsets of 45 and 30 minutes, historical offsets in seconds
# (before 1900-1930 most zones kept local mean time), and a zone whose DST was suspended in Ramadan.
ZONES = ("America/New_York", "Asia/Shanghai", "Europe/London", "Australia/Lord_Howe", "Asia/Kathmandu",
         "Pacific/Chatham", "America/St_Johns", "Africa/Casablanca", "Europe/Dublin")


@pytest.mark.parametrize("zone", ZONES)
def test_local_fields_from_microseconds_are_local_view_exactly(zone: str) -> None:
    """local_fields looks the offset up once per UTC hour: every minute of a year (each with a stray
    microsecond, which the text must show) and random instants over two centuries agree with the datetime
    conversion, DST changes and historical offsets included."""
    start, rng = to_micros(datetime(2024, 1, 1, tzinfo=UTC)), random.Random(zone)
    instants = [start + minute * 60_000_000 + (minute % 2) * 999_999 for minute in range(0, 366 * 24 * 60, 11)]
    for _ in range(5_000):  # whole seconds and not
        micros = rng.randrange(to_micros(datetime(1900, 1, 2, tzinfo=UTC)), to_micros(datetime(2100, 1, 1, tzinfo=UTC)))
        instants.append(micros - micros % rng.choice((1, 1_000_000)))
    for micros in instants:
        text, local = local_view(datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=micros), zone)
        assert local_fields(micros, zone) == (text, local.date(), local.hour, local.isoweekday()), micros
