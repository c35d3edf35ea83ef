"""Fleet writes: nodes and their tokens, agent heartbeats and samples, node states, ops actions."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import DatabaseError, IntegrityError, connection, transaction
from django.db.models import Avg, Case, F, Max, Q, Value, When
from django.db.models.functions import TruncMinute
from django.utils import timezone

from console.credentials import credential_generate, credential_matches, credential_prefix
from console.errors import Conflict, NotFound, VoxfleetError
from fleetagent.broker import broker_user_provision
from fleetagent.models import GpuSample, Node, NodeAction, NodeActionKind, NodeActionOutcome, NodeState
from fleetagent.protocol import GPU_METRIC_FIELDS, NODE_FIELDS
from fleetagent.signals import NodeWork, node_lost, node_work_query

logger = logging.getLogger(__name__)


@transaction.atomic
def node_create(*, name: str, dedicated_tenant=None, gpu_model: str = "") -> tuple[Node, str]:
    """A new node and its token's plaintext (shown once)."""
    cred = credential_generate("vfn")
    node = Node(
        name=name,
        token_prefix=cred.prefix,
        token_hash=cred.secret_hash,
        dedicated_tenant=dedicated_tenant,
        gpu_model=gpu_model,
    )
    node.full_clean()
    node.save()
    # RabbitMQ: the node's own broker user (rolled back with the node if it cannot be made).
    broker_user_provision(node_name=node.name, token=cred.plaintext)
    return node, cred.plaintext


def node_ensure(*, name: str) -> Node:
    """The node called ``name``, created if missing (the embedded default's local node).

    Its token is not needed: the local agent connects in-process, trusted by scope.
    """
    node = Node.objects.filter(name=name).first()
    if node is None:
        try:
            node, _token = node_create(name=name)
        except (IntegrityError, ValidationError):  # a concurrent request created it first
            node = Node.objects.get(name=name)
    return node


def node_token_rotate(*, node: Node) -> str:
    cred = credential_generate("vfn")
    with transaction.atomic():
        Node.objects.filter(pk=node.pk).update(
            token_prefix=cred.prefix, token_hash=cred.secret_hash, token_revoked_at=None
        )
        broker_user_provision(node_name=node.name, token=cred.plaintext)  # the broker password rotates too
    node.refresh_from_db()
    return cred.plaintext


def node_authenticate(*, token: str) -> Node:
    """The node a presented agent token belongs to; NotFound for wrong or revoked tokens."""
    # Tokens are printable ASCII; anything else (a NUL byte PostgreSQL refuses in a query,
    # non-ASCII from a latin-1 header) is no token, answered like a wrong one, never a 500.
    if not token or not (token.isascii() and token.isprintable()):
        raise NotFound("Unknown or revoked node token.", code="invalid_node_token")
    prefix = credential_prefix(token)
    node = Node.objects.filter(token_prefix=prefix).first() if prefix else None
    if node is None or node.token_revoked_at is not None or not credential_matches(token, node.token_hash):
        raise NotFound("Unknown or revoked node token.", code="invalid_node_token")
    return node


# --- agent connection, heartbeats and samples -------------------------------------------------

# A node whose agent runs nothing while work queued for it has waited this long is stuck.
QUEUE_STUCK_AFTER_S = 60
RAW_KEEP_S = 60 * 60
ROLLUP_KEEP_S = 30 * 24 * 60 * 60
ACTION_TIMEOUT_S = 15 * 60


def node_agent_connect(*, node_id: int, channel_name: str, hello: dict) -> Node:
    """An agent said hello: remember its channel and what it runs; an offline or stuck node comes back online.

    The state it comes back in is the console's (``Node.drained``), not what the agent says:
    a restarted agent always starts undrained. ``hello`` is a frame checked by fleetagent.frames.
    """
    gpus = hello.get("gpus") or []
    fields = {
        "agent_channel": channel_name,
        "hostname": str(hello.get("hostname", ""))[:255],
        "agent_version": str(hello.get("agent_version", ""))[:32],
        "engine": str(hello.get("engine", ""))[:64],
        "nvml_available": bool(hello.get("nvml")),
        "gpu_count": len(gpus),
        "gpus": [g for g in gpus if isinstance(g, dict)],
        "protocol_version": int(hello.get("v") or 1),
        "last_seen_at": timezone.now(),
    }
    if hello.get("gpu_model"):
        fields["gpu_model"] = str(hello["gpu_model"])[:64]
    # Two conditional UPDATEs, no row lock held across round trips: 625 agents say hello at
    # once after a console restart, while the heartbeat UPDATE touches every node each second.
    Node.objects.filter(pk=node_id).update(**fields)
    # A restart in progress ends when the agent comes back (a crashed agent re-registers);
    # draining is an ops decision (Node.drained) and survives reconnects.
    Node.objects.filter(pk=node_id, state__in=(NodeState.OFFLINE, NodeState.STUCK, NodeState.RESTARTING)).update(
        state=Case(When(drained=True, then=Value(NodeState.DRAINING)), default=Value(NodeState.ONLINE)),
        state_reason=Case(When(drained=True, then=Value("drained by ops")), default=Value("")),
    )
    return Node.objects.get(pk=node_id)


