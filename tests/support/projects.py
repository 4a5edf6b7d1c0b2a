"""Creating projects through the API, as a user would before pushing."""
import requests


def api_login(url, username, password):
    response = requests.post(f"{url}/api/v1/auth/login", json={"username": username, "password": password},
                             timeout=30)
    response.raise_for_status()
    return response.json()["data"]["access_token"]


def create_project(url, token, name, **fields):
    response = requests.post(f"{url}/api/v1/projects", json={"name": name, **fields},
                             headers={"Authorization": f"Bearer {token}"}, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()["data"]
