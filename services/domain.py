"""Refusals of domain operations, independent of which API answers them."""

NOT_FOUND = "not_found"
INVALID = "invalid"
CONFLICT = "conflict"
FORBIDDEN = "forbidden"
TOO_LARGE = "too_large"


class DomainError(Exception):
    """``kind`` is one of NOT_FOUND, INVALID, CONFLICT, FORBIDDEN, TOO_LARGE; the message is safe to show."""

    def __init__(self, kind, message):
        super().__init__(message)
        self.kind = kind
