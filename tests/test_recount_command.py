"""`python server.py recount`: the operator's command that recomputes usage and reports (or fixes) drift."""
import json

import pymongo

from tests.support.clients import run_server_cli, server_env


def _recount(mongo, registry, *flags):
    result = run_server_cli("recount", *flags, env=server_env(CYP_MONGO_URI=mongo.uri, CYP_MONGO_DB=registry.db_name))
    assert result.returncode == 0, result.stderr
    return {line["project"]: line for line in map(json.loads, result.stdout.splitlines()) if "project" in line}


def _corrupt_usage(mongo, registry, project, delta):
    db = pymongo.MongoClient(mongo.uri)[registry.db_name]
    db.projects.update_one({"name": project}, {"$inc": {"storage_used": delta}})
    return db


def test_recount_reports_a_drift_without_changing_anything(admin, repo, mongo, registry):
    project = repo.split("/")[0]
    admin.push_blob(repo, b"x" * 1000)
    db = _corrupt_usage(mongo, registry, project, 77)

    report = _recount(mongo, registry)[project]

    assert (report["recorded"], report["actual"], report["drift"], report["fixed"]) == (1077, 1000, 77, False)
    assert db.projects.find_one({"name": project})["storage_used"] == 1077


def test_recount_with_fix_repairs_the_drift(admin, repo, mongo, registry):
    project = repo.split("/")[0]
    admin.push_blob(repo, b"y" * 1000)
    db = _corrupt_usage(mongo, registry, project, -500)

    report = _recount(mongo, registry, "--fix")[project]

    assert (report["drift"], report["fixed"]) == (-500, True)
    assert db.projects.find_one({"name": project})["storage_used"] == 1000
