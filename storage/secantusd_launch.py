"""Runs SecantusDB (the embedded MongoDB-protocol server) with its record of retryable writes pruned in
constant time per write.

SecantusDB 0.7.0b3 keeps the reply of each retryable write for 30 minutes, at most 10 000 of them, and on
every retryable write scans the whole record for expired ones and, once it holds 10 000, sorts all of them
to drop the oldest. Measured on this project's machine: 0.5 ms per single-document update for the first
thousands of writes, 1.3 ms at 10 000, then 10 ms each, for as long as the server runs. Every write the
registry makes outside a transaction is retryable, so an embedded database got twenty times slower after
its first 10 000 writes. The record keeps the same rules here (the same lifetime, the same bound, the
oldest dropped first), read from the front of the dict, where the oldest are: a write costs what dropping
the expired ones costs. The change applies only to the version it was written for; another runs as it is.

Run as ``python secantusd_launch.py ARGS``: the arguments of ``secantusd-py``.
"""
import sys

PATCHED_VERSION = "0.7.0b3"


def prune_oldest_first(registry):
    """``TransactionRegistry._prune_retryable_locked`` with the same rules: records are added in time order,
    so the expired ones and those over the bound are at the front."""
    from secantus import transactions

    records = registry._retryable
    cutoff = registry._time() - transactions._RETRYABLE_RECORD_LIFETIME_SECONDS
    while records:
        key, (_reply, at, _identity) = next(iter(records.items()))
        if at >= cutoff and len(records) <= transactions._RETRYABLE_RECORD_MAX:
            return
        del records[key]


def patch():
    """Apply ``prune_oldest_first`` when SecantusDB is the version it was written for; whether it was."""
    import secantus
    from secantus import transactions

    registry = getattr(transactions, "TransactionRegistry", None)
    if secantus.__version__ != PATCHED_VERSION or not hasattr(registry, "_prune_retryable_locked"):
        return False
    registry._prune_retryable_locked = prune_oldest_first
    return True


def main():
    from secantus.cli import main as secantusd_main

    patch()
    sys.argv[0] = "secantusd-py"
    return secantusd_main()


if __name__ == "__main__":
    sys.exit(main())
