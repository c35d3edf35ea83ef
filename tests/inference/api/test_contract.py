"""The API keeps its published contract: schemathesis against the live server's /api/schema/,
all default checks, every phase (examples, coverage, fuzzing, stateful through the schema's
links), seeded so a run is reproducible. Its own tenant (``contract``, Free plan) keeps its
traffic off every other test's quota and rate limit; settings in schemathesis.toml beside this file."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


@pytest.mark.timeout(600)
def test_schemathesis_finds_no_contract_violation(live, tmp_path):
    cli = Path(sys.executable).with_name("schemathesis")
    if not cli.exists():
        pytest.skip("schemathesis is not installed (requirements-dev.txt)")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    result = subprocess.run(
        [
            str(cli),
            "--config-file",
            str(HERE / "schemathesis.toml"),
            "run",
            f"{live.url}/api/schema/",
            "--header",
            f"Authorization: Bearer {live.key('contract')}",
            "--phases",
            "examples,coverage,fuzzing,stateful",
            "--max-examples",
            "10",
            "--seed",
            "1",
            "--workers",
            "1",
            "--suppress-health-check",
            "all",
            "--no-color",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=540,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-8000:]
    assert "Stateful" in output and "passed" in output
