"""Retention policy: forget flags, jurisdiction presets, the disconnected-organisation rule, and the model of
restic's keep algorithm (checked against real restic in tests/integration/test_vault_restic.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from appliance.settings import RetentionPolicy
from appliance.vault import retention

NONE = RetentionPolicy(daily=0, weekly=0, monthly=0, yearly=0)


def days(start: datetime, count: int, *, hour: int = 2) -> list[datetime]:
    return [start.replace(hour=hour) + timedelta(days=i) for i in range(count)]


def test_default_policy_flags() -> None:
    assert retention.forget_flags(RetentionPolicy()) == (
        "--keep-daily",
        "7",
        "--keep-weekly",
        "4",
        "--keep-monthly",
        "12",
        "--keep-yearly",
        "7",
    )


def test_zero_counts_are_left_out_and_an_empty_policy_is_refused() -> None:
    assert retention.forget_flags(RetentionPolicy(daily=3, weekly=0, monthly=0, yearly=0)) == ("--keep-daily", "3")
    with pytest.raises(ValueError, match="at least one"):
        retention.forget_flags(NONE)
    with pytest.raises(ValueError, match="negative"):
        retention.forget_flags(RetentionPolicy(daily=-1))


def test_a_disconnected_organisation_always_keeps_its_last_point() -> None:
    assert retention.forget_flags(NONE, disconnected=True) == ("--keep-last", "1")
    assert retention.forget_flags(RetentionPolicy(), disconnected=True)[:2] == ("--keep-last", "1")
    # Ten years after the last daily point, the calendar rules keep nothing new; --keep-last still does.
    times = days(datetime(2015, 1, 1, tzinfo=UTC), 3)
    assert retention.predict_kept(
        times, RetentionPolicy(daily=0, weekly=0, monthly=0, yearly=0), disconnected=True
    ) == [2]


@pytest.mark.parametrize(("code", "years"), [("AU", 5), ("NZ", 7), ("GB", 6), ("US", 7), ("CA", 6)])
def test_presets_cover_the_record_keeping_period(code: str, years: int) -> None:
    preset = retention.PRESETS[code]
    assert preset.record_years == years
    assert preset.source
    policy = retention.preset(code.lower())
    assert policy.yearly >= years + 1
    # the rest of the default policy is kept
    assert (policy.daily, policy.weekly, policy.monthly) == (7, 4, 12)


def test_a_preset_never_shortens_a_longer_base_policy() -> None:
    assert retention.preset("AU", RetentionPolicy(yearly=10)).yearly == 10
    with pytest.raises(KeyError):
        retention.preset("XX")


def test_protect_keeps_requested_ids_by_full_or_short_id() -> None:
    full_a, full_b, full_c = "a" * 64, "b" * 64, "c" * 64
    assert retention.protect([full_a, full_b, full_c], [full_b, "cccccccc"]) == [full_a]
    assert retention.protect([full_a], []) == [full_a]
    assert retention.protect([full_a], [""]) == [full_a]


def test_daily_keeps_the_newest_point_of_each_of_the_last_n_days() -> None:
    times = days(datetime(2025, 6, 1, tzinfo=UTC), 10)
    times += [times[-1] + timedelta(hours=5), times[-1] + timedelta(hours=9)]  # two more on the last day
    kept = retention.predict_kept(times, RetentionPolicy(daily=7, weekly=0, monthly=0, yearly=0))
    assert kept == [3, 4, 5, 6, 7, 8, 11]  # day 10's newest point (index 11), not its earlier two


def test_five_points_on_one_day_keep_only_one() -> None:
    times = [datetime(2025, 6, 3, h, tzinfo=UTC) for h in range(1, 6)]
    assert retention.predict_kept(times, RetentionPolicy()) == [4]


def test_newer_restic_also_keeps_the_oldest_point_while_budget_is_left() -> None:
    times = [datetime(2025, 6, 3, h, tzinfo=UTC) for h in range(1, 4)]
    policy = RetentionPolicy(daily=7, weekly=0, monthly=0, yearly=0)
    assert retention.predict_kept(times, policy) == [2]
    assert retention.predict_kept(times, policy, keep_oldest_with_budget=True) == [0, 2]


def test_a_year_of_daily_points_under_the_default_policy() -> None:
    start = datetime(2025, 1, 1, tzinfo=UTC)
    times = days(start, 365)
    kept = {times[i] for i in retention.predict_kept(times, RetentionPolicy())}
    newest = times[-1]
    # the last 7 days
    assert {newest - timedelta(days=i) for i in range(7)} <= kept
    # the newest point of each of the 12 months (2025 has 12 months of points)
    month_ends = {max(t for t in times if t.month == m) for m in range(1, 13)}
    assert month_ends <= kept
    # 4 weeks are inside the 7 days' span or just beyond it: at most 7 + 4 + 12 + 1 distinct points
    assert len(kept) <= 7 + 4 + 12 + 1
    assert times[0] not in kept


def test_weekly_buckets_are_iso_weeks() -> None:
    # 2024-12-30 (Mon) .. 2025-01-05 (Sun) are ISO week 2025-W01; 2024-12-29 is 2024-W52.
    times = [datetime(2024, 12, 29, tzinfo=UTC), datetime(2024, 12, 30, tzinfo=UTC), datetime(2025, 1, 5, tzinfo=UTC)]
    assert retention.predict_kept(times, RetentionPolicy(daily=0, weekly=2, monthly=0, yearly=0)) == [0, 2]


def test_order_of_input_does_not_matter() -> None:
    times = days(datetime(2025, 6, 1, tzinfo=UTC), 10)
    shuffled = times[5:] + times[:5]
    kept = retention.predict_kept(shuffled, RetentionPolicy(daily=3, weekly=0, monthly=0, yearly=0))
    assert sorted(shuffled[i] for i in kept) == times[-3:]
