"""How the TUI writes times, ages, sizes and health for a bookkeeper: short, plain words, no jargon.

Pure functions of their arguments (the current time is passed in), so snapshot tests with a frozen clock
render the same text every run. It must not read the clock or the state itself.
"""

from __future__ import annotations

from datetime import UTC, datetime

from rich.text import Text

from appliance.fleet import Health

HEALTH_LABEL = {
    Health.HEALTHY: "healthy",
    Health.STALE: "stale",
    Health.FAILING: "failing",
    Health.NEEDS_CONSENT: "needs consent",
}
HEALTH_STYLE = {
    Health.HEALTHY: "green",
    Health.STALE: "yellow",
    Health.FAILING: "bold red",
    Health.NEEDS_CONSENT: "magenta",
}
HEALTH_MARK = {Health.HEALTHY: "●", Health.STALE: "◐", Health.FAILING: "✖", Health.NEEDS_CONSENT: "⚠"}


def health_text(health: Health) -> Text:
    return Text(f"{HEALTH_MARK[health]} {HEALTH_LABEL[health]}", style=HEALTH_STYLE[health])


def duration(seconds: float) -> str:
    """`45s`, `12m`, `5h`, `3d`, `7w`: one unit, rounded down, enough to judge at a glance."""
    seconds = max(0.0, seconds)
    for unit, size in (("w", 7 * 86_400), ("d", 86_400), ("h", 3_600), ("m", 60)):
        if seconds >= size * (2 if unit == "w" else 1):
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


def ago(timestamp: float | None, now: float) -> str:
    if timestamp is None:
        return "never"
    if timestamp > now:
        return "just now"
    return f"{duration(now - timestamp)} ago"


def until(timestamp: float | None, now: float) -> str:
    if timestamp is None:
        return "-"
    if timestamp <= now:
        return "due now"
    return f"in {duration(timestamp - now)}"


def when(timestamp: float | None) -> str:
    """An absolute time in UTC (the appliance's logs and restic's snapshots use UTC too)."""
    if timestamp is None:
        return "-"
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M")


def day(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d")


def size(count: int | None) -> str:
    if count is None:
        return "-"
    value = float(count)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{count} B"  # pragma: no cover - the loop always returns


def number(value: int | float) -> str:
    return f"{value:,}"


def money(value: float | int | str | None) -> str:
    if value is None or value == "":
        return ""
    try:
        return f"{float(value):,.2f}"
    except (TypeError, ValueError):
        return str(value)