def node_agent_disconnect(*, node_id: int, channel_name: str) -> None:
    """The agent's socket closed; the heartbeat timeout (not this) decides when it is offline."""
    Node.objects.filter(pk=node_id, agent_channel=channel_name).update(agent_channel="")


def node_agent_bye(*, node_id: int, channel_name: str, reason: str = "") -> bool:
    """The agent said ``bye`` (a clean stop): the node is offline now, not after the heartbeat
    timeout, so nothing more is queued to it; ``node_lost`` moves what it still had. Whether
    this call took it offline (a bye from a channel that is no longer the node's changes nothing).
    """
    with transaction.atomic():
        updated = (
            Node.objects.filter(pk=node_id, agent_channel=channel_name)
            .exclude(state=NodeState.OFFLINE)
            .update(
                state=NodeState.OFFLINE,
                state_reason=f"agent stopped: {reason}"[:255] if reason else "agent stopped",
                agent_channel="",
                jobs_running=0,
            )
        )
        if updated:
            node = Node.objects.get(pk=node_id)
            transaction.on_commit(lambda: node_lost.send(sender=Node, node_id=node.pk, node_name=node.name))
    return bool(updated)


def _sample_rows(node_id: int, sample: dict) -> list[tuple]:
    """Row tuples in _SAMPLE_COLUMNS order (plain tuples: this runs for every GPU every second)."""
    at = datetime.fromtimestamp(float(sample["ts"]), tz=UTC)
    raw = GpuSample.RESOLUTION_RAW
    rows = []
    for gpu in sample.get("gpus") or []:
        get = gpu.get
        rows.append(
            (
                node_id,
                int(get("index", 0)),
                at,
                raw,
                float(get("utilization") or 0.0),
                float(get("memory_utilization") or 0.0),
                float(get("vram_used_mb") or 0.0),
                float(get("vram_total_mb") or 0.0),
                _opt_float(get("temperature_c")),
                _opt_float(get("power_w")),
                _opt_float(get("power_limit_w")),
                _opt_float(get("sm_clock_mhz")),
                int(get("throttle_reasons") or 0),
                int(get("ecc_errors") or 0),
                int(get("xid_errors") or 0),
                None if get("last_xid") is None else int(get("last_xid")),
            )
        )
    host = sample.get("host")
    if not rows and host:
        # CPU-mode node: the host's CPU and RAM are stored as "GPU -1" for the charts.
        used, total = float(host.get("ram_used_mb") or 0.0), float(host.get("ram_total_mb") or 0.0)
        rows.append(
            (node_id, -1, at, raw, float(host.get("cpu_percent") or 0.0), _ratio(used, total), used, total)
            + (None, None, None, None, 0, 0, 0, None)
        )
    return rows


def _opt_float(value) -> float | None:
    return None if value is None else float(value)


def _ratio(used, total) -> float:
    return round(100.0 * float(used or 0) / float(total), 1) if total else 0.0


