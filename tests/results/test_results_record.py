"""CellRecord: validation, JSON round trip, schema versioning, content-hash ids."""
from __future__ import annotations

import json

import pytest

from ctkd_bench.results.record import SCHEMA_VERSION, CellRecord, RecordError, cell_id_for


def make(**over) -> CellRecord:
    fields = dict(cell_id="abc123", run_id="r1", suite="tiny", suite_hash="h", track="math",
                  pair="t->s", role="method", method="uld", seed=0, status="ok",
                  primary_metric="exact_match", higher_is_better=True,
                  metrics={"exact_match": 0.25}, costs={"steps": 10})
    fields.update(over)
    return CellRecord(**fields)


def test_round_trip_through_json_keeps_every_field():
    rec = make(method_paper={"title": "T", "url": "https://x", "venue": "V"},
               method_config={"k": [1, 2]}, lm_eval={"results": {"t": {"acc": 0.5}},
                                                     "task_hashes": {"t": "ff"}})
    back = CellRecord.from_dict(json.loads(json.dumps(rec.to_dict())))
    assert back == rec
    assert back.to_dict()["schema"] == SCHEMA_VERSION


def test_unknown_keys_from_a_newer_writer_survive_a_round_trip():
    data = make().to_dict() | {"gpu_hours": 3.5}
    rec = CellRecord.from_dict(data)
    assert rec.extra == {"gpu_hours": 3.5}
    assert rec.to_dict()["gpu_hours"] == 3.5


@pytest.mark.parametrize("over, message", [
    ({"status": "done"}, "status"),
    ({"status": "failed", "metrics": {}}, "needs a reason"),
    ({"status": "n/a", "reason": ""}, "needs a reason"),
    ({"metrics": {"rouge_l": 0.1}}, "primary metric"),
    ({"metrics": {"exact_match": "high"}}, "not a number"),
    ({"cell_id": "../../etc/passwd"}, "cell_id"),
    ({"cell_id": ""}, "cell_id"),
    ({"role": "judge"}, "role"),
    ({"role": "reference", "method": "sft"}, "reference row"),
    ({"seed": "0"}, "seed"),
    ({"costs": [1, 2]}, "costs must be a mapping"),
])
def test_invalid_records_are_refused_with_the_field_named(over, message):
    with pytest.raises(RecordError, match=message):
        make(**over)


def test_failed_and_na_records_need_no_metrics():
    assert make(status="failed", reason="boom", metrics={}).primary_value is None
    assert make(status="n/a", reason="encoder only", metrics={}).primary_value is None
    assert make(metrics={"exact_match": float("nan")}).primary_value is None
    assert make().primary_value == 0.25


def test_a_newer_schema_is_refused_and_a_missing_one_too():
    data = make().to_dict()
    with pytest.raises(RecordError, match="newer"):
        CellRecord.from_dict(data | {"schema": SCHEMA_VERSION + 1})
    with pytest.raises(RecordError, match="schema"):
        CellRecord.from_dict({k: v for k, v in data.items() if k != "schema"})
    with pytest.raises(RecordError, match="lacks"):
        CellRecord.from_dict({k: v for k, v in data.items() if k != "track"})


def test_cell_id_is_a_content_hash_independent_of_key_order():
    a = cell_id_for({"method": "uld", "seed": 1, "track": "lm"})
    b = cell_id_for({"track": "lm", "seed": 1, "method": "uld"})
    assert a == b and len(a) == 16
    assert cell_id_for({"method": "uld", "seed": 2, "track": "lm"}) != a
    make(cell_id=a)  # a hash is a valid id
