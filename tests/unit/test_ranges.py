"""Byte ranges of blob reads and upload chunks, in-process."""
import pytest

from services.errors import ContentRangeInvalid, RangeNotSatisfiable
from services.ranges import parse_content_range, parse_range


@pytest.mark.parametrize("header, expected", [
    ("bytes=0-9", (0, 10)),
    ("bytes=90-", (90, 10)),
    ("bytes=-7", (93, 7)),
    ("bytes=95-500", (95, 5)),
    ("bytes=-500", (0, 100)),
    (" bytes=1-1 ", (1, 1)),
])
def test_a_satisfiable_range_gives_start_and_length(header, expected):
    assert parse_range(header, 100) == expected


@pytest.mark.parametrize("header", [None, "", "bytes=-", "bytes=50-10", "items=0-1", "bytes=0-1,5-6",
                                    "bytes=" + "9" * 5000 + "-"])
def test_missing_or_malformed_ranges_are_ignored(header):
    assert parse_range(header, 100) is None


@pytest.mark.parametrize("header", ["bytes=100-", "bytes=200-300", "bytes=-0"])
def test_an_unsatisfiable_range_names_the_size(header):
    with pytest.raises(RangeNotSatisfiable) as refused:
        parse_range(header, 100)

    assert refused.value.size == 100


@pytest.mark.parametrize("header, length, start", [
    (None, 10, None),
    ("0-9", 10, 0),
    ("bytes 10-19", 10, 10),
    ("bytes=10-19/100", 10, 10),
    ("10-19/*", None, 10),
])
def test_a_content_range_gives_the_chunk_start(header, length, start):
    assert parse_content_range(header, length) == start


@pytest.mark.parametrize("header, length", [
    ("zero-two", 3), ("5-4", 0), ("0-9", 11), ("1" * 5000 + "-" + "1" * 5000, 1),
])
def test_a_malformed_or_inconsistent_content_range_is_refused(header, length):
    with pytest.raises(ContentRangeInvalid):
        parse_content_range(header, length)