def samples_ingest(*, batch: list[tuple[int, dict]]) -> list[int]:
    """Persist a batch of agent samples (1 s resolution) and refresh each node's heartbeat.

    Called once per flush interval for everything the ASGI process received, so 1,000 GPUs
    at 1 Hz is one multi-row INSERT a second rather than a thousand, one UPDATE for all the
    heartbeats, and a row update only for nodes whose job figures changed. Returns the ids of
    nodes whose state changed (offline -> online on a returning heartbeat).

    Nodes are kept apart: the heartbeats are one statement that holds nothing a node sent; if
    the one COPY of every node's rows fails, each node's rows are stored in a transaction of
    their own, and each node's figures are updated on their own. Whatever one node's data does,
    it cannot roll back another node's heartbeat, samples or state.
    """
    if not batch:
        return []
    nodes = {
        n["pk"]: n
        for n in Node.objects.filter(pk__in={node_id for node_id, _ in batch}).values(
            "pk", "state", "drained", "jobs_running", "jobs_queued", "stats"
        )
    }
    rows_by_node: dict[int, list[tuple]] = {}
    latest: dict[int, dict] = {}
    for node_id, sample in batch:
        if node_id not in nodes:
            continue  # the node was deleted while its samples waited for this flush
        try:
            rows_by_node.setdefault(node_id, []).extend(_sample_rows(node_id, sample))
            ts = float(sample["ts"])
        except (KeyError, TypeError, ValueError, OverflowError, OSError):
            logger.warning("node %s: a sample that is not a checked frame was dropped", node_id)
            continue
        if node_id not in latest or ts >= float(latest[node_id]["ts"]):
            latest[node_id] = sample
    now = timezone.now()
    Node.objects.filter(pk__in=latest.keys()).update(last_seen_at=now)
    _samples_store(rows_by_node)
    changed: list[int] = []
    for node_id, sample in latest.items():
        try:
            with transaction.atomic():
                if _node_figures_update(nodes[node_id], sample):
                    changed.append(node_id)
        except DatabaseError:
            logger.exception("node %s: live figures not stored", node_id)
    return changed


def _node_figures_update(node: dict, sample: dict) -> bool:
    """Store one node's job figures from its newest sample; True when its state changed."""
    stats = sample.get("node") or {}
    fields = {
        "jobs_running": int(stats.get("jobs_running") or 0),
        "jobs_queued": int(stats.get("jobs_queued") or 0),
        "stats": {k: stats.get(k) for k in NODE_FIELDS if k in stats},
    }
    state_changed = node["state"] == NodeState.OFFLINE
    if state_changed:
        # The console decides the state it comes back in (a drained node stays drained).
        fields["state"] = NodeState.DRAINING if node["drained"] else NodeState.ONLINE
        fields["state_reason"] = "drained by ops" if node["drained"] else ""
    elif all(node[k] == v for k, v in fields.items()):
        return False
    Node.objects.filter(pk=node["pk"]).update(**fields)
    return state_changed


def _samples_store(rows_by_node: dict[int, list[tuple]]) -> None:
    rows = [row for node_rows in rows_by_node.values() for row in node_rows]
    try:
        with transaction.atomic():
            _samples_insert(rows)
        return
    except DatabaseError:
        logger.exception("storing %d samples at once failed; storing them node by node", len(rows))
    for node_id, node_rows in rows_by_node.items():
        try:
            with transaction.atomic():
                _samples_insert(node_rows)
        except DatabaseError:
            logger.exception("node %s: %d samples not stored", node_id, len(node_rows))


_SAMPLE_COLUMNS = ("node_id", "gpu_index", "at", "resolution_s", *GPU_METRIC_FIELDS)


def _samples_insert(rows: list[tuple]) -> None:
    """Insert 1 s rows without per-row ORM work (the hot path: every GPU, every second).

    PostgreSQL: COPY (one round trip, no SQL text to build or parse per row; a 15,000
    placeholder INSERT spent ~0.3 s in psycopg's client-side query conversion alone).
    Elsewhere (SQLite, the embedded default with a handful of GPUs): executemany.
    """
    if not rows:
        return
    table = connection.ops.quote_name(GpuSample._meta.db_table)
    columns = ", ".join(connection.ops.quote_name(c) for c in _SAMPLE_COLUMNS)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            with cursor.cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
            return
        at_index = _SAMPLE_COLUMNS.index("at")
        adapt = connection.ops.adapt_datetimefield_value
        placeholder = "(" + ", ".join(["%s"] * len(_SAMPLE_COLUMNS)) + ")"
        cursor.executemany(
            f"INSERT INTO {table} ({columns}) VALUES {placeholder}",
            [row[:at_index] + (adapt(row[at_index]),) + row[at_index + 1 :] for row in rows],
        )


