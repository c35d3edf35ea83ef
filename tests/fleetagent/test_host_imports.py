"""A GPU host's code runs with no Django: no settings, no models, no database (issue 10).

Each check runs in a fresh interpreter under ``tests.support.no_django``, which makes Django,
Channels, DRF, the database drivers and the console's database-backed modules unimportable,
so anything on the host's path that still needs them fails here.
"""

from __future__ import annotations

import json
import subprocess
import sys

from tests.support.live_server import ROOT

HOST_CODE = """
import json, sys
import tests.support.no_django as guard
import fleetagent.__main__ as cli
from fleetagent import protocol
from fleetagent.agent.client import AgentClient
from fleetagent.agent.collect import collector_open
from fleetagent.agent.host import ConsoleLink, HostRuntime
from fleetagent.agent.prompts import PromptCache
from fleetagent.agent.stats import JobStats
from fleetagent.agent.worker import JobRunner, synthesis_request, worker_app
from inference.engines import engine_configure, engine_create

args = cli.parse_args(["--console", "http://console.invalid", "--token", "vfn_x", "--broker", "memory://"])
engine_configure(name=args.engine)
stats = JobStats()
runtime = HostRuntime(node_name="gpu-01", stats=stats)
client = AgentClient(console_url=args.console, token=args.token, collector=collector_open(force_cpu=True),
                     runtime=runtime, stats=stats)
runner = JobRunner(runtime=runtime, link=ConsoleLink(client), prompts=PromptCache(sys.argv[1]),
                   console_http="http://console.invalid", token="vfn_x")
app = worker_app(broker_url="memory://", runner=runner, runtime=runtime)
request = synthesis_request(
    {"text": "你好", "language": "zh", "seed": 7, "speed": 1.0,
     "instruction": {"raw": "用四川话说", "dialect": "sichuan", "language": None, "emotion": None,
                     "styles": [], "speed": 1.0, "free_text": ""},
     "voice": {"key": "zh-female", "version": 1, "language": "zh", "gender": "female",
               "display_name": "Xiaomei", "profile": None, "prompt_transcript": "", "has_prompt_audio": False}},
    prompt_audio_path=None,
)
print(json.dumps({
    "blocked_loaded": guard.loaded(),
    "django_loaded": sorted(m for m in sys.modules if m.split(".")[0] in ("django", "channels", "rest_framework")),
    "task": protocol.RUN_JOB_TASK in app.tasks,
    "hello_version": json.loads(client.hello())["v"],
    "engine": type(engine_create(args.engine)).__name__,
    "dialect": request.instruction.dialect,
}))
"""


def test_the_host_modules_build_the_worker_and_a_job_request_without_django(tmp_path):
    done = subprocess.run(
        [sys.executable, "-c", HOST_CODE, str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    facts = json.loads(done.stdout.strip().splitlines()[-1])
    assert facts == {
        "blocked_loaded": [],
        "django_loaded": [],
        "task": True,
        "hello_version": 3,
        "engine": "CpuEngine",
        "dialect": "sichuan",
    }


def test_the_host_cli_refuses_to_run_jobs_without_a_broker():
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.support.no_django",
            "fleetagent",
            "--console",
            "http://127.0.0.1:9",
            "--token",
            "vfn_x",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)},
    )
    assert done.returncode == 2
    assert "--broker" in done.stderr and "Traceback" not in done.stderr
