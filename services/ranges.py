"""Byte ranges of the blob API: ``Range`` on reads (RFC 9110) and ``Content-Range`` on upload chunks.

Numbers are bounded before they are converted, so a header of thousands of digits is refused as
malformed instead of tripping Python's integer-parsing limit.
"""
import re

from services.errors import ContentRangeInvalid, RangeNotSatisfiable

# 19 digits hold any 63-bit offset; nothing larger is a real position in a blob.
_NUMBER = r"(\d{1,19})"
_RANGE_RE = re.compile(r"^bytes=(\d{0,19})-(\d{0,19})$")
_CONTENT_RANGE_RE = re.compile(rf"^(?:bytes[ =])?{_NUMBER}-{_NUMBER}(?:/\d{{1,19}}|/\*)?$")


def parse_range(header, size):
    """``(start, length)`` for a single byte range; None without one or when it is malformed (RFC 9110
    says to ignore those); RangeNotSatisfiable when it cannot be satisfied."""
    match = _RANGE_RE.match((header or "").strip())
    if not match or match.groups() == ("", ""):
        return None
    first, last = match.groups()
    if first == "":
        length = min(int(last), size)
        if length == 0:
            raise RangeNotSatisfiable(header, size)
        return size - length, length
    start = int(first)
    if last and int(last) < start:
        return None
    if start >= size:
        raise RangeNotSatisfiable(header, size)
    end = min(int(last), size - 1) if last else size - 1
    return start, end - start + 1


def parse_content_range(header, content_length):
    """The start offset an upload chunk's ``Content-Range`` claims (None without one), checked against
    its ``Content-Length``."""
    if not header:
        return None
    match = _CONTENT_RANGE_RE.match(header.strip())
    if not match:
        raise ContentRangeInvalid("Content-Range must be <start>-<end>", range=header)
    start, end = int(match.group(1)), int(match.group(2))
    if end < start or (content_length is not None and content_length != end - start + 1):
        raise ContentRangeInvalid("Content-Range does not match Content-Length", range=header, length=content_length)
    return start

