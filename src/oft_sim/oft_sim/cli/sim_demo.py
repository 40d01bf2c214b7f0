"""`sim_demo`: the README's main job. Closed loop on simulated transfer-cube through the real
nodes (aloha_sim emulating the ALOHA follower drivers and cameras, policy_node, executor_node).

By default it evaluates the committed reference checkpoint on a few seeds. `--train` first makes
a checkpoint through the real pipeline at a small scale (scripted demos recorded as teleoperation
-> rosbag2 -> fit_normalizer -> export -> train on the tiny backbone), `--full` at full scale.
Ends with a short report (success over K seeds, image-to-command latency, executor jitter, peak
drift), a drift plot (PNG) and a video (mp4) of one rollout.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

from oft_sim.closed_loop import DEFAULT_INSTRUCTION, add_chunk_timing_arguments
from oft_policy.processes import exit_on_sigterm, node_command


@dataclass(frozen=True)
class Scale:
    name: str
    demos: int
    train_steps: Optional[int]  # None: the recipe's training.max_steps
    eval_episodes: int
    batch_size: int


REFERENCE = Path("checkpoints/sim_transfer_cube_tiny")
"""The committed reference checkpoint, relative to the repository root (where scripts/demo.sh runs)."""
REFERENCE_EPISODES = 5
QUICK = Scale("quick (minutes on 2 CPU cores; far too little training to solve the task)", 10, 300, 3, 8)
FULL = Scale("full (50 demos and the training steps of the recipe sim_transfer_cube.yaml: about 70 min on 2 CPU cores)",
             50, None, 50, 8)

IMAGE_SIZE = (96, 128)  # demos and evaluation render at the same resolution


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sim_demo", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", help=f"evaluate this checkpoint (default: the reference, {REFERENCE})")
    parser.add_argument("--train", action="store_true", help=f"make a checkpoint first: {QUICK.name}")
    parser.add_argument("--work-dir", default="runs/sim_demo", help="where demos, dataset, training run and report go")
    parser.add_argument("--full", action="store_true", help=f"full-scale pipeline: {FULL.name}")
    parser.add_argument("--episodes", type=int,
                        help=f"evaluation seeds (default {REFERENCE_EPISODES} for a given checkpoint, 3 --train, 50 --full)")
    parser.add_argument("--first-seed", type=int, default=1000, help="first evaluation seed (demos use seeds from 0)")
    parser.add_argument("--demos", type=int, help="scripted demonstrations to record (default 10 quick, 50 full)")
    parser.add_argument("--train-steps", type=int, help="training steps (default 300 quick, the recipe's max_steps full)")
    parser.add_argument("--rebuild", action="store_true", help="make a new checkpoint even if the work dir has one")
    add_chunk_timing_arguments(parser)
    return parser


def chunk_timing_flags(args) -> List[str]:
    """The chunk-timing flags given to sim_demo, passed on to evaluate."""
    flags = []
    for name in ("execute_steps", "inference_delay_steps", "chunk_policy", "blend_weight"):
        value = getattr(args, name)
        if value is not None:
            flags += [f"--{name.replace('_', '-')}", str(value)]
    return flags


def _run(stage: str, argv: List[str], log_path: Path) -> float:
    """Run one pipeline command, its output to a log file; returns seconds; exits on failure."""
    print(f"[sim_demo] {stage}: {' '.join(argv[-6:]) if len(argv) > 6 else ' '.join(argv)}", flush=True)
    started = time.monotonic()
    with open(log_path, "w") as log:
        done = subprocess.run(argv, stdout=log, stderr=subprocess.STDOUT)
    seconds = time.monotonic() - started
    if done.returncode != 0:
        tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-15:])
        raise RuntimeError(f"{stage} failed (exit {done.returncode}); end of {log_path}:\n{tail}")
    print(f"[sim_demo]   done in {seconds:.0f} s (log: {log_path})", flush=True)
    return seconds


def _recipe_config() -> Path:
    """The training recipe of the recorded sim result (tiny backbone, frozen ImageNet vision, 112 px, chunk 50)."""
    import oft_training

    return Path(oft_training.__file__).resolve().parent / "configs" / "sim_transfer_cube.yaml"


def _recipe_steps() -> int:
    import yaml

    return int(yaml.safe_load(_recipe_config().read_text())["training"]["max_steps"])


def _schedule(steps: int) -> List[str]:
    """The recipe's learning-rate schedule at its own length; one warmup + cosine at any other."""
    if steps == _recipe_steps():
        return []
    return [f"optimizer.warmup_steps={min(500, max(1, steps // 10))}", "optimizer.first_cycle_steps=0"]


