"""Faults on demand for the sandbox's Accounting API: errors, slowness, broken connections.

This module owns the `--faults SPEC` format, its parsing and canonical form, and the seeded,
deterministic decision of which fault (if any) hits the n-th API call. It must not perform the
fault itself (the gate in `sandbox.app` does: it sleeps, answers 5xx, drops or truncates).

SPEC format: comma-separated `key=value` pairs, e.g.
    seed=7,500=0.02,503=0.01,504=0.01,drop=0.01,truncate=0.01,slow=0.05,slow_ms=3000,latency_ms=40,jitter_ms=20
- `500`, `503`, `504`: probability of answering that status instead of the data;
- `drop`: probability of closing the connection without any response;
- `truncate`: probability of sending a Content-Length larger than the body, then closing;
- `slow`: probability of delaying the response by `slow_ms` (default 3000 ms);
- `latency_ms`, `jitter_ms`: a delay added to every call, plus a uniform 0..jitter on top;
- `exhaust=TENANT[+TENANT...]` or `exhaust=all`: use up those tenants' day allowance when set;
- `seed`: the random seed; the same seed and the same order of calls give the same faults.
An empty SPEC (or `none`) clears every fault.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, fields
from typing import Any

FAULT_KINDS = ("500", "503", "504", "drop", "truncate", "slow")
_PROBABILITY_KEYS = {
    "500": "p500",
    "503": "p503",
    "504": "p504",
    "drop": "drop",
    "truncate": "truncate",
    "slow": "slow",
}


@dataclass(frozen=True)
class FaultSpec:
    seed: int = 0
    p500: float = 0.0
    p503: float = 0.0
    p504: float = 0.0
    drop: float = 0.0
    truncate: float = 0.0
    slow: float = 0.0
    slow_ms: int = 3000
    latency_ms: int = 0
    jitter_ms: int = 0
    exhaust: tuple[str, ...] = ()

    @classmethod
    def parse(cls, spec: str | None) -> FaultSpec:
        text = (spec or "").strip()
        if not text or text.lower() == "none":
            return cls()
        values: dict[str, Any] = {}
        for item in text.split(","):
            if not item.strip():
                continue
            key, sep, raw = item.partition("=")
            key, raw = key.strip().lower(), raw.strip()
            if not sep:
                raise ValueError(f"fault {item!r} needs a value (key=value)")
            if key in _PROBABILITY_KEYS:
                probability = float(raw)
                if not 0.0 <= probability <= 1.0:
                    raise ValueError(f"probability for {key} must be between 0 and 1")
                values[_PROBABILITY_KEYS[key]] = probability
            elif key in ("slow_ms", "latency_ms", "jitter_ms", "seed"):
                number = int(raw)
                if number < 0:
                    raise ValueError(f"{key} must not be negative")
                values[key] = number
            elif key == "latency":
                values["latency_ms"] = int(raw)
            elif key == "jitter":
                values["jitter_ms"] = int(raw)
            elif key == "exhaust":
                values["exhaust"] = tuple(t for t in raw.replace(" ", "+").split("+") if t)
            else:
                known = ", ".join((*FAULT_KINDS, "slow_ms", "latency_ms", "jitter_ms", "exhaust", "seed"))
                raise ValueError(f"unknown fault {key!r}; known: {known}")
        spec_obj = cls(**values)
        if spec_obj.p500 + spec_obj.p503 + spec_obj.p504 + spec_obj.drop + spec_obj.truncate + spec_obj.slow > 1.0:
            raise ValueError("fault probabilities add up to more than 1")
        return spec_obj

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FaultSpec:
        known = {f.name for f in fields(cls)}
        cleaned = {k: v for k, v in data.items() if k in known}
        if "exhaust" in cleaned:
            cleaned["exhaust"] = tuple(cleaned["exhaust"])
        return cls(**cleaned)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["exhaust"] = list(self.exhaust)
        return data

    def to_spec(self) -> str:
        parts = [f"seed={self.seed}"]
        for kind in FAULT_KINDS:
            value = getattr(self, _PROBABILITY_KEYS[kind])
            if value:
                parts.append(f"{kind}={value:g}")
        if self.slow:
            parts.append(f"slow_ms={self.slow_ms}")
        if self.latency_ms:
            parts.append(f"latency_ms={self.latency_ms}")
        if self.jitter_ms:
            parts.append(f"jitter_ms={self.jitter_ms}")
        if self.exhaust:
            parts.append("exhaust=" + "+".join(self.exhaust))
        return ",".join(parts)

    @property
    def active(self) -> bool:
        return any(
            (self.p500, self.p503, self.p504, self.drop, self.truncate, self.slow, self.latency_ms, self.jitter_ms)
        )


@dataclass(frozen=True)
class FaultPlan:
    """What happens to one call: an extra delay and at most one fault kind."""

    delay_ms: int = 0
    kind: str | None = None  # one of FAULT_KINDS, "slow" only adds to delay_ms


class FaultInjector:
    """Decides faults call by call. The n-th call after a spec change always gets the same plan."""

    def __init__(self) -> None:
        self._spec = FaultSpec()
        self._generation = 0
        self._count = 0

    def use(self, spec: FaultSpec, generation: int = 0) -> None:
        """Apply `spec`; a new spec or generation (it was set again) restarts the call count."""
        if spec != self._spec or generation != self._generation:
            self._spec = spec
            self._generation = generation
            self._count = 0

    def decide(self) -> FaultPlan:
        spec = self._spec
        if not spec.active:
            return FaultPlan()
        self._count += 1
        rng = random.Random(f"{spec.seed}:{self._count}")
        draw = rng.random()
        delay = spec.latency_ms + (rng.randint(0, spec.jitter_ms) if spec.jitter_ms else 0)
        threshold = 0.0
        for kind in FAULT_KINDS:
            threshold += getattr(spec, _PROBABILITY_KEYS[kind])
            if draw < threshold:
                if kind == "slow":
                    return FaultPlan(delay_ms=delay + spec.slow_ms, kind="slow")
                return FaultPlan(delay_ms=delay, kind=kind)
        return FaultPlan(delay_ms=delay)
