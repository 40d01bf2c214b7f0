"""Run the fault-injection tests and write docs/reliability.md from the figures they measured.

    python scripts/reliability_page.py            # after `source env.sh`; about 6 minutes on 2 cores

The fault tests are the tests that call oft_policy.testing.reliability.record_outcome;
each writes its figures while this script runs them, and each row of the page is one
of those records. tests/test_reliability_page.py checks that every row names such a test.
"""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

from oft_policy.testing.reliability import RESULTS_ENV, fault_tests, read_outcomes

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "reliability.md"

INTRO = """# Reliability: faults and what they do

Under faults the suite keeps the robot safe and loses no data. Every row below is a
fault injected by a test of the suite, with real processes (rclpy and DDS on loopback,
the emulated xs drivers and cameras, real files), and the figures are what that test
measured in the run named at the bottom. Regenerate with
`python scripts/reliability_page.py` (after `source env.sh`).

How the suite reacts, in short:
- **Recording** closes, writes and fsyncs its open mcap chunk every 0.5 s (`record --flush-interval`),
  so a killed recorder loses at most that much. A bag without `metadata.yaml` is an unfinished
  recording: `fit_normalizer` and `export` recover it in place (`oft_training.bag_recovery`, the
  analogue of `ros2 bag reindex`), say so, and use its true length. The recovered file has a
  summary and footer again and opens in rosbag2's and the mcap library's readers.
- **A write that fails** (a full disk) stops the recorder with the error and exit code 2, after
  it recovered what reached the disk.
- **The executor never commands without feedback** (`joint_state_timeout_s`, 0.2 s), holds one
  position when its queue runs dry, and says why in `ExecutorStatus.reason` and `/diagnostics`.
- **The policy node publishes no chunk from stale inputs** (`max_input_age_s`, 0.5 s, by header
  stamp, so a frozen frame ages) and none while the executor's status is silent
  (`executor_timeout_s`, 1 s).
- **Damaged inputs are refused** with the reason and change nothing: bags (the recorder writes
  chunk CRCs, as rosbag2's mcap writer does), checkpoints (content hashes), statistics, datasets.
"""


def _figures(figures: dict) -> str:
    return "; ".join(f"{name.replace('_', ' ')}: {value}" for name, value in figures.items())


def render(outcomes: list, commit: str, when: str, machine: str) -> str:
    lines = [INTRO, "| Fault | Outcome | Measured | Test |", "|---|---|---|---|"]
    for record in outcomes:
        path, _, name = record["test"].partition("::")
        cell = _figures(record["figures"]).replace("|", "/")
        lines.append(f"| {record['fault']} | {record['outcome']} | {cell} | `{Path(path).name}::{name.split('[')[0]}` |")
    lines += ["", f"Measured {when} on commit {commit}, {machine}; each test's source is under `src/*/test/` "
              "or `tests/`.", ""]
    return "\n".join(lines)


def main() -> int:
    tests = fault_tests(ROOT)
    with tempfile.TemporaryDirectory() as results:
        env = dict(os.environ, **{RESULTS_ENV: results})
        run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *tests],
                             cwd=ROOT, env=env)
        if run.returncode != 0:
            print("fault tests failed: page not written", file=sys.stderr)
            return run.returncode
        outcomes = read_outcomes(results)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True,
                           text=True).stdout.strip()
    machine = f"{os.cpu_count()} CPU cores, {platform.system()} {platform.machine()}, Python {platform.python_version()}"
    when = datetime.date.today().isoformat()
    PAGE.write_text(render(outcomes, commit + ("+changes" if dirty else ""), when, machine))
    print(f"wrote {PAGE.relative_to(ROOT)}: {len(outcomes)} rows from {len(tests)} tests")
    return 0


if __name__ == "__main__":
    sys.exit(main())