def make_checkpoint(work: Path, scale: Scale) -> dict:
    """scripted_demos -> fit_normalizer -> export -> train; returns what was done and how long."""
    logs = work / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    for stale in ("demos", "demos.partial", "dataset", "train", "stats.json"):
        target = work / stale
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
    seconds = {}
    seconds["demos"] = _run(
        "recording scripted demonstrations in aloha_sim (one rosbag2 each)",
        node_command("oft_sim", "scripted_demos", "oft_sim.cli.scripted_demos")
        + ["--episodes", str(scale.demos), "--out", str(work / "demos"),
           "--image-height", str(IMAGE_SIZE[0]), "--image-width", str(IMAGE_SIZE[1])],
        logs / "scripted_demos.log",
    )
    summary = json.loads((work / "demos" / "demos.json").read_text())
    bags = sorted(str(p) for p in (work / "demos").glob("episode_*"))
    print(f"[sim_demo]   {summary['successful']} of {summary['attempted']} scripted episodes succeeded and were kept")
    seconds["fit_normalizer"] = _run(
        "fitting normalization stats",
        node_command("oft_training", "fit_normalizer", "oft_training.cli.fit_normalizer")
        + ["--bags", *bags, "--out", str(work / "stats.json")],
        logs / "fit_normalizer.log",
    )
    seconds["export"] = _run(
        "exporting to a LeRobotDataset v3.0",
        node_command("oft_training", "export", "oft_training.cli.export")
        + ["--bags", *bags, "--out", str(work / "dataset"), "--instruction", DEFAULT_INSTRUCTION],
        logs / "export.log",
    )
    seconds["train"] = _run(
        f"training the tiny backbone for {scale.train_steps} steps on CPU",
        node_command("oft_training", "train", "oft_training.cli.train")
        + [
            "--config", str(_recipe_config()),
            f"data.dataset={work / 'dataset'}",
            f"data.stats_path={work / 'stats.json'}",
            f"training.output_dir={work / 'train'}",
            f"training.max_steps={scale.train_steps}",
            f"training.checkpoint_every={scale.train_steps}",
            f"training.validate_every={max(1, scale.train_steps // 5)}",
            f"training.log_every={max(1, scale.train_steps // 20)}",
            f"training.batch_size={scale.batch_size}",
            *_schedule(scale.train_steps),
        ],
        logs / "train.log",
    )
    steps = sorted((work / "train" / "checkpoints").glob("step_*"))
    if not steps:
        raise RuntimeError(f"training wrote no checkpoint under {work / 'train' / 'checkpoints'}")
    checkpoint = work / "checkpoint"
    if checkpoint.exists():
        shutil.rmtree(checkpoint)
    shutil.copytree(steps[-1] / "policy", checkpoint)
    made = {
        "demos_attempted": summary["attempted"],
        "demos": summary["successful"],
        "train_steps": scale.train_steps,
        "seconds": {k: round(v, 1) for k, v in seconds.items()},
        "scale": scale.name,
    }
    (work / "pipeline.json").write_text(json.dumps(made, indent=2))
    return made


def _seam_line(result: dict) -> str:
    seams = result.get("chunk_seams") or {}
    jump, step = seams.get("seam_jump_mrad") or {}, seams.get("within_chunk_step_mrad") or {}
    return (f"chunk seams ({result.get('inference_delay_steps')} ticks of inference delay, {result.get('chunk_policy')}): "
            f"jump p99 {jump.get('p99')} mrad against a within-chunk step p99 of {step.get('p99')} mrad "
            f"over {seams.get('seams', 0)} seams")


