"""Folding identical records of one batch into one with their count: a client pulling in a loop costs a
PULL_ARTIFACT event per batch, not one per request (the audit log folds its records as they are submitted)."""


def fold(items, key):
    """``[(first, last, count)]``: the items equal under ``key`` grouped, in order of first appearance, with the
    first and last of each group and its count (an item's own ``count``, 1 when it has none, summed)."""
    groups = {}
    for item in items:
        group = groups.get(key(item))
        if group is None:
            groups[key(item)] = [item, item, item.get("count", 1)]
        else:
            group[1] = item
            group[2] += item.get("count", 1)
    return [tuple(group) for group in groups.values()]
