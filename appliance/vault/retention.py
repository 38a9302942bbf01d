"""Retention: pure decisions about which backup points to keep.

This module owns the translation of `appliance.settings.RetentionPolicy` into restic `forget` flags, the
presets per jurisdiction, the rule that the last point of a disconnected organisation is never pruned, and a
model of restic's own keep algorithm (`predict_kept`) so policies can be tested without restic. It does no I/O:
no subprocess, no files, no clock (times are passed in).

restic's algorithm, read at v0.14.0 `internal/restic/snapshot_policy.go` (`ApplyPolicy`): snapshots are
grouped (default by host and paths), sorted newest first, and each `--keep-*` rule walks them with a bucket
function (last: every snapshot; hourly: y/m/d/h; daily: y/m/d; weekly: ISO year/week; monthly: y/m;
yearly: y) over the snapshot's own timestamp. A snapshot is kept when, for some rule with budget left, its
bucket differs from the last bucket that rule kept; that rule's budget then drops by one.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from appliance.settings import RetentionPolicy


@dataclass(frozen=True)
class JurisdictionPreset:
    """How long a jurisdiction asks businesses to keep their accounting records, and the policy that covers it."""

    code: str
    name: str
    record_years: int
    source: str
    """Where the figure comes from (or "inference")."""

    def policy(self, base: RetentionPolicy | None = None) -> RetentionPolicy:
        """`base` (default: Strongroom's defaults) with enough yearly points to reach back `record_years`.

        One yearly point per calendar year plus the current year's newest point: `record_years + 1` yearly
        points span at least `record_years` full years. A point holds every record as it stood that day, so
        the oldest yearly point is what still shows a record deleted from Xero since (inference about how the
        obligation maps to points; the obligations themselves are cited in `source`)."""
        base = base or RetentionPolicy()
        return base.model_copy(update={"yearly": max(base.yearly, self.record_years + 1)})


PRESETS: dict[str, JurisdictionPreset] = {
    preset.code: preset
    for preset in (
        JurisdictionPreset(
            "AU",
            "Australia",
            5,
            "ATO: keep records for 5 years from when they were prepared or the transaction completed "
            "(ato.gov.au, 'Record keeping for business'; ITAA 1936 s262A)",
        ),
        JurisdictionPreset(
            "NZ",
            "New Zealand",
            7,
            "IRD: keep business records for at least 7 years (Tax Administration Act 1994 s22; ird.govt.nz)",
        ),
        JurisdictionPreset(
            "GB",
            "United Kingdom",
            6,
            "HMRC: companies keep records 6 years from the end of the last financial year they relate to "
            "(gov.uk 'Running a limited company: company and accounting records')",
        ),
        JurisdictionPreset(
            "US",
            "United States",
            7,
            "IRS Publication 583: 3 years in general, 7 for bad-debt or worthless-securities claims; 7 covers "
            "every case (inference: the longest period in the publication)",
        ),
        JurisdictionPreset(
            "CA",
            "Canada",
            6,
            "CRA: keep records 6 years from the end of the last tax year they relate to (Income Tax Act s230(4))",
        ),
    )
}


def preset(code: str, base: RetentionPolicy | None = None) -> RetentionPolicy:
    """The retention policy for a jurisdiction by ISO 3166 code (e.g. "AU"); KeyError if unknown."""
    return PRESETS[code.upper()].policy(base)


def forget_flags(policy: RetentionPolicy, *, disconnected: bool = False) -> tuple[str, ...]:
    """`restic forget` policy flags. A disconnected organisation also gets `--keep-last 1`: its newest point is
    never pruned even if the calendar rules have all run out (no new points arrive to refresh them).

    Raises ValueError for a policy that keeps nothing: restic refuses it anyway ("no policy was specified"),
    and a retention bug must never look like "delete everything"."""
    flags: list[str] = []
    for name, count in (
        ("daily", policy.daily),
        ("weekly", policy.weekly),
        ("monthly", policy.monthly),
        ("yearly", policy.yearly),
    ):
        if count < 0:
            raise ValueError(f"negative retention count for {name}: {count}")
        if count:
            flags += [f"--keep-{name}", str(count)]
    if disconnected:
        flags = ["--keep-last", "1", *flags]
    if not flags:
        raise ValueError("a retention policy must keep at least one point")
    return tuple(flags)


def protect(remove_ids: Iterable[str], keep_ids: Iterable[str]) -> list[str]:
    """The ids restic proposed to remove, minus any the caller must keep (full or short ids both match)."""
    keep = [k for k in keep_ids if k]
    return [rid for rid in remove_ids if not any(rid.startswith(k) or k.startswith(rid) for k in keep)]


def _buckets(policy: RetentionPolicy, keep_last: int) -> list[tuple[str, int]]:
    return [
        ("last", keep_last),
        ("daily", policy.daily),
        ("weekly", policy.weekly),
        ("monthly", policy.monthly),
        ("yearly", policy.yearly),
    ]


def _bucket(rule: str, time: datetime, index: int) -> object:
    if rule == "last":
        return index
    if rule == "daily":
        return (time.year, time.month, time.day)
    if rule == "weekly":
        iso = time.isocalendar()
        return (iso.year, iso.week)
    if rule == "monthly":
        return (time.year, time.month)
    return time.year


def predict_kept(
    times: Sequence[datetime],
    policy: RetentionPolicy,
    *,
    disconnected: bool = False,
    keep_oldest_with_budget: bool = False,
) -> list[int]:
    """Indices into `times` (one group's snapshot times) that restic's `forget` would keep under `policy`.

    Same algorithm as restic's `ApplyPolicy`: snapshots are ordered newest first (equal times should be
    avoided in tests: restic breaks those ties by id). Times are bucketed in their own zone, as restic does with
    the stored timestamp. `keep_oldest_with_budget` models newer releases, where a rule with budget left also
    keeps the group's oldest snapshot ("the oldest snapshot in the group is kept additionally", `forget --help`
    in 0.17; absent from 0.14's help and `ApplyPolicy`, so pass `Feature.FORGET_KEEPS_OLDEST.available(v)`)."""
    order = sorted(range(len(times)), key=lambda i: (times[i], -i), reverse=True)
    budgets = _buckets(policy, 1 if disconnected else 0)
    remaining = [count for _, count in budgets]
    last: list[object] = [None] * len(budgets)
    kept: list[int] = []
    for position, index in enumerate(order):
        keep = False
        for rule_index, (rule, _) in enumerate(budgets):
            if remaining[rule_index] <= 0:
                continue
            value = _bucket(rule, times[index], position)
            oldest = keep_oldest_with_budget and position == len(order) - 1
            if value != last[rule_index] or oldest:
                keep = True
                last[rule_index] = value
                remaining[rule_index] -= 1
        if keep:
            kept.append(index)
    return sorted(kept)