def node_states_sweep(*, now: datetime | None = None) -> list[int]:
    """Heartbeat and stuck detection; returns ids of nodes whose state changed.

    offline: no heartbeat for NODE_OFFLINE_AFTER_S (``node_lost`` is sent, and the jobs app
    requeues its in-flight jobs once, so an agent crash loses nothing). stuck: a job on the
    node is past its deadline, or work queued for it is not being consumed (what the jobs
    app answers to ``node_work_query``). A stuck node whose cause is gone is online again.
    Draining and restarting nodes keep their state unless they go silent.
    """
    now = now or timezone.now()
    silent_before = now - timedelta(seconds=settings.NODE_OFFLINE_AFTER_S)
    changed: list[int] = []
    gone = list(
        Node.objects.exclude(state=NodeState.OFFLINE).filter(
            Q(last_seen_at__lt=silent_before) | Q(last_seen_at__isnull=True)
        )
    )
    for node in gone:
        updated = (
            Node.objects.filter(pk=node.pk)
            .exclude(state=NodeState.OFFLINE)
            .update(
                state=NodeState.OFFLINE,
                state_reason=f"no heartbeat for {settings.NODE_OFFLINE_AFTER_S} s",
                jobs_running=0,
            )
        )
        if updated:
            changed.append(node.pk)
            node_lost.send(sender=Node, node_id=node.pk, node_name=node.name)
    watched = list(Node.objects.filter(state__in=[NodeState.ONLINE, NodeState.STUCK]))
    work = _node_work(node_ids=[node.pk for node in watched], now=now)
    for node in watched:
        reason = _stuck_reason(node, work.get(node.pk, NodeWork()), now=now)
        new_state = NodeState.STUCK if reason else (NodeState.DRAINING if node.drained else NodeState.ONLINE)
        if new_state != node.state:
            if Node.objects.filter(pk=node.pk, state=node.state).update(state=new_state, state_reason=reason):
                changed.append(node.pk)
    node_actions_expire(now=now)
    return changed


def _node_work(*, node_ids: list[int], now: datetime) -> dict[int, NodeWork]:
    """Every receiver's answer to node_work_query, merged per node."""
    work: dict[int, NodeWork] = {}
    if not node_ids:
        return work
    for _receiver, answer in node_work_query.send(sender=Node, node_ids=node_ids, now=now):
        for node_id, reported in (answer or {}).items():
            work[node_id] = work[node_id].merged(reported) if node_id in work else reported
    return work


def _stuck_reason(node: Node, work: NodeWork, *, now: datetime) -> str:
    if work.running_overdue:
        return f"{work.running_overdue} job(s) running past their deadline"
    if (
        node.jobs_running == 0
        and work.oldest_queued_at is not None
        and work.oldest_queued_at < now - timedelta(seconds=QUEUE_STUCK_AFTER_S)
    ):
        return f"queued work not consumed for over {QUEUE_STUCK_AFTER_S} s"
    return ""


# --- downsampling ----------------------------------------------------------------------------


def samples_downsample(*, now: datetime | None = None) -> dict:
    """Roll 1 s samples older than an hour into 1 min means; drop rollups older than 30 days.

    Only whole minutes before the cut-off are rolled up, and the raw rows are deleted in the
    same transaction, so running it twice (beat and the embedded loop) never double-counts.
    """
    now = now or timezone.now()
    cutoff = (now - timedelta(seconds=RAW_KEEP_S)).replace(second=0, microsecond=0)
    raw = GpuSample.objects.filter(resolution_s=GpuSample.RESOLUTION_RAW, at__lt=cutoff)
    with transaction.atomic():
        buckets = (
            raw.annotate(bucket=TruncMinute("at"))
            .values("node_id", "gpu_index", "bucket")
            .annotate(
                utilization=Avg("utilization"),
                memory_utilization=Avg("memory_utilization"),
                vram_used_mb=Avg("vram_used_mb"),
                vram_total_mb=Max("vram_total_mb"),
                temperature_c=Avg("temperature_c"),
                power_w=Avg("power_w"),
                power_limit_w=Max("power_limit_w"),
                sm_clock_mhz=Avg("sm_clock_mhz"),
                throttle_reasons=Max("throttle_reasons"),
                ecc_errors=Max("ecc_errors"),
                xid_errors=Max("xid_errors"),
                last_xid=Max("last_xid"),
            )
        )
        rollups = [
            GpuSample(
                node_id=b["node_id"],
                gpu_index=b["gpu_index"],
                at=b["bucket"],
                resolution_s=GpuSample.RESOLUTION_MINUTE,
                **{k: b[k] for k in _ROLLUP_FIELDS},
            )
            for b in buckets
        ]
        GpuSample.objects.bulk_create(rollups, batch_size=2000)
        raw_deleted, _ = raw.delete()
        old_deleted, _ = GpuSample.objects.filter(
            resolution_s=GpuSample.RESOLUTION_MINUTE, at__lt=now - timedelta(seconds=ROLLUP_KEEP_S)
        ).delete()
    return {"rolled_up": len(rollups), "raw_deleted": raw_deleted, "pruned": old_deleted}


