#!/usr/bin/env bash
# The inference-delay runs of 2026-12-02-inference-delay.md: the reference checkpoint through the real nodes
# under strict lockstep, on the development seeds 1000..1019, naive (replace) and blended execution.
set -euo pipefail
source env.sh
export MUJOCO_GL=egl
out=${1:-runs/delay}
mkdir -p "$out"
for run in "1 replace" "16 replace" "16 blend" "1 blend"; do
  set -- $run
  evaluate --checkpoint checkpoints/sim_transfer_cube_tiny --episodes 20 --first-seed 1000 \
    --inference-delay-steps "$1" --chunk-policy "$2" --json "$out/d$1_$2.json"
done
python - "$out" <<'PY'
import json, sys
from pathlib import Path
for path in sorted(Path(sys.argv[1]).glob("d*_*.json")):
    r = json.loads(path.read_text())
    s = r["chunk_seams"]
    print(f"D={r['inference_delay_steps']:2d} {r['chunk_policy']:7s} success {r['successes']}/{r['episodes']}  "
          f"seam jump p50/p99 {s['seam_jump_mrad']['p50']}/{s['seam_jump_mrad']['p99']} mrad  "
          f"within-chunk step p50/p99 {s['within_chunk_step_mrad']['p50']}/{s['within_chunk_step_mrad']['p99']} mrad  "
          f"ratio {s['seam_p99_over_step_p99']}")
PY
