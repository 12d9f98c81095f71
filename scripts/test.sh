#!/usr/bin/env bash
# Install everything the tests need (Debian packages, a virtualenv with meshobs and its test
# extras) and run the whole test suite. Works from a fresh clone on Debian 12 / Python 3.11,
# as root or as a user with sudo. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

need=()
command -v promtool >/dev/null || need+=(prometheus)
command -v prometheus-alertmanager >/dev/null || need+=(prometheus-alertmanager)
# victoria-metrics ships victoria-metrics, vmagent and vmalert: the rules and dashboards are also
# proven on a distributed-store engine (tests/rules/test_alerts_victoria.py, tests/verify/)
command -v vmalert >/dev/null || need+=(victoria-metrics)
python3 -c 'import venv, ensurepip' 2>/dev/null || need+=(python3-venv)
if [ ${#need[@]} -gt 0 ]; then
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${need[@]}"
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[test]'
# envoy, meshobs and the other console scripts of the venv must be on PATH for the tests.
export PATH="$PWD/.venv/bin:$PATH"
exec .venv/bin/python -m pytest "$@"
