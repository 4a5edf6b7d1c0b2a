"""Shared fresh reads: callers that ask while a read of their key is under way share the next one."""
import asyncio

import pytest
from pymongo.errors import NetworkTimeout

from storage.shared_reads import SharedReads


class Source:
    """A key's value that writers change; each read answers the value and which read it was, after a delay."""

    def __init__(self, delay=0.01):
        self.value = 0
        self.reads_sent = 0
        self.delay = delay

    async def read(self):
        self.reads_sent += 1
        seen, number = self.value, self.reads_sent
        await asyncio.sleep(self.delay)
        return {"value": seen, "read": number}


def test_a_read_asked_while_none_is_under_way_is_sent_at_once():
    async def scenario():
        source = Source()
        answer = await SharedReads().read("tag", source.read)
        return answer, source.reads_sent

    assert asyncio.run(scenario()) == ({"value": 0, "read": 1}, 1)


def test_reads_asked_while_one_is_under_way_share_the_next_read():
    async def scenario():
        source, reads = Source(), SharedReads()
        first = asyncio.ensure_future(reads.read("tag", source.read))
        await asyncio.sleep(0)  # the first read is under way
        rest = await asyncio.gather(*(reads.read("tag", source.read) for _ in range(9)))
        return await first, rest, source.reads_sent

    first, rest, sent = asyncio.run(scenario())
    assert first["read"] == 1
    assert {answer["read"] for answer in rest} == {2}
    assert sent == 2


def test_every_caller_sees_the_writes_made_before_it_asked():
    async def scenario():
        source, reads, checks = Source(), SharedReads(), []

        async def reader(written):
            answer = await reads.read("tag", source.read)
            checks.append(answer["value"] >= written)

        tasks = []
        for written in range(1, 30):
            source.value = written  # acknowledged before the next reader asks
            tasks.append(asyncio.ensure_future(reader(written)))
            await asyncio.sleep(0.003)
        await asyncio.gather(*tasks)
        return checks, source.reads_sent

    checks, sent = asyncio.run(scenario())
    assert all(checks)
    assert sent < 29  # shared: fewer reads than readers


def test_keys_are_read_apart():
    async def scenario():
        sources = {"a": Source(), "b": Source()}
        sources["b"].value = 7
        reads = SharedReads()
        answers = await asyncio.gather(reads.read("a", sources["a"].read), reads.read("b", sources["b"].read))
        return [answer["value"] for answer in answers], reads.keys

    assert asyncio.run(scenario()) == ([0, 7], {})


def test_a_failed_read_fails_its_callers_and_the_next_is_sent_afresh():
    async def scenario():
        reads, calls = SharedReads(), []

        async def failing_once():
            calls.append(len(calls))
            await asyncio.sleep(0.01)
            if len(calls) == 1:
                raise ConnectionError("database gone")
            return "answer"

        first = asyncio.ensure_future(reads.read("tag", failing_once))
        await asyncio.sleep(0)
        second = asyncio.ensure_future(reads.read("tag", failing_once))
        with pytest.raises(ConnectionError):
            await first
        return await second, len(calls), reads.keys

    assert asyncio.run(scenario()) == ("answer", 2, {})


def test_a_read_that_cannot_start_fails_its_callers_and_leaves_the_key_free():
    async def scenario():
        reads = SharedReads()

        def broken():
            raise ValueError("no query")

        with pytest.raises(ValueError):
            await reads.read("tag", broken)
        return reads.keys

    assert asyncio.run(scenario()) == {}


def test_a_read_that_takes_too_long_fails_as_a_timeout_and_the_next_is_sent_afresh():
    async def scenario():
        reads, calls = SharedReads(read_seconds=0.05), []

        async def stalled_once():
            calls.append(len(calls))
            await asyncio.sleep(5 if len(calls) == 1 else 0)
            return "answer"

        with pytest.raises(NetworkTimeout):
            await reads.read("tag", stalled_once)
        return await reads.read("tag", stalled_once), len(calls)

    assert asyncio.run(scenario()) == ("answer", 2)


def test_a_cancelled_caller_leaves_the_read_to_the_others():
    async def scenario():
        source, reads = Source(), SharedReads()
        first = asyncio.ensure_future(reads.read("tag", source.read))
        await asyncio.sleep(0)
        waiting = [asyncio.ensure_future(reads.read("tag", source.read)) for _ in range(2)]
        await asyncio.sleep(0)
        waiting[0].cancel()
        answer = await waiting[1]
        await first
        return answer, waiting[0].cancelled(), reads.keys

    answer, cancelled, keys = asyncio.run(scenario())
    assert answer["read"] == 2
    assert cancelled
    assert keys == {}
