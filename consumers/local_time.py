"""The debtor's local time: profile time zone -> phone region (phonenumbers) -> jurisdiction default."""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache
from zoneinfo import ZoneInfo

import phonenumbers
from phonenumbers import timezone as phone_timezones

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