_ROLLUP_FIELDS = GPU_METRIC_FIELDS


# --- ops actions (drain / resume / restart) ----------------------------------------------------


class AgentGone(Conflict):
    """The node has no connected agent, so nobody can carry out or acknowledge the action."""

    code = "agent_unavailable"


def node_agent_present(*, node: Node, now: datetime | None = None) -> bool:
    now = now or timezone.now()
    fresh = node.last_seen_at is not None and node.last_seen_at >= now - timedelta(
        seconds=settings.NODE_OFFLINE_AFTER_S
    )
    return bool(node.agent_channel) and fresh and node.state != NodeState.OFFLINE


def node_action_request(*, node: Node, action: str, user=None) -> NodeAction:
    """Record an ops action and hand it to the node's agent; the agent's ack completes it.

    Refused (409, written to the audit log as refused) when the agent is gone or another
    action is still pending. Drain and restart take the node out of dispatch at once
    (draining/restarting are never picked), before the agent even acknowledges.
    """
    if action not in NodeActionKind.values:
        raise VoxfleetError(f"Unknown action {action!r}; use drain, resume or restart.", code="invalid_action")
    with transaction.atomic():
        node = Node.objects.select_for_update().get(pk=node.pk)
        refusal = None
        if not node_agent_present(node=node):
            refusal = AgentGone(
                f"Cannot {action} node {node.name}: its agent is not connected "
                f"(state {node.state}, last heartbeat {_ago(node.last_seen_at)}). "
                "Start the agent on the host first; its jobs are requeued automatically when it is offline."
            )
        elif NodeAction.objects.filter(node=node, outcome=NodeActionOutcome.PENDING).exists():
            refusal = Conflict(
                f"Node {node.name} is still carrying out an earlier action; wait for its acknowledgement.",
                code="action_pending",
            )
        elif action == NodeActionKind.RESTART and node.state == NodeState.RESTARTING:
            refusal = Conflict(f"Node {node.name} is already restarting.", code="action_pending")
        record = NodeAction.objects.create(
            node=node,
            action=action,
            requested_by=user if getattr(user, "is_authenticated", False) else None,
            outcome=NodeActionOutcome.REFUSED if refusal else NodeActionOutcome.PENDING,
            message=refusal.message if refusal else "",
        )
        if refusal is None and action == NodeActionKind.DRAIN:
            Node.objects.filter(pk=node.pk).update(
                state=NodeState.DRAINING, state_reason="drained by ops", drained=True
            )
        elif refusal is None and action == NodeActionKind.RESUME:
            Node.objects.filter(pk=node.pk).update(drained=False)
        elif refusal is None and action == NodeActionKind.RESTART:
            Node.objects.filter(pk=node.pk).update(state=NodeState.RESTARTING, state_reason="restart requested")
    if refusal is not None:
        raise refusal
    channel = node.agent_channel
    transaction.on_commit(lambda: _agent_send(channel, record))
    return record


def _ago(when: datetime | None) -> str:
    if when is None:
        return "never"
    return f"{int((timezone.now() - when).total_seconds())} s ago"


def _agent_send(channel: str, record: NodeAction) -> None:
    from asgiref.sync import async_to_sync
    from channels.layers import get_channel_layer

    layer = get_channel_layer()
    async_to_sync(layer.send)(channel, {"type": "agent.command", "command_id": record.pk, "action": record.action})


