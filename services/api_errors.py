"""The /api/v1 error table: envelope codes by range (1xxxx parameters, 2xxxx resources, 3xxxx auth, 5xxxx server)."""

API_ERRORS = {
    10001: (400, "invalid parameter"),
    10002: (400, "malformed JSON body"),
    10003: (413, "request body too large"),
    20001: (404, "resource not found"),
    20002: (409, "conflict with the current state (already exists, still in use)"),
    20003: (410, "resource is gone"),
    20004: (405, "method not allowed"),
    30001: (401, "authentication required"),
    30002: (401, "invalid or expired token"),
    30003: (403, "permission denied"),
    30004: (429, "too many attempts; try again later"),
    50001: (500, "internal server error"),
    50003: (503, "service unavailable"),
}
SUCCESS = 20000


class ApiError(Exception):
    """An /api/v1 error answered in the envelope."""

    def __init__(self, code, message=None):
        status, default_message = API_ERRORS[code]
        super().__init__(message or default_message)
        self.code = code
        self.status = status
        self.message = message or default_message
