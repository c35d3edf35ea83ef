"""The fleet page in a real browser: a snapshot, then deltas; a missed batch brings a fresh snapshot."""

from __future__ import annotations

import json
import re
import time

import pytest
from playwright.sync_api import expect

from tests.browser.helpers import StreamingAgent, node_register, staff_login

pytestmark = pytest.mark.browser


class CountingAgent(StreamingAgent):
    """Only GPU 0's utilization changes from one sample to the next."""

    every_s = 0.3

    def reading(self, seq: int) -> dict:
        return {**super().reading(seq), "utilization": float(5 + seq % 90)}


class Tap:
    """The page's dashboard socket through Playwright's route: frames seen both ways, one batch droppable."""

    def __init__(self) -> None:
        self.down: list[dict] = []  # server -> page, as delivered
        self.up: list[str] = []  # page -> server
        self.drop_next = False
        self.dropped: int | None = None

    def route(self, ws) -> None:
        server = ws.connect_to_server()

        def to_page(message) -> None:
            msg = json.loads(message)
            if self.drop_next and msg["type"] == "nodes":
                self.drop_next, self.dropped = False, msg["seq"]
                return
            self.down.append(msg)
            ws.send(message)

        def to_server(message) -> None:
            self.up.append(message)
            server.send(message)

        server.on_message(to_page)
        ws.on_message(to_server)

    def snapshots(self) -> list[dict]:
        return [m for m in self.down if m["type"] == "snapshot"]


def wait_until(page, predicate, *, timeout_s: float, what: str) -> None:
    """Let the page run (and the route see frames) until predicate() holds."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"timed out after {timeout_s} s waiting for {what}"
        page.wait_for_timeout(50)


def test_the_fleet_page_applies_deltas_and_resyncs_after_a_missed_batch(browser_page, server):
    page = browser_page
    token = node_register(server, "delta-x")
    agent = CountingAgent(server["base"], token)
    tap = Tap()
    page.route_web_socket(re.compile(r"/ws/ops/fleet/$"), tap.route)
    agent.start()
    try:
        staff_login(page, server)
        page.goto("/ops/")
        page.fill("#filter-name", "delta-x")
        cell = page.locator('#node-table tr[data-node="delta-x"] .col-util')
        expect(cell).to_have_text(re.compile(r"^\d+%$"), timeout=30_000)
        shown = cell.text_content()
        expect(cell).not_to_have_text(shown, timeout=10_000)  # live, from the deltas

        (snapshot,) = tap.snapshots()
        node_id = next(n["id"] for n in snapshot["nodes"] if n["name"] == "delta-x")
        util = snapshot["gpu_fields"].index("utilization")
        wait_until(page, lambda: len(tap.down) >= 6, timeout_s=10, what="a few batches")
        seqs = [m["seq"] for m in tap.down]
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))  # numbered one after another
        entries = [n for m in tap.down[1:] for n in m["nodes"] if n["id"] == node_id]
        deltas = [e for e in entries if "gpu_delta" in e]
        # GPU 0's utilization is all that changes: that one field is all that travels.
        assert len(deltas) >= 2 and all(change[1::2] == [util] for e in deltas for change in e["gpu_delta"])
        assert not any("gpus" in e or "name" in e for e in entries[-2:])

        # A batch lost on the way: the page notices the gap, asks for a snapshot, and goes on from it.
        tap.drop_next = True
        wait_until(page, lambda: len(tap.snapshots()) == 2, timeout_s=10, what="the snapshot after the gap")
        assert json.loads(tap.up[-1]) == {"type": "resync"} and tap.snapshots()[1]["seq"] >= tap.dropped
        shown = cell.text_content()
        expect(cell).not_to_have_text(shown, timeout=10_000)
        assert page.evaluate("window.__opsPerf.renders") > 2
        assert not page.js_errors, page.js_errors
    finally:
        agent.stop.set()
        agent.join(timeout=10)


def test_the_page_store_merges_deltas_into_rows_and_refuses_them_after_a_gap(browser_page, server):
    page = browser_page
    staff_login(page, server)
    page.goto("/ops/")
    result = page.evaluate(
        """() => {
      const s = new Ops.FleetStore(), f = ["index", "utilization"], out = {};
      out.snapshot = s.merge({type: "snapshot", seq: 5, gpu_fields: f,
        nodes: [{id: 1, name: "a", state: "draining", gpus: [[0, 10], [1, 20]]}]});
      s.takeDirty();
      out.delta = s.merge({type: "nodes", seq: 6, gpu_fields: f, nodes: [{id: 1, ts: 2, gpu_delta: [[1, 1, 25]]}]});
      out.rows = s.nodes.get(1).gpus;
      out.dirtyCells = [...s.takeDirty().get(1)];
      out.gap = s.merge({type: "nodes", seq: 8, gpu_fields: f, nodes: [{id: 1, gpu_delta: [[0, 1, 99]]}]});
      out.after = s.merge({type: "nodes", seq: 9, gpu_fields: f, nodes: [{id: 1, gpu_delta: [[0, 1, 98]]}]});
      out.rowsAfterGap = s.nodes.get(1).gpus;
      out.resync = s.merge({type: "snapshot", seq: 9, gpu_fields: f, nodes: [{id: 1, name: "a", gpus: [[0, 11]]}]});
      out.node = s.nodes.get(1);
      out.next = s.merge({type: "nodes", seq: 10, gpu_fields: f, nodes: []});
      return out;
    }"""
    )
    assert result["snapshot"] == "ok" and result["delta"] == "ok"
    assert result["rows"] == [[0, 10], [1, 25]] and result["dirtyCells"] == [1]  # only GPU 1 is redrawn
    assert result["gap"] == "gap" and result["after"] == "skip" and result["rowsAfterGap"] == [[0, 10], [1, 25]]
    # The snapshot replaces the node: a key it leaves out (state) is not kept from before.
    assert result["resync"] == "ok" and result["node"] == {"id": 1, "name": "a", "gpus": [[0, 11]], "stats": {}}
    assert result["next"] == "ok"
