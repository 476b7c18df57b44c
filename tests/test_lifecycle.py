"""Services stop in one order; periodic jobs run on the clock; a process stops in reverse."""

from __future__ import annotations

import asyncio
import os
import signal
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import Any

import pytest

from wagate.clock import ManualClock
from wagate.lifecycle import Periodic, Service, run_services
from wagate.testing import eventually


class _Recorded(Service):
    def __init__(self, log: list[str], *, hang: bool = False) -> None:
        super().__init__("recorded", stop_timeout_s=0.05)
        self.log = log
        self.hang = hang
        self.worker: asyncio.Task[Any] | None = None

    async def open(self) -> None:
        self.log.append("open")
        self.worker = self.tasks.spawn(asyncio.Event().wait(), "forever")

    async def stop_intake(self) -> None:
        self.log.append("stop_intake")

    async def drain(self) -> None:
        self.log.append("drain")
        if self.hang:
            await asyncio.Event().wait()

    async def close(self) -> None:
        assert self.worker is not None and self.worker.done(), "tasks end before close"
        self.log.append("close")


async def test_a_service_stops_in_order_and_cancels_what_outlives_the_drain() -> None:
    log: list[str] = []
    async with _Recorded(log, hang=True) as service:
        assert log == ["open"] and service.worker is not None and not service.worker.done()
    assert log == ["open", "stop_intake", "drain", "close"]
    assert service.worker.cancelled()


async def test_a_service_that_fails_to_open_releases_what_it_took() -> None:
    log: list[str] = []

    class Broken(_Recorded):
        async def open(self) -> None:
            await super().open()
            raise RuntimeError("no database")

    with pytest.raises(RuntimeError):
        async with Broken(log):
            pass
    assert log == ["open", "stop_intake", "drain", "close"]


async def test_a_periodic_job_runs_every_interval_on_the_clock() -> None:
    clock, runs = ManualClock(), []

    async def job() -> None:
        runs.append(clock.monotonic())
        if len(runs) == 2:
            raise ValueError("one bad run")

    async with Periodic("job", job, 10.0, clock) as periodic:
        await clock.wait_for_sleepers(1)
        await clock.advance(9.9)
        assert runs == []  # nothing before the first interval
        for n in range(1, 4):
            await clock.advance(0.1 if n == 1 else 10.0)
            await eventually(lambda n=n: len(runs) == n)  # type: ignore[misc]
            await clock.wait_for_sleepers(1)
    assert runs == [10.0, 20.0, 30.0]  # the failing second run did not stop the third
    assert periodic.runs == 3


async def test_a_periodic_job_in_flight_finishes_before_the_stop_returns() -> None:
    clock, started, done = ManualClock(), asyncio.Event(), []
    release = asyncio.Event()

    async def job() -> None:
        started.set()
        await release.wait()
        done.append(True)

    periodic = Periodic("job", job, 1.0, clock, at_start=True)
    await periodic.__aenter__()
    await asyncio.wait_for(started.wait(), 5)
    stopping = asyncio.create_task(periodic.__aexit__(None, None, None))
    await asyncio.sleep(0)
    assert not stopping.done()
    release.set()
    await asyncio.wait_for(stopping, 5)
    assert done == [True]


class _Step(AbstractAsyncContextManager[Any]):
    def __init__(self, name: str, log: list[str]) -> None:
        self.name, self.log = name, log

    async def __aenter__(self) -> _Step:
        self.log.append(f"enter {self.name}")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.log.append(f"leave {self.name}")


async def test_services_leave_in_the_reverse_order_when_the_main_task_ends() -> None:
    log: list[str] = []

    async def main() -> None:
        log.append("main")

    steps = [_Step(n, log) for n in ("db", "worker", "http")]
    await run_services(steps, until=main(), handle_signals=False)
    assert log == [
        "enter db",
        "enter worker",
        "enter http",
        "main",
        "leave http",
        "leave worker",
        "leave db",
    ]


async def test_sigterm_stops_the_process_in_order() -> None:
    log: list[str] = []
    running = asyncio.create_task(run_services([_Step("db", log), _Step("worker", log)]))
    await eventually(lambda: log == ["enter db", "enter worker"])
    os.kill(os.getpid(), signal.SIGTERM)
    await asyncio.wait_for(running, 5)
    assert log[2:] == ["leave worker", "leave db"]
