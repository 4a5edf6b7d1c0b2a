"""Times as every answer shows them: RFC 3339 in UTC with a ``Z``."""
import datetime


def iso_z(value):
    """A datetime as ``2026-02-01T00:00:00.123Z`` (milliseconds, MongoDB's precision); None stays None."""
    if value is None:
        return None
    return value.astimezone(datetime.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def epoch_iso_z(seconds):
    return iso_z(datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc))
