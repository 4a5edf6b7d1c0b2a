#!/usr/bin/env bash
# Install everything the tests need (Debian's skopeo, podman, docker-registry, nginx and chromium; the
# Python packages) and run the whole suite. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")"
need=()
for tool in skopeo podman docker-registry nginx chromium; do
  command -v "$tool" >/dev/null 2>&1 || [ -x "/usr/sbin/$tool" ] || need+=("$tool")
done
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" uidmap >/dev/null
fi
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/pip install -qq --disable-pip-version-check -r requirements-dev.txt
df -h . "${TMPDIR:-/tmp}"  # room for what the suite writes (about 2 GB at its peak)
exec .venv/bin/python -m pytest "$@"
