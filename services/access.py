"""Who may do what on a repository: the policy behind the token endpoint and /v2/ checks."""
from services.errors import RegistryError
from services.names import check_repository_name
from services.tokens import ALL_ACTIONS, Scope, expand


def can_write(user, project):
    """Owners and administrators push, delete and change settings."""
    return bool(user) and (user.get("is_admin") or project.get("owner_id") == user["_id"])


def can_see(user, project):
    return project.get("is_public") or can_write(user, project)


async def repository_actions(collections, user, name):
    """Every action ``user`` (None = anonymous) may take on repository ``name``."""
    try:
        project_name, _ = check_repository_name(name)
    except RegistryError:
        return frozenset()
    project = await collections.projects.get_by_name(project_name)
    if project is None:
        return frozenset()
    if can_write(user, project):
        return ALL_ACTIONS
    return frozenset({"pull"}) if project.get("is_public") else frozenset()


async def grant(collections, user, requested, limit=ALL_ACTIONS):
    """Narrow each requested Scope to what the user holds (and ``limit``, a PAT's reach); empty ones are dropped."""
    result = []
    for scope in requested:
        if scope.type == "repository":
            allowed = await repository_actions(collections, user, scope.name)
            actions = expand(scope.actions) & allowed & limit
        elif scope.type == "registry" and scope.name == "catalog":
            # Anyone may list; the listing holds only the projects the caller can see.
            actions = frozenset(scope.actions) if "pull" in limit else frozenset()
        else:
            actions = frozenset()
        if actions:
            result.append(Scope(scope.type, scope.name, frozenset(actions)))
    return result
