"""Xero's date formats: parse MS-JSON `/Date(ms+hhmm)/` values and format `If-Modified-Since`.

This module owns the one strict parser every other part uses, so no SDK-style local-time conversion
creeps in. Rules, from the Accounting API's requests-and-responses page and the issues it caused
(research notes §6 and §8.8):

- the milliseconds are the instant; an offset such as `+1300` may appear even in fields named UTC
  (pyxero#122) and must not be applied a second time;
- date-only fields (`Date`, `DueDate`, ...) are the UTC calendar date of that instant; localising them
  shifts them by a day (xero-python#179, xero-php#177);
- `If-Modified-Since` is an ISO timestamp in UTC, honoured to the second (xero-gateway#145), so it is
  rounded down to the second.

It must not do I/O or read the clock.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# JSON-decoded values look like /Date(1439434356790)/ or /Date(1419937200000+0000)/; the raw JSON text has
# the slashes escaped (\/Date(...)\/), which is tolerated too.
_ISO = re.compile(
    r"^(?P<head>\d{4}-\d\d-\d\d(?:[T ]\d\d:\d\d(?::\d\d)?)?)(?:\.(?P<frac>\d+))?(?P<zone>[+-]\d\d:?\d\d)?$"
)
_MS_DATE = re.compile(r"^\\?/Date\((?P<ms>-?\d+)(?P<offset>[+-]\d{4})?\)\\?/$")


def is_ms_date(value: object) -> bool:
    return isinstance(value, str) and _MS_DATE.match(value) is not None


def epoch_ms(value: str) -> int:
    """The epoch milliseconds inside a `/Date(...)/` string (ValueError if it is not one)."""
    match = _MS_DATE.match(value.strip())
    if match is None:
        raise ValueError(f"not a Xero /Date(...)/ value: {value!r}")
    return int(match.group("ms"))


def parse_ms_date(value: str) -> datetime:
    """The instant of a `/Date(ms[+hhmm])/` value as an aware UTC datetime (the offset is informational)."""
    # timedelta arithmetic instead of fromtimestamp: works for Xero's pre-1970 and year-1 sentinel values.
    return _EPOCH + timedelta(milliseconds=epoch_ms(value))


def parse_ms_day(value: str) -> date:
    """A date-only field (`Date`, `DueDate`, ...): the UTC calendar date of its instant, never localised."""
    return parse_ms_date(value).date()


def parse_iso_utc(value: str) -> datetime:
    """An ISO timestamp Xero sends without a zone (`/connections`: `2019-12-07T18:46:19.5165400`) as UTC."""
    text = value.strip()
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    # .NET writes 7 fractional digits; Python accepts at most 6.
    match = _ISO.match(text)
    if match is None:
        raise ValueError(f"not an ISO timestamp: {value!r}")
    frac = (match.group("frac") or "")[:6]
    parsed = datetime.fromisoformat(match.group("head") + (f".{frac.ljust(6, '0')}" if frac else ""))
    zone = match.group("zone")
    if zone:
        parsed = datetime.fromisoformat(parsed.isoformat() + zone)
        return parsed.astimezone(UTC)
    return parsed.replace(tzinfo=UTC)


def format_if_modified_since(moment: datetime) -> str:
    """`If-Modified-Since` value: UTC, ISO `yyyy-mm-ddThh:mm:ss`, rounded down to the second.

    Xero documents "A UTC timestamp (yyyy-mm-ddThh:mm:ss)" and expects ISO, not RFC 1123 (pyxero#261, #305).
    A naive datetime is taken to be UTC already.
    """
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.replace(microsecond=0, tzinfo=None).isoformat(timespec="seconds")
