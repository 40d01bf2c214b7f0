"""``bench_training``: training samples/s and peak memory on the tiny config on CPU.

Builds a synthetic dataset, runs the tiny config for a number of steps in this
process and reports throughput over the steps after a warm-up, and the peak
resident memory (ru_maxrss) of the process.
"""

from __future__ import annotations

import argparse
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

import torch

from oft_training.cli.common import run_main
from oft_training.exporter import ExportOptions, export
from oft_training.synthetic import CALIBRATION, write_bag
from oft_training.train_config import load_config

TINY_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "tiny_cpu.yaml"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bench_training", description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(TINY_CONFIG), help="training config (default: the tiny CPU config)")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--warmup-steps", type=int, default=10, help="steps excluded from the throughput")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--cameras", type=int, default=3, choices=(1, 2, 3))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("overrides", nargs="*", metavar="section.key=value")
    return parser


def main_impl(argv=None) -> int:
    from oft_policy import names

    from oft_training import trainer

    args = build_parser().parse_args(argv)
    torch.set_num_threads(args.threads)
    cameras = names.CAMERA_NAMES[: args.cameras]
    with tempfile.TemporaryDirectory(prefix="bench_training_") as tmp:
        tmp = Path(tmp)
        bags = [write_bag(tmp / f"bag_{i}", seconds=2.0, cameras=cameras, image_hw=(64, 64)) for i in range(3)]
        options = ExportOptions("benchmark", cameras=cameras, min_frames=10, calibration=CALIBRATION)
        export(bags, tmp / "ds", options, progress=False)
        config = load_config(args.config, [
            f"data.dataset={tmp / 'ds'}", f"training.output_dir={tmp / 'run'}", f"training.max_steps={args.steps}",
            f"training.batch_size={args.batch_size}", f"training.checkpoint_every={args.steps}",
            f"training.validate_every={args.steps * 10}", "training.logger=none", f"training.threads={args.threads}",
            *args.overrides,
        ])
        stamps = []
        original = trainer.lr_at

        def timed_lr_at(step, *rest):  # called once at the start of every step
            stamps.append(time.perf_counter())
            return original(step, *rest)

        trainer.lr_at = timed_lr_at
        try:
            trainer.train(config, progress=True)
        finally:
            trainer.lr_at = original
    timed = stamps[args.warmup_steps:]
    per_step = (timed[-1] - timed[0]) / max(1, len(timed) - 1)
    samples_per_s = args.batch_size / per_step
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    gpu = torch.cuda.is_available() and config["training"]["device"] in ("auto", "cuda")
    m = config["model"]
    device = torch.cuda.get_device_name() if gpu else "CPU (no GPU)"
    print(f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{args.threads} threads, {device}")
    print(f"config: {Path(args.config).name}, backbone {m['backbone']}, image {m['image_size'] or 'native'}, "
          f"{len(cameras)} cameras, chunk {m['chunk_size']}, batch {args.batch_size}")
    print(f"steps timed: {len(timed) - 1} (after {args.warmup_steps} warm-up)")
    print(f"throughput: {samples_per_s:.1f} samples/s ({per_step * 1000:.1f} ms/step)")
    print(f"peak RSS: {peak_mib:.0f} MiB")
    if gpu:
        print(f"peak GPU memory: {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB allocated, "
              f"{torch.cuda.max_memory_reserved() / 2**30:.2f} GiB reserved")
    return 0


def main(argv=None) -> int:
    return run_main(main_impl, argv, (OSError, ValueError))


if __name__ == "__main__":
    sys.exit(main())
