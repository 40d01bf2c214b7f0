"""`scripted_demos`: record scripted transfer-cube demonstrations in the simulator, one rosbag2 each."""

from __future__ import annotations

import argparse
import sys

from oft_policy import names
from oft_sim.demos import SUMMARY_FILENAME, record_scripted_demos, spread_seeds
from oft_policy.processes import exit_on_sigterm
from oft_sim.scripted_policy import EPISODE_STEPS
from oft_sim.tasks import TASKS


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scripted_demos",
        description=(
            "Run the task's scripted demonstrator in the aloha_sim node as a teleoperation session: "
            "leader arm joint states, follower commands through the emulated xs drivers, the episode's instruction "
            "on /oft/instruction, and one rosbag2 "
            "per episode as `record` writes it on a real ALOHA (realsense camera topics, follower and "
            "leader joint states, /oft/commanded_action, /sim/reward, /sim/success). Only successful "
            "episodes are kept."
        ),
    )
    parser.add_argument("--task", default="transfer_cube", choices=[n for n, t in TASKS.items() if t.has_demonstrator])
    parser.add_argument("--episodes", type=int, required=True, help="episodes to attempt")
    parser.add_argument("--out", required=True, help="output directory (must not exist)")
    parser.add_argument("--first-seed", type=int, default=0, help="seed of the first episode (default 0)")
    parser.add_argument(
        "--spread-over", type=int, metavar="N",
        help="pick the episodes' seeds among first_seed..first_seed+N-1 so that the objects spread evenly "
        "over the task's sampling region (default: consecutive seeds)",
    )
    parser.add_argument("--image-height", type=int, default=96)
    parser.add_argument("--image-width", type=int, default=128)
    parser.add_argument("--cameras", nargs="+", default=list(names.CAMERA_NAMES))
    parser.add_argument("--storage", default="mcap", choices=["mcap", "sqlite3"])
    parser.add_argument("--steps", type=int, default=EPISODE_STEPS, help=f"control steps per episode (default {EPISODE_STEPS})")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    exit_on_sigterm()
    try:
        seeds = None
        if args.spread_over is not None:
            seeds = spread_seeds(args.task, args.episodes, range(args.first_seed, args.first_seed + args.spread_over))
        results = record_scripted_demos(
            args.out,
            task=args.task,
            episodes=args.episodes,
            first_seed=args.first_seed,
            seeds=seeds,
            image_size=(args.image_height, args.image_width),
            cameras=args.cameras,
            storage=args.storage,
            steps=args.steps,
        )
    except (ValueError, FileExistsError, TimeoutError, RuntimeError) as error:
        print(f"scripted_demos: {error}", file=sys.stderr)
        return 1
    kept = sum(r.success for r in results)
    print(
        f"scripted_demos: {kept} of {len(results)} episodes succeeded and were kept in {args.out} "
        f"(summary in {SUMMARY_FILENAME})"
    )
    return 0 if kept else 1


if __name__ == "__main__":
    sys.exit(main())
