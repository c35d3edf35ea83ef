"""``python -m fleetagent --console URL --token TOKEN``: the fleet agent of one GPU host.

One process: the Celery worker for the node's queue runs in the main thread (thread pool,
so every task shares the one engine loaded here at start), and the asyncio agent loop
(NVML sampling, the console websocket, ops commands) runs in a second thread.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import threading


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m fleetagent", description=__doc__.splitlines()[0])
    parser.add_argument("--console", required=True, help="console URL, e.g. https://console.example.com")
    parser.add_argument("--token", default=os.environ.get("VOXFLEET_NODE_TOKEN", ""), help="node token (vfn_…)")
    parser.add_argument("--concurrency", type=int, default=1, help="jobs run at once on this host")
    parser.add_argument("--cpu", action="store_true", help="do not use NVML even if present")
    parser.add_argument("--no-worker", action="store_true", help="metrics and ops only, no Celery worker")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between samples")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "console.settings")
    import django

    django.setup()
    from django.conf import settings

    from console.errors import NotFound
    from fleetagent.agent.client import AgentClient
    from fleetagent.agent.collect import collector_open
    from fleetagent.agent.runtime import CeleryNodeRuntime, NodeRuntime
    from fleetagent.agent.stats import JobStats
    from fleetagent.services import node_authenticate

    logger = logging.getLogger("fleetagent")
    if not args.token:
        print("fleetagent: --token (or VOXFLEET_NODE_TOKEN) is required", file=sys.stderr)
        return 2
    try:
        # The worker needs the database anyway (jobs are claimed there), so check the token
        # here too: a wrong token fails at once instead of retrying against the console.
        node = node_authenticate(token=args.token)
    except NotFound as exc:
        print(f"fleetagent: {exc.message}", file=sys.stderr)
        return 2

    stats = JobStats()
    collector = collector_open(force_cpu=args.cpu)
    if not collector.nvml:
        logger.warning("no NVML on this host: running in CPU mode (%s)", collector.reason)
    run_worker = not args.no_worker
    if run_worker and settings.EMBEDDED:
        print("fleetagent: the Celery worker needs REDIS_URL (the broker); use --no-worker otherwise", file=sys.stderr)
        return 2

    from inference.engines import engine_get
    from inference.listeners import add_job_listener

    add_job_listener(stats.job_finished)
    hostname = f"agent@{node.name}"
    if run_worker:
        from console.celery import app

        engine_get()  # load once, before the first job; every worker thread shares it
        runtime: NodeRuntime = CeleryNodeRuntime(app=app, worker_hostname=hostname, node_name=node.name, stats=stats)
    else:
        runtime = NodeRuntime(node_name=node.name, stats=stats)
    client = AgentClient(
        console_url=args.console,
        token=args.token,
        collector=collector,
        runtime=runtime,
        stats=stats,
        node_name=node.name,
        engine=settings.VOXFLEET_ENGINE,
        interval_s=args.interval,
    )
    loop = asyncio.new_event_loop()
    agent_thread = threading.Thread(target=loop.run_until_complete, args=(client.run(),), name="fleet-agent")
    agent_thread.start()
    try:
        if run_worker:
            worker = app.Worker(
                hostname=hostname,
                queues=[node.queue_name],
                pool="threads",
                concurrency=args.concurrency,
                loglevel="INFO",
                without_gossip=True,
                without_mingle=True,
            )
            worker.start()  # blocks until SIGTERM/SIGINT (warm shutdown: running jobs finish)
        else:
            agent_thread.join()
    except KeyboardInterrupt:
        pass
    finally:
        loop.call_soon_threadsafe(client.stop)
        agent_thread.join(timeout=10)
        collector.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
