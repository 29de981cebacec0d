#!/usr/bin/env bash
# The one test command, used by README and CI alike (extra arguments go to pytest):
#     scripts/test.sh                       # the whole suite
#     scripts/test.sh tests/test_presets.py -x
# Real-scan tests read BRAINMRI_DATA (e.g. ../shared/data) and skip, saying why, without it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
exec "${VENV:-.venv}/bin/python" -m pytest -q "$@"
