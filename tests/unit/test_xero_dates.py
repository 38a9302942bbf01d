"""Xero's MS-JSON dates and the If-Modified-Since format."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from appliance.xero.client import parse_ms_date
from appliance.xero.dates import epoch_ms, format_if_modified_since, is_ms_date, parse_iso_utc, parse_ms_day


def test_epoch_milliseconds_are_the_instant() -> None:
    assert parse_ms_date("/Date(1439434356790)/") == datetime(2015, 8, 13, 2, 52, 36, 790000, tzinfo=UTC)


def test_offset_is_not_applied_twice() -> None:
    # pyxero#122: a +1300 offset in a field named UTC. The milliseconds already are the instant.
    assert parse_ms_date("/Date(1451988985943+1300)/") == parse_ms_date("/Date(1451988985943)/")
    assert parse_ms_date("/Date(1419937200000+0000)/") == datetime(2014, 12, 30, 11, 0, tzinfo=UTC)
    assert parse_ms_date("/Date(1419937200000-0500)/").utcoffset() == timedelta(0)


def test_escaped_json_form_and_pre_epoch_values() -> None:
    assert parse_ms_date("\\/Date(0)\\/") == datetime(1970, 1, 1, tzinfo=UTC)
    assert parse_ms_date("/Date(-86400000+0000)/") == datetime(1969, 12, 31, tzinfo=UTC)
    # .NET's DateTime.MinValue shows up as a sentinel.
    assert parse_ms_date("/Date(-62135596800000)/") == datetime(1, 1, 1, tzinfo=UTC)


def test_date_only_fields_are_utc_calendar_dates() -> None:
    # Midnight UTC on 20 Oct 2018; localising to UTC-5 would give the 19th (xero-php#177).
    assert parse_ms_day("/Date(1539993600000+0000)/") == date(2018, 10, 20)
    # Late in the UTC day, a NZ offset in the string must not push it to the next day.
    assert parse_ms_day("/Date(1540079999000+1300)/") == date(2018, 10, 20)


@pytest.mark.parametrize("bad", ["2018-10-20", "/Date()/", "/Date(12a)/", "Date(1)", ""])
def test_rejects_what_is_not_an_ms_date(bad: str) -> None:
    assert not is_ms_date(bad)
    with pytest.raises(ValueError):
        epoch_ms(bad)


def test_if_modified_since_is_iso_utc_rounded_down_to_the_second() -> None:
    moment = datetime(2026, 3, 2, 23, 59, 59, 999_999, tzinfo=timezone(timedelta(hours=13)))
    assert format_if_modified_since(moment) == "2026-03-02T10:59:59"
    assert format_if_modified_since(datetime(2026, 1, 1, 0, 0, 0, 1)) == "2026-01-01T00:00:00"


def test_connections_timestamps_without_zone_are_utc() -> None:
    parsed = parse_iso_utc("2019-12-07T18:46:19.5165400")
    assert parsed == datetime(2019, 12, 7, 18, 46, 19, 516540, tzinfo=UTC)
    assert parse_iso_utc("2025-02-26T08:02:32Z") == datetime(2025, 2, 26, 8, 2, 32, tzinfo=UTC)
    assert parse_iso_utc("2025-02-26T08:02:32+01:00") == datetime(2025, 2, 26, 7, 2, 32, tzinfo=UTC)
