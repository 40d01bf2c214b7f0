#!/usr/bin/env bash
# The README's main command: set up (idempotent), then run the simulated ALOHA
# closed loop (aloha_sim + policy_node + executor_node) on transfer-cube.
# With no checkpoint given it builds one through the real pipeline first
# (scripted demos -> rosbag2 -> fit_normalizer -> export -> train) and says so.
# Every flag is passed to `sim_demo` (see `sim_demo --help`; `--full` for full scale).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
bash scripts/setup.sh
# shellcheck disable=SC1091
source env.sh
export MUJOCO_GL=${MUJOCO_GL:-egl}
exec "$ROOT/install/oft_sim/lib/oft_sim/sim_demo" "$@"
