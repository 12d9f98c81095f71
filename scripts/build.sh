#!/usr/bin/env bash
# Install meshobs into a virtualenv and render every artefact for the default configuration
# (or pass build options, e.g. `--out /tmp/meshobs --config meshobs.yaml`).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
  if [ "$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y --no-install-recommends python3-venv
  else sudo apt-get update -qq && sudo apt-get install -y --no-install-recommends python3-venv; fi
fi
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q .
exec .venv/bin/meshobs build "$@"
