"""/api/v1/auth: the one-time default administrator hint."""
from handlers.base import ApiHandler
from services.api_errors import ApiError
from services.bootstrap import HINT_KEY


class DefaultAdminOnceHandler(ApiHandler):
    async def get(self):
        hint = self.settings.get("bootstrap_hint")
        # Only the node that created the administrator knows the password; the flag in MongoDB
        # makes the answer a one-time one across restarts and nodes.
        if not hint or not await self.collections.meta.take_once(HINT_KEY):
            raise ApiError(20003, "the default administrator hint has already been shown or is not available")
        self.settings["bootstrap_hint"] = None
        self.write_data({
            "username": hint["username"],
            "password": hint["password"],
            "must_change_password": True,
            "message": "password set by configuration" if hint["password"] is None else "shown once; change it now",
        })
