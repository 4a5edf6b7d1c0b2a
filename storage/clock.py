"""The storage layer's clock: UTC, at MongoDB's millisecond precision, so a time answered at
creation is exactly the one read back later."""
import datetime


def utcnow():
    now = datetime.datetime.now(datetime.timezone.utc)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)
