"""Who may do what on a repository: the policy behind the token endpoint and /v2/ checks."""
from services.errors import RegistryError
from services.names import check_repository_name
from services.tokens import ALL_ACTIONS, Scope, expand


async def repository_actions(collections, user, name):
    """Every action ``user`` (None = anonymous) may take on repository ``name``."""
    try:
        project_name, _ = check_repository_name(name)
    except RegistryError:
        return frozenset()
    if user and user.get("is_admin"):
        return ALL_ACTIONS
    project = await collections.projects.get_by_name(project_name)
    if project is None:
        return frozenset()
    if user and project.get("owner_id") == user["_id"]:
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
            actions = frozenset(scope.actions) if user and user.get("is_admin") and "pull" in limit else frozenset()
        else:
            actions = frozenset()
        if actions:
            result.append(Scope(scope.type, scope.name, frozenset(actions)))
    return result
