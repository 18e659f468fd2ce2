"""A promote or abort acknowledged by the API is acted on within a second, on the real clock.

The engine must not sit out the rest of a bake interval, nor wait for a slow metrics
provider, before it obeys a person: commands wake the rollout's task, and a gate evaluation
in flight is abandoned (it only reads). Each test measures, with the wall clock, the time
from sending the command to the traffic change seen on the (in-memory) target.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import ClassVar

from api_rig import ApiRig, auth, spec_data

from analysis.base import Measurement, MetricQuery, ProviderError, Window
from canary.model import Phase
from strategies.memory import MemoryBackend

API = "/api/v1"
LIMIT = 1.0  # seconds


async def until(condition: Callable[[], bool], within: float = 5.0) -> None:
    """Return once ``condition()`` holds, polled every millisecond."""
    async with asyncio.timeout(within):
        while True:
            if condition():
                return
            await asyncio.sleep(0.001)


def backend(rig: ApiRig, function: str = "checkout") -> MemoryBackend:
    return rig.fleet.backend(f"lambda-alias/default-region/{function}/live")


async def test_promote_during_a_long_bake_moves_traffic_within_a_second() -> None:
    steps = [{"weight": 10, "bake": "1h"}, {"weight": 50, "bake": "1h"}, {"weight": 100}]
    async with ApiRig() as rig:
        r = await rig.submit(spec_data(steps=steps))
        await rig.wait_phase(r.id, Phase.BAKING)  # next evaluation is 30 s away
        sent = time.monotonic()
        response = await rig.client.post(f"{API}/rollouts/{r.id}/promote", headers=auth("ana"))
        assert response.status == 200
        await until(lambda: backend(rig).extra_weight == 50)
        assert time.monotonic() - sent < LIMIT


async def test_promote_full_while_awaiting_approval_finishes_within_a_second() -> None:
    steps = [{"weight": 25, "approval": True}, {"weight": 50, "bake": "1h"}, {"weight": 100}]
    async with ApiRig() as rig:
        r = await rig.submit(spec_data(steps=steps))
        await rig.wait_phase(r.id, Phase.AWAITING_APPROVAL)
        sent = time.monotonic()
        response = await rig.client.post(
            f"{API}/rollouts/{r.id}/promote", json={"full": True}, headers=auth("ana")
        )
        assert response.status == 200
        await until(lambda: backend(rig).primary == "2" and backend(rig).extra is None)
        assert time.monotonic() - sent < LIMIT
        assert (await rig.wait_phase(r.id, Phase.SUCCEEDED)).weight == 100


class StuckProvider:
    """A provider that takes a minute to answer: an evaluation is in flight for that long."""

    kind: ClassVar[str] = "stuck"

    def __init__(self) -> None:
        self.asked = asyncio.Event()

    async def query(
        self, queries: Sequence[MetricQuery], window: Window
    ) -> Sequence[Measurement | ProviderError]:
        self.asked.set()
        await asyncio.sleep(60)
        return [Measurement(0.0, 1000) for _ in queries]


async def test_abort_during_a_slow_gate_evaluation_rolls_back_within_a_second() -> None:
    analysis = {
        "interval": "1s",
        "gates": [{"name": "error-rate", "provider": "cloudwatch", "query": "q", "max": 0.01}],
    }
    steps = [{"weight": 20, "bake": "1h"}, {"weight": 100}]
    async with ApiRig() as rig:
        stuck = StuckProvider()
        rig.engine.providers = {"cloudwatch": stuck}
        r = await rig.submit(spec_data(steps=steps, analysis=analysis))
        await asyncio.wait_for(stuck.asked.wait(), 5)  # an evaluation is now in flight
        assert backend(rig).extra_weight == 20
        sent = time.monotonic()
        response = await rig.client.post(
            f"{API}/rollouts/{r.id}/abort", json={"reason": "bad build"}, headers=auth("ana")
        )
        assert response.status == 200
        await until(lambda: backend(rig).extra is None and backend(rig).extra_weight == 0)
        assert time.monotonic() - sent < LIMIT
        done = await rig.wait_phase(r.id, Phase.ROLLED_BACK)
        assert done.reason == "aborted by ana: bad build"
