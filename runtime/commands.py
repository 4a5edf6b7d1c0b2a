"""The operator's commands (``server.py recount``, ``server.py user reset-password``), run on the same
services as the API; beside a running server on the embedded database they use its database."""
import json

from runtime.backend import open_backend
from services.container import build_services


async def recount(config, fix):
    """Recompute every project's usage from its links and print one JSON line per project."""
    async with open_backend(config, for_command=True) as backend:
        projects = build_services(config, backend, codec=None).projects
        drifted = 0
        for project in await backend.collections.projects.all():
            report = await projects.recount(project, fix)
            drifted += report["drift"] != 0
            print(json.dumps({"project": project["name"], **report}), flush=True)
        print(json.dumps({"projects_with_drift": drifted, "fixed": fix}), flush=True)
    return 0


async def reset_password(config, username):
    """Give ``username`` a new one-time password (printed), to be changed at next login; end its sessions."""
    async with open_backend(config, for_command=True) as backend:
        users = build_services(config, backend, codec=None).users
        password = await users.reset_password(username)
    print(f"New one-time password for {username}: {password}\nIt must be changed after logging in.", flush=True)
    return 0