def node_action_acknowledge(*, node_id: int, command_id: int, ok: bool, detail: dict, error: str = "") -> NodeAction:
    """The agent answered an action: complete the audit entry and move the node's state."""
    with transaction.atomic():
        record = NodeAction.objects.select_for_update().filter(pk=command_id, node_id=node_id).first()
        if record is None:
            raise NotFound(f"No action #{command_id} was sent to this node.", code="unknown_command")
        if record.outcome != NodeActionOutcome.PENDING:
            return record  # a duplicate ack after a reconnect changes nothing
        record.outcome = NodeActionOutcome.SUCCEEDED if ok else NodeActionOutcome.FAILED
        record.acknowledged_at = timezone.now()
        record.detail = detail or {}
        summary = error or _action_summary(record.action, detail or {})
        # The console's own actions (desired state re-sent) keep saying why they were sent.
        record.message = (f"{record.message}; {summary}" if record.message else summary)[:500]
        record.save(update_fields=["outcome", "acknowledged_at", "detail", "message"])
        node = Node.objects.select_for_update().get(pk=node_id)
        if ok and record.action == NodeActionKind.RESTART and node.drained:
            state, reason = NodeState.DRAINING, "drained by ops"  # a restart keeps a drained node drained
        elif ok and record.action in (NodeActionKind.RESUME, NodeActionKind.RESTART):
            state, reason = NodeState.ONLINE, ""
        elif ok:
            state, reason = NodeState.DRAINING, "drained by ops"
        elif record.action == NodeActionKind.RESTART:
            state, reason = NodeState.STUCK, f"restart failed: {error}"[:255]
        else:
            state, reason = node.state, node.state_reason
        Node.objects.filter(pk=node_id).update(state=state, state_reason=reason)
    return record


def _action_summary(action: str, detail: dict) -> str:
    if action != NodeActionKind.RESTART:
        return f"{action} acknowledged"
    before, after = detail.get("vram_before_mb"), detail.get("vram_after_mb")
    vram = f"; VRAM {before} MB -> {after} MB" if before is not None else "; no CUDA device (VRAM not measured)"
    return (
        f"restarted in {detail.get('duration_s', '?')} s; {detail.get('jobs_finished', 0)} in-flight job(s) "
        f"finished, {detail.get('jobs_failed', 0)} failed, {detail.get('jobs_requeued', 0)} requeued{vram}"
    )


def node_actions_expire(*, now: datetime | None = None) -> int:
    """Pending actions the agent never answered (it died mid-action) are closed as timed out."""
    now = now or timezone.now()
    return NodeAction.objects.filter(
        outcome=NodeActionOutcome.PENDING, requested_at__lt=now - timedelta(seconds=ACTION_TIMEOUT_S)
    ).update(outcome=NodeActionOutcome.TIMED_OUT, message="the agent never acknowledged")


def node_frames_refused(*, node_id: int, count: int, message: str) -> None:
    """Add ``count`` refused frames (schema, size, rate) to the node's tally and keep the newest
    reason (for ops): shown on its page and in /metrics."""
    Node.objects.filter(pk=node_id).update(
        frames_refused=F("frames_refused") + count, last_refusal=message[:500], last_refusal_at=timezone.now()
    )


# The console is the source of truth for a node's desired state (drained or not). An agent
# that reconnects (after a network blip, an agent restart or a console restart) says in its
# hello whether it is draining; a restarted agent always says it is not. When that disagrees
# with ``Node.drained`` the console wins: a protocol v2 agent is told in ``welcome`` and
# applies it itself; a v1 agent is sent the drain (or resume) command it missed. Either way
# the audit log says so, with no user (the console did it).

# Protocol versions whose agents apply the desired state sent in welcome.
WELCOME_DESIRED_STATE_FROM = 2


def node_desired_state_reconcile(*, node: Node, agent_draining: bool, protocol_version: int) -> NodeAction | None:
    """Audit (and, for v1 agents, command) a hello that disagrees with the console's desired state."""
    if bool(agent_draining) == node.drained:
        return None
    action = NodeActionKind.DRAIN if node.drained else NodeActionKind.RESUME
    said = "draining" if agent_draining else "not draining"
    wanted = "drained" if node.drained else "taking jobs"
    if protocol_version >= WELCOME_DESIRED_STATE_FROM:
        return NodeAction.objects.create(
            node=node,
            action=action,
            outcome=NodeActionOutcome.SUCCEEDED,
            acknowledged_at=timezone.now(),
            message=f"agent reconnected {said}; the console keeps the node {wanted} (told in welcome)",
        )
    with transaction.atomic():
        if NodeAction.objects.filter(node=node, outcome=NodeActionOutcome.PENDING).exists():
            return None  # an earlier action is still on its way; its ack settles the state
        record = NodeAction.objects.create(
            node=node,
            action=action,
            message=f"agent (protocol v1) reconnected {said}; the console keeps the node {wanted}: {action} re-sent",
        )
        channel = node.agent_channel
        transaction.on_commit(lambda: _agent_send(channel, record) if channel else None)
    return record
