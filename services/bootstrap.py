"""The first administrator, created on first start with a one-time password."""
import datetime

from services.passwords import generate_password, hash_password

BOOTSTRAP_USERNAME = "admin"
HINT_KEY = "default_admin_hint"


async def ensure_bootstrap_admin(collections, configured_password=""):
    """Create the first administrator when there are no users.

    Answers ``{"username", "password"}`` for the node that created it (password None when it was
    configured, so the operator already knows it), or None when users already existed.
    """
    if await collections.users.count() > 0:
        return None
    password = configured_password or generate_password()
    user = await collections.users.create(BOOTSTRAP_USERNAME, await hash_password(password), is_admin=True)
    if user is None:
        return None
    await collections.meta.get_or_create(HINT_KEY, {"username": BOOTSTRAP_USERNAME,
                                                     "created_at": datetime.datetime.now(datetime.timezone.utc)})
    return {"username": BOOTSTRAP_USERNAME, "password": None if configured_password else password}