def report(result: dict, made: Optional[dict], work: Path) -> str:
    latency = result["image_to_command_ms"]
    jitter = result["executor_period_error_ms"]
    lines = [
        "",
        "=== oft_ros simulated ALOHA: closed loop on transfer_cube ===",
        f"checkpoint: {result['checkpoint']}",
    ]
    if made:
        lines.append(
            f"  made here: {made['demos']} scripted demos -> rosbag2 -> fit_normalizer -> export -> "
            f"{made['train_steps']} tiny-backbone training steps on CPU "
            f"({made['seconds'].get('train', 0) / 60:.1f} min); scale: {made['scale']}"
        )
    lines += [
        f"success: {result['successes']}/{result['episodes']} seeds "
        f"({result['first_seed']}..{result['first_seed'] + result['episodes'] - 1}, never used for demos)",
        f"image-to-command latency (wall clock): p50 {latency['p50']} ms, p95 {latency['p95']} ms, p99 {latency['p99']} ms",
        f"executor period error ({result['executor_period_clock']} clock, {result['mode']} mode): "
        f"p50 {jitter['p50']} ms, p99 {jitter['p99']} ms",
        f"peak drift trend: {result['peak_drift']}",
        _seam_line(result),
        f"drift plot: {result.get('drift_plot')}",
        f"rollout video: {result.get('video')}",
        f"full results: {work / 'evaluation.json'}",
    ]
    if made and not made["scale"].startswith("full"):
        lines.append(
            "note: this quick run trains far too little to solve the task; the success rate above is what "
            "that checkpoint achieves. `sim_demo --full` runs the full-scale pipeline (about 70 min of CPU training)."
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    exit_on_sigterm()
    scale = FULL if args.full else QUICK
    train = args.full or args.train
    scale = Scale(
        scale.name,
        args.demos or scale.demos,
        args.train_steps or scale.train_steps or _recipe_steps(),
        args.episodes or (scale.eval_episodes if train else REFERENCE_EPISODES),
        scale.batch_size,
    )
    work = Path(args.work_dir).resolve()
    work.mkdir(parents=True, exist_ok=True)
    made = None
    try:
        if not train:
            checkpoint = Path(args.checkpoint or REFERENCE)
            if not checkpoint.is_dir():
                raise FileNotFoundError(f"no checkpoint at {checkpoint}: run from the repository root, or pass "
                                        "--checkpoint DIR, or --train to make one")
            print(f"[sim_demo] evaluating the checkpoint {checkpoint} (--train makes one through the pipeline)")
        elif (work / "checkpoint").is_dir() and not args.rebuild:
            checkpoint = work / "checkpoint"
            previous = work / "pipeline.json"
            made = json.loads(previous.read_text()) if previous.exists() else None
            print(f"[sim_demo] using the checkpoint a previous run made in {checkpoint} (--rebuild to make a new one)")
        else:
            print(f"[sim_demo] no checkpoint given: making one through the real pipeline, scale {scale.name}")
            made = make_checkpoint(work, scale)
            checkpoint = work / "checkpoint"
        from oft_sim.cli import evaluate

        eval_args = evaluate.build_parser().parse_args(
            [
                "--checkpoint", str(checkpoint),
                "--episodes", str(scale.eval_episodes),
                "--first-seed", str(args.first_seed),
                "--json", str(work / "evaluation.json"),
                "--video", str(work / "rollout.mp4"),
                "--drift-plot", str(work / "drift.png"),
                "--image-height", str(IMAGE_SIZE[0]),
                "--image-width", str(IMAGE_SIZE[1]),
                "--log-dir", str(work / "logs" / "evaluate"),
                *chunk_timing_flags(args),
            ]
        )
        print(f"[sim_demo] closed loop: aloha_sim + policy_node + executor_node on {scale.eval_episodes} seeds")
        result = evaluate.run(eval_args, log=lambda line: print(f"[sim_demo]   {line}", flush=True))
    except (RuntimeError, ValueError, FileNotFoundError, TimeoutError) as error:
        print(f"sim_demo: {error}", file=sys.stderr)
        return 1
    print(report(result, made, work))
    return 0


if __name__ == "__main__":
    sys.exit(main())
