"""How often a task's scripted demonstrator succeeds, in-process (no ROS):

    python -m oft_sim.tasks.check --task insertion --first-seed 0 --episodes 50
"""

from __future__ import annotations

import argparse
import sys
import time

from oft_sim.tasks import TASKS


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m oft_sim.tasks.check", description=__doc__.splitlines()[0])
    parser.add_argument("--task", required=True, choices=sorted(TASKS))
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--episodes", type=int, default=50)
    args = parser.parse_args(argv)
    from oft_sim.scripted_policy import scripted_trajectory
    from oft_sim.simulator import AlohaSim

    sim = AlohaSim(args.task, cameras=())
    failed, started = [], time.monotonic()
    for seed in range(args.first_seed, args.first_seed + args.episodes):
        sim.reset(seed)
        for action in scripted_trajectory(sim):
            sim.step(action)
        if not sim.success:
            failed.append(f"{seed} (max reward {sim.max_reward})")
        print(f"seed {seed}: {'success' if sim.success else 'failure'} [{seed - args.first_seed + 1 - len(failed)}/"
              f"{seed - args.first_seed + 1}]", flush=True)
    solved = args.episodes - len(failed)
    print(f"{args.task}: the scripted demonstrator solved {solved}/{args.episodes} seeds "
          f"{args.first_seed}..{args.first_seed + args.episodes - 1} in {time.monotonic() - started:.0f} s"
          + (f"; failed: {', '.join(failed)}" if failed else ""))
    return 0 if solved else 1


if __name__ == "__main__":
    sys.exit(main())
