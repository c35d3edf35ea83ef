"""``python -m fleetagent --console URL --token TOKEN --broker ADDRESS``: the fleet agent of one GPU host.

A host needs the console's URL, its node token and the broker's address, nothing else: no
database, no shared disk, no Django (protocol v3). One process: the asyncio agent loop (NVML
sampling, the console websocket, job frames, ops commands) runs in a second thread; the Celery
worker for the node's queue (``fleetagent.agent.worker``) runs in the main thread (thread pool,
so every job shares the one engine loaded here). The agent connects first: the console's
``welcome`` names the node, whose queue and broker user follow from it.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import logging
import os
import signal
import sys
import threading
from pathlib import Path

PROMPT_CACHE_MB = 256


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m fleetagent", description=__doc__.splitlines()[0])
    parser.add_argument("--console", required=True, help="console URL, e.g. https://console.example.com")
    parser.add_argument("--token", default=os.environ.get("VOXFLEET_NODE_TOKEN", ""), help="node token (vfn_…)")
    parser.add_argument(
        "--broker",
        default=os.environ.get("VOXFLEET_BROKER", ""),
        help="the job broker: redis://… (single-trust setups, used as given) or amqp://host:port/vhost "
        "without credentials (RabbitMQ: the node's own broker user and its password, derived from the "
        "token, are filled in); env VOXFLEET_BROKER",
    )
    parser.add_argument(
        "--engine",
        default=os.environ.get("VOXFLEET_ENGINE", "cpu"),
        choices=("cpu", "cosyvoice3"),
        help="synthesis engine (env VOXFLEET_ENGINE; default cpu)",
    )
    parser.add_argument(
        "--model-dir",
        default=os.environ.get("COSYVOICE_MODEL_DIR", ""),
        help="CosyVoice 3 model folder (env COSYVOICE_MODEL_DIR)",
    )
    parser.add_argument(
        "--cache-dir",
        default=os.environ.get("VOXFLEET_HOST_CACHE", ""),
        help="where prompt audio of cloned voices is cached (env VOXFLEET_HOST_CACHE; default ~/.cache/voxfleet)",
    )
    parser.add_argument("--prompt-cache-mb", type=int, default=PROMPT_CACHE_MB, help="prompt cache size bound")
    parser.add_argument("--concurrency", type=int, default=1, help="jobs run at once on this host")
    parser.add_argument("--cpu", action="store_true", help="do not use NVML even if present")
    parser.add_argument("--no-worker", action="store_true", help="metrics and ops only, no Celery worker")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between samples")
    return parser.parse_args(argv)


def node_broker_url(address: str, *, node_name: str, token: str) -> str:
    """``amqp://host:port/vhost`` + the node's own broker user (fleetagent.protocol)."""
    from urllib.parse import quote, urlsplit, urlunsplit

    from fleetagent.protocol import broker_password, broker_username

    parts = urlsplit(address)
    netloc = parts.hostname or "localhost"
    if parts.port:
        netloc = f"{netloc}:{parts.port}"
    creds = f"{quote(broker_username(node_name), safe='')}:{quote(broker_password(token), safe='')}"
    return urlunsplit((parts.scheme, f"{creds}@{netloc}", parts.path, parts.query, ""))


def host_broker_url(address: str, *, node_name: str, token: str) -> str:
    """What the worker connects to: RabbitMQ with the node's own user, Redis as given."""
    if address.startswith(("amqp://", "amqps://", "pyamqp://")):
        return node_broker_url(address, node_name=node_name, token=token)
    return address


def _fail(message: str) -> int:
    print(f"fleetagent: {message}", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=os.environ.get("LOG_LEVEL", "INFO"), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    if not args.token:
        return _fail("--token (or VOXFLEET_NODE_TOKEN) is required")
    run_worker = not args.no_worker
    if run_worker and not args.broker:
        return _fail(
            "--broker (or VOXFLEET_BROKER) is required to run jobs: redis://… or amqp://host:port/; "
            "use --no-worker for metrics only"
        )

    from fleetagent.agent.client import AgentClient, AgentRefused, console_http_url
    from fleetagent.agent.collect import collector_open
    from fleetagent.agent.host import ConsoleLink, HostRuntime
    from fleetagent.agent.stats import JobStats
    from inference.engines import EngineUnavailable, engine_configure, engine_get

    logger = logging.getLogger("fleetagent")
    engine_configure(name=args.engine, model_dir=args.model_dir or None)
    stats = JobStats()
    collector = collector_open(force_cpu=args.cpu)
    if not collector.nvml:
        logger.warning("no NVML on this host: running in CPU mode (%s)", collector.reason)
    runtime = HostRuntime(node_name="", stats=stats, runs_jobs=run_worker)
    client = AgentClient(
        console_url=args.console,
        token=args.token,
        collector=collector,
        runtime=runtime,
        stats=stats,
        engine=args.engine,
        interval_s=args.interval,
        stop_on_refusal=True,
    )
    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, name="fleet-agent", daemon=True).start()
    agent = asyncio.run_coroutine_threadsafe(client.run(), loop)

    def agent_stop(*_args) -> None:
        loop.call_soon_threadsafe(client.stop)

    try:
        # Connect first: a wrong token ends here, and the welcome names the node.
        connected = asyncio.run_coroutine_threadsafe(client.connected.wait(), loop)
        concurrent.futures.wait([agent, connected], return_when=concurrent.futures.FIRST_COMPLETED)
        if agent.done():
            connected.cancel()
            error = agent.exception()
            if isinstance(error, AgentRefused):
                return _fail(f"the console refused this node's token: {error}")
            return _fail(f"the agent stopped before it connected: {error!r}")
        logger.info("node %s connected to %s", runtime.node_name, client.url)
        if not run_worker:
            signal.signal(signal.SIGTERM, agent_stop)
            agent.result()
            return 0

        from fleetagent.agent.prompts import PromptCache
        from fleetagent.agent.worker import JobRunner, worker_app

        try:
            engine_get()  # load once, before the first job; every worker thread shares it
        except EngineUnavailable as exc:
            return _fail(exc.message)
        cache_dir = Path(args.cache_dir) if args.cache_dir else Path.home() / ".cache" / "voxfleet"
        runner = JobRunner(
            runtime=runtime,
            link=ConsoleLink(client),
            prompts=PromptCache(cache_dir / "prompts", max_bytes=args.prompt_cache_mb * 1024 * 1024),
            console_http=console_http_url(args.console),
            token=args.token,
        )
        app = worker_app(
            broker_url=host_broker_url(args.broker, node_name=runtime.node_name, token=args.token),
            runner=runner,
            runtime=runtime,
        )
        worker = app.Worker(
            hostname=f"agent@{runtime.node_name}",
            queues=[runtime.queue],
            pool="threads",
            concurrency=args.concurrency,
            loglevel=os.environ.get("LOG_LEVEL", "INFO"),
            without_gossip=True,
            without_mingle=True,
            without_heartbeat=True,
        )
        worker.start()  # blocks until SIGTERM/SIGINT (warm shutdown: running jobs finish)
        return worker.exitcode or 0
    except KeyboardInterrupt:
        return 0
    finally:
        agent_stop()
        try:
            agent.result(timeout=10)
        except Exception:  # noqa: BLE001 - stopping anyway
            pass
        loop.call_soon_threadsafe(loop.stop)
        collector.close()


if __name__ == "__main__":
    sys.exit(main())
