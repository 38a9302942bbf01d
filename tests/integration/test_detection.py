"""Damage detection against the sandbox's four real damage scenarios (issue 4), staged through the sandbox's
admin API (`POST /_sandbox/damage`, the same write path as an API client), never by writing into the store.

For each scenario: clean days (`advance`) with a backup each, the damage, one backup -> the backup itself
(detection runs after every successful backup) stores a finding of warning or critical severity whose evidence
covers >= 95 % of the scenario's ground truth with <= 5 % wrong ids, and whose last clean point is the backup
before the damage. Then the findings are acknowledged through the CLI (`findings --ack ID`) and the next
scenario starts from a clean point.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.integration.test_backup import Installation, make_installation, run_cli

SCENARIOS: list[Any] = [
    # (kind, options, ground-truth buckets the evidence must cover)
    ("onboarding", {"months": 3, "limit": 12}, ("created",)),
    ("remap", {"months": 6, "limit": 12}, ("changed",)),
    # api_update: day one's bills all coded to one pair off their suppliers' habits (mapping_shifts);
    # compromise: bank details replaced, a new supplier paid at once, invoices voided (payee_changes).
    ("api_update", {"per_day": 4}, ("created",)),
    # the same integration mapping the tax (exempt instead of purchases) on each supplier's own account.
    ("api_update", {"per_day": 6, "mapping": "tax"}, ("created",)),
    ("compromise", {"edits": 3, "voids": 2, "payments": 2}, ("created", "changed", "voided")),
]


@pytest.fixture(scope="module")
def installation(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installation]:
    with make_installation(tmp_path_factory.mktemp("detection"), seed=17) as inst:
        (first,) = asyncio.run(inst.appliance.backup(full=True))
        assert first.status == "succeeded", first.error
        yield inst


def _cli(inst: Installation, *args: str) -> str:
    return run_cli(inst.config_path, *args)


def _backup(inst: Installation) -> str:
    (outcome,) = asyncio.run(inst.appliance.backup())
    assert outcome.status == "succeeded", outcome.error
    assert not [w for w in outcome.warnings if "detection" in w], outcome.warnings
    assert outcome.snapshot_id is not None
    return outcome.snapshot_id


def _open_serious(inst: Installation) -> list[Any]:
    return [
        f
        for f in inst.appliance.state.findings.list(inst.tenant_id)
        if f.severity in ("warning", "critical") and f.acknowledged_at is None
    ]


def test_a_clean_week_raises_nothing_above_info(installation: Installation) -> None:
    for _day in range(4):
        installation.sandbox.advance(1)
        _backup(installation)
    assert _open_serious(installation) == []


@pytest.mark.parametrize(
    ("kind", "options", "buckets"), SCENARIOS, ids=["onboarding", "remap", "api_update", "api_update_tax", "compromise"]
)
def test_each_damage_scenario_is_found_by_the_first_backup_after_it(
    installation: Installation, kind: str, options: dict[str, Any], buckets: tuple[str, ...]
) -> None:
    inst = installation
    inst.sandbox.advance(1)
    clean = _backup(inst)
    assert _open_serious(inst) == [], "a clean day raised a finding before the damage"
    truth = inst.sandbox._admin("POST", "damage", {"kind": kind, "tenant": inst.tenant_id, **options})
    damaged = {str(item["id"]) for bucket in buckets for item in truth[bucket]}
    assert damaged, f"the {kind} scenario changed nothing"
    after = _backup(inst)
    if kind == "api_update":  # a standing rule: stop it so the next scenario starts clean
        inst.sandbox._admin("POST", "damage", {"kind": kind, "tenant": inst.tenant_id, "stop": True})
    findings = [f for f in _open_serious(inst) if f.point_after == after]
    assert findings, f"the first backup after {kind} raised no warning or critical finding"
    evidence = {str(i) for f in findings for i in f.evidence.get("record_ids", [])}
    recall = len(evidence & damaged) / len(damaged)
    wrong = len(evidence - damaged) / max(1, len(evidence))
    print(f"{kind}: {[(f.rule, f.severity) for f in findings]} recall {recall:.3f} wrong {wrong:.3f} of {len(damaged)}")
    assert recall >= 0.95, (kind, recall, wrong)
    assert wrong <= 0.05, (kind, recall, wrong)
    assert {f.last_clean_point for f in findings} == {clean}

    listed = json.loads(_cli(inst, "findings", inst.tenant_id, "--json"))["findings"]
    assert {f.finding_id for f in findings} <= {f["finding_id"] for f in listed}
    for finding in _open_serious(inst):
        _cli(inst, "findings", "--ack", str(finding.finding_id))
    assert _open_serious(inst) == []
    still_open = json.loads(_cli(inst, "findings", inst.tenant_id, "--open", "--json"))["findings"]
    assert {f["severity"] for f in still_open} <= {"info"}
