"""The SQLite write gate (common/write_gate.py): one writer at a time, first come first served, an urgent writer
ahead of the bulk waiting (behind urgent ones already there), from another thread's loop too; a waiter cancelled
as the gate is handed to it passes it on."""
from __future__ import annotations

import asyncio
import threading

from common.write_gate import WriteGate


async def test_urgent_writers_go_ahead_of_the_bulk_queue_in_their_own_order():
    gate, order = WriteGate(), []

    async def write(name: str, urgent: bool = False) -> None:
        async with gate(urgent=urgent):
            order.append(name)
            await asyncio.sleep(0.01)

    async with gate():  # held: everyone below queues
        tasks = [asyncio.create_task(write(n)) for n in ("bulk1", "bulk2")]
        await asyncio.sleep(0.01)
        tasks += [asyncio.create_task(write("urgent1", urgent=True))]
        await asyncio.sleep(0.01)
        tasks += [asyncio.create_task(write("urgent2", urgent=True)), asyncio.create_task(write("bulk3"))]
        await asyncio.sleep(0.01)
        assert gate.urgent_waiting
    await asyncio.gather(*tasks)
    assert order == ["urgent1", "urgent2", "bulk1", "bulk2", "bulk3"]
    assert not gate.urgent_waiting


async def test_a_writer_on_another_threads_loop_waits_its_turn_and_gets_it():
    gate, inside = WriteGate(), []

    def other_thread() -> None:
        async def go() -> None:
            async with gate(urgent=True):
                inside.append("lane")
        asyncio.run(go())

    async with gate():
        t = threading.Thread(target=other_thread)
        t.start()
        await asyncio.sleep(0.2)
        assert inside == []  # the gate is held here: the other loop waits
        assert gate.urgent_waiting
    await asyncio.to_thread(t.join, 10)
    assert inside == ["lane"]
    async with gate():  # free again
        pass


async def test_a_cancelled_waiter_hands_the_gate_on():
    gate, order = WriteGate(), []

    async def write(name: str) -> None:
        async with gate():
            order.append(name)

    async with gate():
        first = asyncio.create_task(write("cancelled"))
        second = asyncio.create_task(write("next"))
        await asyncio.sleep(0.01)
        first.cancel()
    await asyncio.gather(first, second, return_exceptions=True)
    assert order == ["next"]
    async with gate():
        order.append("free")
    assert order == ["next", "free"]
