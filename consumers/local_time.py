"""The debtor's local time: profile time zone -> phone region (phonenumbers) -> jurisdiction default."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

import phonenumbers
from phonenumbers import timezone as phone_timezones

from schemas.contract import from_days, from_micros

JURISDICTION_ZONES = {"CN": "Asia/Shanghai", "US": "America/New_York", "UK": "Europe/London"}


@lru_cache(maxsize=512)
def zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


@lru_cache(maxsize=100_000)
def zone_of_phone(address: str, region: str) -> str | None:
    """The single IANA zone a phone number belongs to, or None (not a number, or several zones)."""
    try:
        number = phonenumbers.parse(address, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    zones = [z for z in phone_timezones.time_zones_for_number(number) if z != "Etc/Unknown"]
    return zones[0] if len(zones) == 1 else None


# Phone regions that lie in a single time zone. Regions spanning several (US, CA, RU, AU, BR...)
# are deliberately absent: a wrong guess would misjudge quiet hours.
SINGLE_ZONE_REGIONS = {
    "CN": "Asia/Shanghai", "HK": "Asia/Hong_Kong", "MO": "Asia/Macau", "TW": "Asia/Taipei",
    "GB": "Europe/London", "IE": "Europe/Dublin", "SG": "Asia/Singapore", "JP": "Asia/Tokyo",
    "KR": "Asia/Seoul", "PH": "Asia/Manila", "TH": "Asia/Bangkok", "VN": "Asia/Ho_Chi_Minh",
    "MY": "Asia/Kuala_Lumpur", "IN": "Asia/Kolkata", "DE": "Europe/Berlin", "FR": "Europe/Paris",
}


@lru_cache(maxsize=100_000)  # a debtor's profile and addresses repeat: one answer per combination
def resolve_zone(profile_zone: str | None, phone: str | None, phone_region: str | None,
                 jurisdiction: str) -> tuple[str, str]:
    """(IANA zone, source) with source PROFILE, PHONE or DEFAULT."""
    if profile_zone:
        return profile_zone, "PROFILE"
    region = phone_region or {"UK": "GB"}.get(jurisdiction, jurisdiction)
    if phone:
        found = zone_of_phone(phone, region)
        if found:
            return found, "PHONE"
    if phone_region in SINGLE_ZONE_REGIONS:
        return SINGLE_ZONE_REGIONS[phone_region], "PHONE"
    return JURISDICTION_ZONES[jurisdiction], "DEFAULT"


def local_view(moment: datetime, zone_name: str) -> tuple[str, datetime]:
    """(RFC 3339 text in the zone, the local datetime) of an aware UTC instant; DST-correct."""
    local = moment.astimezone(zone(zone_name))
    return local.isoformat(timespec="microseconds" if local.microsecond else "seconds"), local


_HOUR_US = 3_600_000_000
_DAY_US = 86_400_000_000


def local_fields(micros: int, zone_name: str) -> tuple[str, date, int, int]:
    """(RFC 3339 text, local date, hour, ISO weekday) of an instant given in microseconds since the
    epoch: what local_view gives, without a datetime per instant. The zone's offset is looked up once
    per UTC hour; an hour in which the zone changes its offset is converted instant by instant."""
    found = _offset_through_hour(zone_name, micros // _HOUR_US)
    if found is None:
        text, local = local_view(from_micros(micros), zone_name)
        return text, local.date(), local.hour, local.isoweekday()
    offset_us, offset_text = found
    days, in_day = divmod(micros + offset_us, _DAY_US)
    seconds, fraction = divmod(in_day, 1_000_000)
    hour, rest = divmod(seconds, 3600)
    minute, second = divmod(rest, 60)
    day, day_text = calendar_day(days)
    text = f"{day_text}T{hour:02d}:{minute:02d}:{second:02d}{f'.{fraction:06d}' if fraction else ''}{offset_text}"
    return text, day, hour, (days + 3) % 7 + 1  # 1970-01-01 was a Thursday (4)


@lru_cache(maxsize=100_000)
def _offset_through_hour(zone_name: str, hour: int) -> tuple[int, str] | None:
    """(offset in microseconds, its RFC 3339 text) that the zone keeps through the whole UTC hour `hour`
    (hours since the epoch), or None if the offset at its first and last microsecond differ. No zone
    changes its offset twice within an hour, so equal ends mean one offset throughout."""
    start = from_micros(hour * _HOUR_US)
    first = start.astimezone(zone(zone_name))
    last = (start + timedelta(microseconds=_HOUR_US - 1)).astimezone(zone(zone_name))
    offset = first.utcoffset()
    if offset is None or offset != last.utcoffset():
        return None
    return offset // timedelta(microseconds=1), first.isoformat(timespec="seconds")[19:]


@lru_cache(maxsize=100_000)
def calendar_day(days: int) -> tuple[date, str]:
    """(date, ISO text) of the day `days` after 1970-01-01: a date as a plain decode gives it."""
    day = from_days(days)
    return day, day.isoformat()
