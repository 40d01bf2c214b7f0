#!/usr/bin/env bash
# The test command: set up (idempotent), then run the whole suite with pytest.
# Extra arguments go to pytest (e.g. scripts/test.sh -k executor).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$ROOT/scripts/setup.sh"
cd "$ROOT"
# shellcheck disable=SC1091
source "$ROOT/env.sh"
exec python -m pytest "$@"
