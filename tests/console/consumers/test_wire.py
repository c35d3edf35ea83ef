"""The dashboard wire format: deltas against what a dashboard has, and a copy rebuilt from them."""

from __future__ import annotations

import json

from console.consumers.wire import (
    GPU_WIRE_FIELDS,
    DashboardCopy,
    dashboard_message,
    node_delta,
    snapshot_compact,
)

UTIL = GPU_WIRE_FIELDS.index("utilization")
TEMP = GPU_WIRE_FIELDS.index("temperature_c")


def row(index: int, util: float = 50.0, temp: float = 60.0) -> list:
    r = [0] * len(GPU_WIRE_FIELDS)
    r[0], r[UTIL], r[TEMP] = index, util, temp
    return r


def update(ts: float, *rows: list, **keys) -> dict:
    return {"id": 7, "name": "gpu-a", "ts": ts, "gpus": [list(r) for r in rows], **keys}


def test_a_node_new_to_the_dashboard_goes_whole_then_only_what_changed():
    sent: dict = {}
    first = node_delta(sent, update(1.0, row(0), row(1), stats={"jobs_running": 1}))
    assert first == update(1.0, row(0), row(1), stats={"jobs_running": 1})
    # Only GPU 1's temperature and the time changed: the name, stats and GPU 0 stay home.
    second = node_delta(sent, update(2.0, row(0), row(1, temp=71.0), stats={"jobs_running": 1}))
    assert second == {"id": 7, "ts": 2.0, "gpu_delta": [[1, TEMP, 71.0]]}
    assert node_delta(sent, update(2.0, row(0), row(1, temp=71.0), stats={"jobs_running": 1})) is None


def test_rows_go_whole_when_the_gpus_are_not_the_same_gpus():
    sent: dict = {}
    node_delta(sent, update(1.0, row(0), row(1)))
    assert node_delta(sent, update(2.0, row(0), row(1), row(2)))["gpus"] == [row(0), row(1), row(2)]
    assert node_delta(sent, update(3.0, row(0), row(5), row(2)))["gpus"] == [row(0), row(5), row(2)]


def test_an_older_reading_never_replaces_a_newer_one_but_its_state_goes_out():
    sent: dict = {}
    node_delta(sent, update(5.0, row(0, util=90.0)))
    # A database re-read (readings a second old) with a new state.
    stale = node_delta(sent, update(4.0, row(0, util=10.0), state="draining"))
    assert stale == {"id": 7, "state": "draining"}
    assert sent["gpus"] == [row(0, util=90.0)] and sent["ts"] == 5.0


def test_the_copy_rebuilt_from_snapshot_and_deltas_is_the_whole_state():
    sent: dict = {}
    updates = [update(t, row(0, util=t), row(1, temp=60.0 + (t > 2))) for t in (1.0, 2.0, 3.0)]
    copy = DashboardCopy()
    copy.apply(json.loads(dashboard_message("snapshot", [], seq=0)))
    for seq, u in enumerate(updates, start=1):
        copy.apply(json.loads(dashboard_message("nodes", [node_delta(sent, u)], seq=seq)))
    assert copy.nodes[7]["gpus"] == [row(0, util=3.0), row(1, temp=61.0)] and copy.nodes[7]["ts"] == 3.0
    assert copy.readings(7)[1]["temperature_c"] == 61.0


def test_a_gap_in_the_batches_drops_them_until_the_next_snapshot():
    copy = DashboardCopy()
    batch = lambda seq: json.loads(dashboard_message("nodes", [{"id": 1, "ts": float(seq)}], seq=seq))  # noqa: E731
    assert copy.apply(batch(1)) is None  # nothing before a snapshot applies
    assert copy.gaps == 0
    copy.apply(json.loads(dashboard_message("snapshot", [{"id": 1, "name": "a"}], seq=4)))
    assert copy.apply(batch(5)) == [{"id": 1, "ts": 5.0}]
    assert copy.apply(batch(7)) is None and copy.gaps == 1  # 6 was missed: ask for a resync once
    assert copy.apply(batch(8)) is None and copy.gaps == 1
    copy.apply(json.loads(dashboard_message("snapshot", [{"id": 1, "name": "a", "ts": 8.0}], seq=8)))
    assert copy.apply(batch(9)) is not None and copy.nodes[1]["ts"] == 9.0


def test_a_snapshot_leaves_empty_keys_out_but_keeps_zeros_and_false():
    entry = {
        "id": 1,
        "state_reason": "",
        "drained": False,
        "frames_refused": 0,
        "host": None,
        "gpus": [],
        "stats": {"jobs_running": 0, "latency_p50_s": None},
        "gpu_inventory": [{"index": 0, "name": "", "uuid": "GPU-1", "vram_total_mb": None}],
    }
    assert snapshot_compact(entry) == {
        "id": 1,
        "drained": False,
        "frames_refused": 0,
        "stats": {"jobs_running": 0},
        "gpu_inventory": [{"index": 0, "uuid": "GPU-1"}],
    }
