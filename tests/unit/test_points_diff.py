"""Diffing two points: set-based on record hashes, field-level with line items matched by LineItemID."""

from __future__ import annotations

from appliance.points.diff import FieldChange, diff_hashes, field_changes


def test_diff_hashes_splits_added_removed_and_changed() -> None:
    before = {"a": "1", "b": "2", "c": "3"}
    after = {"b": "2", "c": "30", "d": "4"}
    assert diff_hashes(before, after) == (["d"], ["a"], ["c"])
    assert diff_hashes(after, after) == ([], [], [])


def test_field_changes_match_line_items_by_id_whatever_their_order() -> None:
    before = {
        "Status": "AUTHORISED",
        "Contact": {"ContactID": "c1", "Name": "Acme"},
        "LineItems": [
            {"LineItemID": "L1", "AccountCode": "200", "LineAmount": 10.0},
            {"LineItemID": "L2", "AccountCode": "260", "LineAmount": 5.0},
        ],
    }
    after = {
        "Status": "AUTHORISED",
        "Contact": {"ContactID": "c1", "Name": "Acme Ltd"},
        "LineItems": [
            {"LineItemID": "L3", "AccountCode": "200", "LineAmount": 1.0},
            {"LineItemID": "L2", "AccountCode": "260", "LineAmount": 5.0},
            {"LineItemID": "L1", "AccountCode": "400", "LineAmount": 10.0},
        ],
        "Reference": "new",
    }
    assert field_changes(before, after) == [
        FieldChange("Contact.Name", "Acme", "Acme Ltd"),
        FieldChange("LineItems[L1].AccountCode", "200", "400"),
        FieldChange("LineItems[L3]", None, {"LineItemID": "L3", "AccountCode": "200", "LineAmount": 1.0}),
        FieldChange("Reference", None, "new"),
    ]


def test_lists_without_ids_compare_by_position_or_whole() -> None:
    assert field_changes({"Phones": [{"n": 1}, {"n": 2}]}, {"Phones": [{"n": 1}, {"n": 3}]}) == [
        FieldChange("Phones[1].n", 2, 3)
    ]
    assert field_changes({"Tags": [1]}, {"Tags": [1, 2]}) == [FieldChange("Tags", [1], [1, 2])]
    assert field_changes({"x": 1}, {"x": 1}) == []
