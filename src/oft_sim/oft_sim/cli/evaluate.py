"""`evaluate`: closed-loop success of a checkpoint in the simulator, through the real nodes."""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from oft_sim.closed_loop import (
    ClosedLoop, LoopSettings, add_chunk_timing_arguments, chunk_timing_settings, checkpoint_chunk_size, executed_per_chunk,
    render_size,
)
from oft_sim.tasks import TASKS
from oft_sim.evaluation import plot_drift, rollout_frames, summarize, write_json, write_video
from oft_policy import names
from oft_policy.processes import exit_on_sigterm


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="evaluate",
        description=(
            "Run aloha_sim, policy_node and executor_node as processes on sim time and evaluate a checkpoint "
            "on seeds S..S+N-1. Strict lockstep: the simulator holds sim time at the step where the policy asks "
            "for its next chunk until the executor has it, so a slow and a fast machine run the same episodes "
            "(--realtime paces to the wall clock instead)."
        ),
    )
    parser.add_argument("--checkpoint", required=True, help="checkpoint directory (oft_policy format)")
    parser.add_argument("--task", default="transfer_cube", choices=sorted(TASKS))
    parser.add_argument("--episodes", type=int, default=50)
    parser.add_argument("--first-seed", type=int, default=1000, help="first seed (default 1000: never used by scripted_demos' defaults)")
    add_chunk_timing_arguments(parser)
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--max-steps", type=int, default=400, help="control steps per episode (default 400 = 8 s)")
    parser.add_argument("--instruction", help="one instruction for every episode (default: the task's, naming each "
                                              "seed's target, e.g. its cube's colour)")
    parser.add_argument("--swap-target", action="store_true",
                        help="tasks that choose among objects: name the other one than the seed's default (the "
                             "language-following check: the same scenes, the other instruction)")
    parser.add_argument(
        "--image-height", type=int,
        help="camera resolution; must match the training data (default: what the checkpoint was trained on, else 96x128)",
    )
    parser.add_argument("--image-width", type=int)
    parser.add_argument("--realtime", action="store_true", help="pace the simulator to the wall clock (latency benchmark)")
    parser.add_argument("--torch-threads", type=int, default=1)
    parser.add_argument(
        "--drift-critical-threshold", type=float,
        help="executor drift trend that halts the arms (and ends the episode as a failure); default: the executor's",
    )
    parser.add_argument("--video", help="write an mp4 of the first episode here (every camera, step and reward)")
    parser.add_argument("--drift-plot", help="write a PNG of the drift trend of every episode here")
    parser.add_argument("--log-dir", help="node logs (default: a temporary directory)")
    return parser


def run(args, log=print) -> dict:
    if args.episodes < 1:
        raise ValueError("--episodes must be at least 1")
    log_dir = Path(args.log_dir) if args.log_dir else Path(tempfile.mkdtemp(prefix="oft_evaluate_"))
    args.image_height, args.image_width = render_size(args.checkpoint, args.image_height, args.image_width)
    settings = LoopSettings(
        checkpoint=Path(args.checkpoint),
        task=args.task,
        instruction=args.instruction,
        image_size=(args.image_height, args.image_width),
        max_steps=args.max_steps,
        **chunk_timing_settings(args),
        realtime=args.realtime,
        torch_threads=args.torch_threads,
        drift_critical_threshold=args.drift_critical_threshold,
        log_dir=log_dir,
    )
    loop = ClosedLoop(settings, log=log)
    outcomes = []
    try:
        loop.start()
        for index, seed in enumerate(range(args.first_seed, args.first_seed + args.episodes)):
            target = loop.episode_target(seed, swap=args.swap_target)
            outcome = loop.run_episode(seed, record_video=bool(args.video) and index == 0, target=target)
            outcomes.append(outcome)
            named = f"named {outcome.target}, grasped {outcome.grasped or 'nothing'}, " if outcome.target else ""
            log(
                f"seed {seed}: {'success' if outcome.success else 'failure'} ({named}max reward {outcome.max_reward}, "
                f"{outcome.steps} steps, {outcome.chunks} chunks, {outcome.wall_s:.1f} s"
                + (f", executor halted: {outcome.halted}" if outcome.halted else "")
                + ") "
                f"[{sum(o.success for o in outcomes)}/{len(outcomes)}]"
            )
    finally:
        loop.close()
    record = loop.record
    result = summarize(
        outcomes,
        args.first_seed,
        record.latency.samples_ms,
        record.period_errors_ms(args.realtime),
        record.drift,
        extra={
            "task": args.task,
            **({"swapped_target": True} if args.swap_target else {}),
            "checkpoint": str(args.checkpoint),
            "chunk_size": checkpoint_chunk_size(args.checkpoint),
            "executed_per_chunk": executed_per_chunk(args.checkpoint, args.execute_steps),
            "inference_delay_steps": loop.inference_delay_steps(),
            "chunk_policy": args.chunk_policy,
            **({"blend_weight": args.blend_weight} if args.chunk_policy == "blend" else {}),
            "mode": "realtime" if args.realtime else "lockstep",
            "executor_period_clock": "wall" if args.realtime else "sim",
            "image_size": [args.image_height, args.image_width],
            "max_steps": args.max_steps,
            "chunk_seams": record.seams(names.ALOHA_JOINT_NAMES, args.chunk_policy, args.blend_weight),
            "logs": str(log_dir),
        },
    )
    if args.video and record.frames:
        pictures = rollout_frames(record.frames, record.frame_labels, names.CAMERA_NAMES)
        result["video"] = str(write_video(pictures, args.video))
    if args.drift_plot:
        result["drift_plot"] = str(plot_drift(record.drift, args.drift_plot))
    if args.json:
        write_json(result, args.json)
    return result


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    exit_on_sigterm()
    try:
        result = run(args)
    except (ValueError, FileNotFoundError, RuntimeError, TimeoutError) as error:
        print(f"evaluate: {error}", file=sys.stderr)
        return 1
    latency = result["image_to_command_ms"]
    print(
        f"evaluate: success {result['successes']}/{result['episodes']} ({100 * result['success_rate']:.0f}%) "
        f"on {result['task']} seeds {result['first_seed']}..{result['first_seed'] + result['episodes'] - 1}; "
        f"image-to-command p50/p95/p99 {latency['p50']}/{latency['p95']}/{latency['p99']} ms; "
        f"peak drift {result['peak_drift']}"
        + (f"; named object {100 * result['named_object_rate']:.0f}% of {result['episodes_with_a_grasp']} grasps"
           if "named_object_rate" in result else "")
        + (f"; results in {args.json}" if args.json else "")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
