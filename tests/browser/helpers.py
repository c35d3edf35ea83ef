"""What the browser tests share: registering a node on the live server, an agent streaming to it, logging staff in."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time

from websockets.sync.client import connect

from tests.support.live_server import ROOT


def node_register(server, name: str) -> str:
    """A node created with the real command on the live server's database; its token."""
    out = subprocess.run(
        [sys.executable, "manage.py", "node_create", name, "--json"],
        cwd=ROOT,
        env=server["env"],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return json.loads(out.stdout)[0]["token"]


def staff_login(page, server) -> None:
    admin = server["demo"]["admin"]
    page.goto("/accounts/login/")
    page.fill("#id_username", admin["username"])
    page.fill("#id_password", admin["password"])
    page.click("button[type=submit]")
    page.wait_for_url("**/staff/")


class StreamingAgent(threading.Thread):
    """A node's agent over a real socket (protocol v2 frames): hello, then one sample every every_s."""

    hello = {"hostname": "gpu-host", "gpu_model": "NVIDIA L20", "engine": "cpu", "agent_version": "test", "nvml": True}
    every_s = 0.5

    def __init__(self, base: str, token: str) -> None:
        super().__init__(daemon=True)
        self.url = base.replace("http", "ws") + "/ws/agent/"
        self.token = token
        self.stop = threading.Event()
        self.errors: list[str] = []

    def frame(self, kind: str, **fields) -> str:
        return json.dumps({"type": kind, "v": 2, **fields})

    def reading(self, seq: int) -> dict:
        return {"index": 0, "utilization": 50.0, "vram_used_mb": 100.0, "vram_total_mb": 1000.0, "temperature_c": 50.0}

    def after_hello(self, ws) -> None:
        """Frames sent between the welcome and the first sample."""

    def run(self) -> None:
        with connect(self.url, additional_headers={"Authorization": f"Bearer {self.token}"}) as ws:
            ws.send(self.frame("hello", **{"gpus": [{"index": 0}], **self.hello}))
            ws.recv()
            self.after_hello(ws)
            seq = 0
            while not self.stop.is_set():
                seq += 1
                ws.send(
                    self.frame("sample", seq=seq, ts=time.time(), gpus=[self.reading(seq)], node={"jobs_running": 0})
                )
                self.stop.wait(self.every_s)
