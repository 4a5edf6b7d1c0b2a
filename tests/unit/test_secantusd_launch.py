"""The embedded SecantusDB's record of retryable writes, pruned oldest first (storage/secantusd_launch.py):
the same rules as SecantusDB's own pruning (records live 30 minutes, at most 10 000), on its real
TransactionRegistry with a clock the test moves."""
import pytest
from secantus import transactions

from storage import secantusd_launch
from storage.embedded_mongo import secantusd_command

LIFETIME = transactions._RETRYABLE_RECORD_LIFETIME_SECONDS
BOUND = transactions._RETRYABLE_RECORD_MAX
REPLY = {"ok": 1, "n": 1}


@pytest.fixture
def registry(monkeypatch):
    monkeypatch.setattr(transactions.TransactionRegistry, "_prune_retryable_locked",
                        transactions.TransactionRegistry._prune_retryable_locked)
    assert secantusd_launch.patch()
    clock = [1000.0]
    registry = transactions.TransactionRegistry(time_func=lambda: clock[0])
    registry.clock = clock
    return registry


def record(registry, number):
    registry.record_retryable(b"session", number, b"identity", REPLY)


def test_the_installed_secantusdb_is_the_version_the_pruning_was_written_for():
    import secantus

    assert secantus.__version__ == secantusd_launch.PATCHED_VERSION


def test_a_recorded_write_is_replayed_while_it_lives(registry):
    record(registry, 1)
    registry.clock[0] += LIFETIME - 1

    assert registry.retryable_reply(b"session", 1, b"identity") == REPLY


def test_a_record_older_than_its_lifetime_is_dropped(registry):
    record(registry, 1)
    registry.clock[0] += 60
    record(registry, 2)
    registry.clock[0] += LIFETIME - 30

    assert registry.retryable_reply(b"session", 1, b"identity") is None
    assert registry.retryable_reply(b"session", 2, b"identity") == REPLY


def test_past_the_bound_the_oldest_records_go_first(registry):
    for number in range(BOUND + 5):
        record(registry, number)
        registry.clock[0] += 0.001

    assert len(registry._retryable) == BOUND
    assert registry.retryable_reply(b"session", 4, b"identity") is None
    assert registry.retryable_reply(b"session", 5, b"identity") == REPLY
    assert registry.retryable_reply(b"session", BOUND + 4, b"identity") == REPLY


def test_the_embedded_database_is_started_through_the_launcher():
    assert secantusd_command()[-1].endswith("storage/secantusd_launch.py")
