"""Locks by key: holders of one key take turns, other keys go on, and nothing is kept once unused."""
import asyncio

from services.keyed_locks import KeyedLocks


async def hold_while(locks, key, log, name):
    async with locks.hold(key):
        log.append(f"{name} in")
        await asyncio.sleep(0.01)
        log.append(f"{name} out")


async def test_holders_of_one_key_take_turns():
    locks, log = KeyedLocks(), []

    await asyncio.gather(*(hold_while(locks, "repo", log, name) for name in "abc"))

    assert log == ["a in", "a out", "b in", "b out", "c in", "c out"]


async def test_holders_of_other_keys_do_not_wait():
    locks, log = KeyedLocks(), []

    await asyncio.gather(hold_while(locks, "one", log, "a"), hold_while(locks, "two", log, "b"))

    assert log[:2] == ["a in", "b in"]


async def test_a_key_is_forgotten_once_nobody_holds_or_awaits_it():
    locks = KeyedLocks()

    await asyncio.gather(*(hold_while(locks, "repo", [], name) for name in "ab"))

    assert locks.locks == {}


async def test_a_holder_cancelled_while_waiting_leaves_the_lock_usable():
    locks, log = KeyedLocks(), []
    first = asyncio.create_task(hold_while(locks, "repo", log, "a"))
    await asyncio.sleep(0)
    waiting = asyncio.create_task(hold_while(locks, "repo", log, "b"))
    await asyncio.sleep(0)
    waiting.cancel()

    await asyncio.gather(first, waiting, return_exceptions=True)
    await hold_while(locks, "repo", log, "c")

    assert log == ["a in", "a out", "c in", "c out"] and locks.locks == {}
