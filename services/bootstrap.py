"""The first administrator, created on first start with a one-time password, and the hint that
answers that password once."""
import datetime

from services.errors import Gone
from services.passwords import generate_password, hash_password

BOOTSTRAP_USERNAME = "admin"
HINT_KEY = "default_admin_hint"


async def ensure_bootstrap_admin(collections, configured_password=""):
    """Create the first administrator when there are no users.

    Answers ``{"username", "password"}`` for the node that created it (password None when it was
    configured, so the operator already knows it), or None when users already existed. A generated
    password must be changed: the user is created with ``must_change_password``.
    """
    if await collections.users.count() > 0:
        return None
    password = configured_password or generate_password()
    user = await collections.users.create(BOOTSTRAP_USERNAME, await hash_password(password), is_admin=True,
                                          must_change_password=not configured_password)
    if user is None:
        return None
    await collections.meta.get_or_create(HINT_KEY, {"username": BOOTSTRAP_USERNAME,
                                                     "created_at": datetime.datetime.now(datetime.timezone.utc)})
    return {"username": BOOTSTRAP_USERNAME, "password": None if configured_password else password}


class BootstrapHint:
    """The one-time answer of ``default-admin-once``.

    Only the node that created the administrator knows the password; the flag in MongoDB makes the
    answer a one-time one across restarts and nodes.
    """

    def __init__(self, collections, hint):
        self.collections = collections
        self.hint = hint

    async def take(self):
        hint = self.hint
        if not hint or not await self.collections.meta.take_once(HINT_KEY):
            raise Gone("the default administrator hint has already been shown or is not available")
        self.hint = None
        return {
            "username": hint["username"],
            "password": hint["password"],
            "must_change_password": hint["password"] is not None,
            "message": "password set by configuration" if hint["password"] is None else "shown once; change it now",
        }
