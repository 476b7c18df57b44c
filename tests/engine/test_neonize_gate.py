"""The FIFO readers/writer gate every call into neonize's Go side goes through."""

from __future__ import annotations

import asyncio

from wagate.engine.neonize.gate import Gate, Hold


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_readers_share_the_gate() -> None:
    gate = Gate()
    holds = [await gate.shared() for _ in range(3)]
    assert gate.readers == 3 and not gate.writer
    for hold in holds:
        hold.release()
    assert gate.readers == 0


async def test_a_writer_waits_for_the_readers_and_then_holds_it_alone() -> None:
    gate = Gate()
    reader = await gate.shared()
    writer = asyncio.ensure_future(gate.exclusive())
    await settle()
    assert not writer.done() and gate.waiting == 1
    reader.release()
    hold = await asyncio.wait_for(writer, 1)
    assert gate.writer and gate.readers == 0
    late_reader = asyncio.ensure_future(gate.shared())
    await settle()
    assert not late_reader.done()
    hold.release()
    (await asyncio.wait_for(late_reader, 1)).release()


async def test_readers_arriving_after_a_waiting_writer_queue_behind_it() -> None:
    gate = Gate()
    order: list[str] = []
    first = await gate.shared()

    async def take(name: str, exclusive: bool) -> None:
        hold = await (gate.exclusive() if exclusive else gate.shared())
        order.append(name)
        await asyncio.sleep(0.01)
        hold.release()

    tasks = [
        asyncio.ensure_future(take("writer", True)),
        asyncio.ensure_future(take("reader-a", False)),
        asyncio.ensure_future(take("reader-b", False)),
    ]
    await settle()
    assert order == [], "nobody passes a waiting writer"
    first.release()
    await asyncio.wait_for(asyncio.gather(*tasks), 2)
    assert order == ["writer", "reader-a", "reader-b"]
    assert gate.stats.max_readers >= 1 and gate.stats.exclusive == 1


async def test_release_is_idempotent_and_may_come_from_a_timer() -> None:
    gate = Gate()
    hold = await gate.exclusive()
    asyncio.get_running_loop().call_later(0.01, hold.release)
    reader = await asyncio.wait_for(gate.shared(), 1)
    hold.release()  # a second release changes nothing
    assert gate.readers == 1 and not gate.writer
    reader.release()


async def test_a_cancelled_waiting_writer_lets_the_readers_behind_it_in() -> None:
    gate = Gate()
    reader = await gate.shared()
    writer = asyncio.ensure_future(gate.exclusive())
    await settle()
    behind = asyncio.ensure_future(gate.shared())
    await settle()
    assert not behind.done()
    writer.cancel()
    hold: Hold = await asyncio.wait_for(behind, 1)
    assert gate.readers == 2
    hold.release()
    reader.release()
    assert gate.readers == 0 and gate.waiting == 0
