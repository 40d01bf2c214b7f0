"""`probe_policy`: does a transfer-cube checkpoint look at the cube? Measured in-process against
the scripted demonstrator (see oft_sim.probe); seconds per seed instead of `evaluate`'s minutes."""

from __future__ import annotations

import argparse
import json
import sys

from oft_sim.closed_loop import DEFAULT_INSTRUCTION, add_execute_steps_argument, executed_per_chunk, render_size
from oft_sim.evaluation import write_json
from oft_sim.probe import probe_seed, summarize
from oft_sim.simulator import AlohaSim


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="probe_policy",
        description=(
            "Probe a transfer-cube checkpoint against the scripted demonstrator, without ROS: where its first "
            "chunk aims from the reset images alone (localization), how close it predicts the grasp from the "
            "demonstrator's observations (tracking), and its success driving alone (a quick closed loop; "
            "`evaluate` gives the real number)."
        ),
    )
    parser.add_argument("--checkpoint", required=True, help="checkpoint directory (oft_policy format)")
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--first-seed", type=int, default=1000)
    parser.add_argument("--lead", type=int, default=25, help="tracking: steps between the observation and the grasp")
    add_execute_steps_argument(parser)
    parser.add_argument("--instruction", default=DEFAULT_INSTRUCTION)
    parser.add_argument(
        "--image-height", type=int,
        help="camera resolution; must match the training data (default: what the checkpoint was trained on, else 96x128)",
    )
    parser.add_argument("--image-width", type=int)
    parser.add_argument("--torch-threads", type=int, default=1)
    parser.add_argument("--json", help="write the results here")
    return parser


def run(args, log=print) -> dict:
    import torch

    from oft_policy.checkpoint import load_policy

    if args.episodes < 1:
        raise ValueError("--episodes must be at least 1")
    torch.set_num_threads(args.torch_threads)
    execute = executed_per_chunk(args.checkpoint, args.execute_steps)
    image_size = render_size(args.checkpoint, args.image_height, args.image_width)
    policy = load_policy(args.checkpoint)

    def predict(images, proprio):
        return policy.predict(images, args.instruction, proprio)

    sim = AlohaSim(image_size=image_size)
    probes = []
    for seed in range(args.first_seed, args.first_seed + args.episodes):
        probes.append(probe_seed(predict, seed, sim, lead=args.lead, execute=execute))
        p = probes[-1]
        log(f"seed {seed}: first-chunk aim off by {p.aim_error_cm:.1f} cm, "
            f"grasp tracking {p.tracking_error_cm:.1f} cm, closed loop {'success' if p.success else 'failure'} "
            f"(max reward {p.max_reward})")
    result = {"checkpoint": str(args.checkpoint), "image_size": list(image_size), "lead": args.lead,
              "executed_per_chunk": execute, **summarize(probes)}
    if args.json:
        write_json(result, args.json)
    return result


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        result = run(args)
    except (ValueError, FileNotFoundError, RuntimeError) as error:
        print(f"probe_policy: {error}", file=sys.stderr)
        return 1
    print(json.dumps({k: result[k] for k in ("localization", "tracking_error_cm", "closed_loop")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
