import hashlib


def test_monolithic_push_then_pull_returns_the_same_bytes(admin, repo):
    data = b"hello registry"
    digest = "sha256:" + hashlib.sha256(data).hexdigest()

    pushed = admin.push_blob(repo, data, digest)
    pulled = admin.request("GET", f"/v2/{repo}/blobs/{digest}", f"repository:{repo}:pull")

    assert pushed.status_code == 201
    assert pushed.headers["Docker-Content-Digest"] == digest
    assert pulled.status_code == 200
    assert pulled.content == data
