"""How a process records its metrics: database command timings and actor mailbox samples."""
import asyncio
import logging
from types import SimpleNamespace

import pytest

from services import metrics
from services.metrics import ACTOR_MAILBOX, DATABASE_COMMAND_DURATION, CommandTimer, sample_mailboxes_forever


def command(name, micros):
    return SimpleNamespace(command_name=name, duration_micros=micros)


def test_a_command_timer_looks_each_commands_series_up_once(monkeypatch):
    looked_up = []
    labels = DATABASE_COMMAND_DURATION.labels
    monkeypatch.setattr(DATABASE_COMMAND_DURATION, "labels", lambda name: looked_up.append(name) or labels(name))
    timer = CommandTimer()
    series = labels("unitTestCommand")
    sum_before = series._sum.get()

    for _ in range(3):
        timer.succeeded(command("unitTestCommand", 2000))
    timer.failed(command("unitTestCommand", 1000))

    assert looked_up == ["unitTestCommand"]
    assert series._sum.get() - sum_before == pytest.approx(0.007)


class Flaky:
    """An actor group whose first reading fails."""

    def __init__(self):
        self.readings = 0

    def mailbox_depth(self):
        self.readings += 1
        if self.readings == 1:
            raise RuntimeError("actor registry changed during iteration")
        return 7


async def test_a_failed_mailbox_reading_is_logged_and_sampling_goes_on(monkeypatch, caplog):
    monkeypatch.setattr(metrics, "MAILBOX_SAMPLE_SECONDS", 0.01)
    group = Flaky()

    with caplog.at_level(logging.ERROR, logger="cyp.metrics"):
        sampling = asyncio.create_task(sample_mailboxes_forever({"unit-test-kind": group}))
        for _ in range(500):  # 5 s at most
            if group.readings >= 3 or sampling.done():
                break
            await asyncio.sleep(0.01)
        sampling.cancel()

    assert group.readings >= 3
    assert ACTOR_MAILBOX.labels("unit-test-kind")._value.get() == 7
    assert [record.exc_info[0] for record in caplog.records] == [RuntimeError]
