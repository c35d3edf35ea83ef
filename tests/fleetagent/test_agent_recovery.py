"""The agent's reconnect backoff is capped at a few seconds with jitter; it takes the console's desired state."""

from __future__ import annotations

import random

import pytest

from fleetagent.agent import client
from fleetagent.agent.client import BACKOFF_MAX_S, AgentClient, backoff_delay
from fleetagent.agent.collect import CpuCollector
from fleetagent.agent.runtime import NodeRuntime
from fleetagent.agent.stats import JobStats


def test_backoff_is_capped_and_jittered():
    random.seed(7)
    backoff, delays = client.BACKOFF_INITIAL_S, []
    for _ in range(20):  # the console away for a long while
        delays.append(backoff_delay(backoff))
        backoff = min(backoff * 2, BACKOFF_MAX_S)
    assert max(delays) <= BACKOFF_MAX_S <= 3.0
    assert len({round(d, 3) for d in delays[-10:]}) > 5  # 625 hosts do not reconnect in step
    assert min(delays[-10:]) >= BACKOFF_MAX_S / 2


def _agent() -> AgentClient:
    stats = JobStats()
    return AgentClient(
        console_url="http://console.invalid",
        token="",
        collector=CpuCollector(reason="test"),
        runtime=NodeRuntime(node_name="n", stats=stats),
        stats=stats,
    )


@pytest.mark.django_db(transaction=True, serialized_rollback=True)  # drain() reads job counts
@pytest.mark.parametrize("want", [True, False])
async def test_the_agent_takes_the_desired_state_from_welcome(want):
    agent = _agent()
    agent.runtime.draining = not want
    await agent._desired_state_apply({"type": "welcome", "v": 2, "draining": want})
    assert agent.runtime.draining is want


async def test_a_v1_welcome_without_desired_state_changes_nothing():
    agent = _agent()
    agent.runtime.draining = True
    await agent._desired_state_apply({"type": "welcome", "v": 1})
    assert agent.runtime.draining is True
