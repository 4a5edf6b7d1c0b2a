"""Every password and token the test clients send, so the suite can check that no server log holds one."""
SENT = set()
# Shorter values (test fixtures' "x", wrong guesses like "nope") would match log text by chance.
MIN_LENGTH = 12
PASSWORD_FIELDS = ("password", "old_password", "new_password", "current_password")


def remember(*values):
    SENT.update(value for value in values if isinstance(value, str) and len(value) >= MIN_LENGTH)


def remember_body(body):
    """The passwords of a JSON request body."""
    if isinstance(body, dict):
        remember(*(body.get(field) for field in PASSWORD_FIELDS))


def found_in(text):
    return sorted(secret for secret in SENT if secret in text)
