"""PostgreSQL hot path for reserve and settle: one statement (one round trip, one commit) each.

The common case - the open allowance window covers the job - needs no top-up or window
logic, so it is a single data-modifying CTE: a conditional UPDATE of the account row (which
takes the same row lock the general path takes, and refuses to go below zero) feeding the
reservation and ledger INSERTs. Settling is the healthchecks-style claim: a conditional
``UPDATE ... WHERE status = 'open'`` accepted only if exactly one row changed, feeding the
ledger INSERT. Either statement commits or fails as a whole. When the fast path does not
apply (window lapsed, allowance short, SQLite), callers fall back to the general ORM path,
which writes exactly the same rows.
"""

from __future__ import annotations

import json
import time

import psycopg
from django.conf import settings
from django.db import connection, transaction

from billing.models import AlertPolicy, LedgerEntry, ReservationStatus, TokenReservation

_RES = TokenReservation._meta.db_table
_LEDGER = LedgerEntry._meta.db_table
_ACCOUNT = "billing_billingaccount"
_POLICY = AlertPolicy._meta.db_table
_RES_FIELDS = [f for f in TokenReservation._meta.concrete_fields]
_RES_COLUMNS = ", ".join(f'"{f.column}"' for f in _RES_FIELDS)

_RESERVE_SQL = f"""
WITH acc AS (
    UPDATE {_ACCOUNT} SET allowance_remaining = allowance_remaining - %(tokens)s
    WHERE tenant_id = %(tenant)s AND allowance_remaining >= %(tokens)s AND window_end > %(now)s
    RETURNING tenant_id, window_start, allowance_remaining, allowance_tokens
), res AS (
    INSERT INTO {_RES} (tenant_id, tokens, status, idempotency_key, reference, window_start, from_allowance,
                        from_topups, from_overage, created_at, settled_at, released_at, release_reason,
                        gpu_seconds, node_name, gpu_model, api_key_id)
    SELECT tenant_id, %(tokens)s, 'open', %(key)s, %(reference)s, window_start, %(tokens)s,
           '[]'::jsonb, 0, %(now)s, NULL, NULL, '', 0, '', '', %(api_key)s
    FROM acc
    RETURNING id, window_start
), led AS (
    INSERT INTO {_LEDGER} (tenant_id, kind, bucket, available_delta, held_delta, window_start, topup_id,
                           reservation_id, idempotency_key, note, created_by_id, created_at)
    SELECT %(tenant)s, 'reserve', 'allowance', -%(tokens)s, %(tokens)s, window_start, NULL, id, NULL, '', NULL, %(now)s
    FROM res
)
-- The account's balance after this reservation and the tenant's alert thresholds ride along,
-- so deciding whether a usage alert fired costs no extra round trip.
SELECT res.id, res.window_start, acc.allowance_remaining, acc.allowance_tokens, pol.allowance_percents
FROM res CROSS JOIN acc LEFT JOIN {_POLICY} pol ON pol.tenant_id = acc.tenant_id
"""

_SETTLE_SQL = f"""
WITH r AS (
    UPDATE {_RES} SET status = 'settled', settled_at = %(now)s, gpu_seconds = %(gpu_seconds)s,
                      node_name = %(node_name)s, gpu_model = %(gpu_model)s
    WHERE id = %(id)s AND status = 'open'
    RETURNING {_RES_COLUMNS}
), led AS (
    INSERT INTO {_LEDGER} (tenant_id, kind, bucket, available_delta, held_delta, window_start, topup_id,
                           reservation_id, idempotency_key, note, created_by_id, created_at)
    SELECT tenant_id, 'settle', 'held', 0, -tokens, NULL, NULL, id, 'settle:' || id, '', NULL, %(now)s
    FROM r
)
SELECT {_RES_COLUMNS} FROM r
"""


def available() -> bool:
    return connection.vendor == "postgresql"


def _run(sql: str, params: dict):
    # A server-side-bound, prepared statement on Django's own connection (so it joins the
    # caller's transaction): PostgreSQL parses and plans the CTE once per connection instead
    # of once per call, which is most of its CPU cost. Errors come back as Django's.
    connection.ensure_connection()
    start = time.monotonic()
    try:
        with connection.wrap_database_errors, psycopg.Cursor(connection.connection) as cursor:
            # Behind a transaction-pooling PgBouncer set BILLING_FASTPATH_PREPARE=0 (console/settings.py).
            cursor.execute(sql, params, prepare=settings.BILLING_FASTPATH_PREPARE)
            return cursor.fetchone()
    finally:
        if connection.queries_logged:  # keep DEBUG's query log and CaptureQueriesContext truthful
            connection.queries_log.append({"sql": sql, "time": f"{time.monotonic() - start:.3f}"})


def _execute(sql: str, params: dict):
    # In autocommit mode the statement is its own transaction; inside a caller's transaction a
    # savepoint keeps a unique-key violation from poisoning it.
    if connection.in_atomic_block:
        with transaction.atomic():
            return _run(sql, params)
    return _run(sql, params)


def reserve_from_allowance(
    *, tenant_id: int, tokens: int, key, reference: str, now, api_key_id: int | None = None
) -> tuple[TokenReservation, int, int, list | None] | None:
    """(reservation, allowance left after it, the window's allowance, the tenant's alert
    percents or None for the defaults) if the open window's allowance covered it; None means
    take the general path."""
    row = _execute(
        _RESERVE_SQL,
        {"tenant": tenant_id, "tokens": tokens, "key": key, "reference": reference, "now": now, "api_key": api_key_id},
    )
    if row is None:
        return None
    percents = row[4]
    if isinstance(percents, str):
        percents = json.loads(percents)
    reservation = TokenReservation(
        id=row[0],
        tenant_id=tenant_id,
        tokens=tokens,
        status=ReservationStatus.OPEN,
        idempotency_key=key,
        reference=reference,
        window_start=row[1],
        from_allowance=tokens,
        from_topups=[],
        from_overage=0,
        created_at=now,
        api_key_id=api_key_id,
    )
    reservation._state.adding = False
    reservation._state.db = connection.alias
    return reservation, int(row[2]), int(row[3]), percents


def settle(*, reservation_id: int, gpu_seconds: float, node_name: str, gpu_model: str, now) -> TokenReservation | None:
    """The settled reservation, or None when no open reservation had that id (nothing written)."""
    row = _execute(
        _SETTLE_SQL,
        {"id": reservation_id, "gpu_seconds": gpu_seconds, "node_name": node_name, "gpu_model": gpu_model, "now": now},
    )
    if row is None:
        return None
    values = [
        json.loads(v) if f.name == "from_topups" and isinstance(v, str) else v
        for f, v in zip(_RES_FIELDS, row, strict=True)
    ]
    return TokenReservation.from_db(connection.alias, [f.attname for f in _RES_FIELDS], values)
