"""``train``: fine-tune an OFT policy from a LeRobotDataset v3.0 (single process or DDP under torchrun)."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

from oft_training.cli.common import UsageError, run_main
from oft_training.train_config import TrainConfigError, load_config


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="train",
        description="Fine-tune an OFT policy. Config sections: model, training, loss, data, optimizer, ddp.",
    )
    parser.add_argument("--config", help="YAML config file (e.g. src/oft_bringup/config/oft_aloha.yaml)")
    parser.add_argument("overrides", nargs="*", metavar="section.key=value", help="config overrides")
    parser.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in training.output_dir")
    parser.add_argument("--nproc-per-node", type=int, default=None,
                        help="processes (DDP); > 1 relaunches under torch.distributed.run (overrides ddp.nproc_per_node)")
    return parser


def relaunch_under_torchrun(nproc: int, argv) -> int:
    """Run this command again under ``python -m torch.distributed.run`` (torchrun may not be on PATH)."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes", "1",
               "--nproc-per-node", str(nproc), "-m", "oft_training.cli.train", *argv]
    process = subprocess.Popen(command)
    try:
        return process.wait()
    except KeyboardInterrupt:
        process.terminate()
        return process.wait()


def main_impl(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    overrides = list(args.overrides)
    if args.nproc_per_node is not None:
        overrides.append(f"ddp.nproc_per_node={args.nproc_per_node}")
    config = load_config(args.config, overrides)
    nproc = config["ddp"]["nproc_per_node"]
    if nproc > 1 and "WORLD_SIZE" not in os.environ:
        # Check the data and model settings once, before starting workers.
        from oft_training.dataset import EpisodeTable
        from oft_training.run_inputs import build_oft_config, split_episodes

        table = EpisodeTable(config["data"]["dataset"])
        split_episodes(table, int(config["data"]["val_episodes"]))
        build_oft_config(config, table)
        return relaunch_under_torchrun(nproc, argv)
    from oft_training.trainer import train

    result = train(config, resume=args.resume)
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"trained steps {result.start_step}..{result.steps}; final checkpoint {result.final_checkpoint}")
        if result.last_val_l1 is not None:
            print(f"validation L1: first {result.first_val_l1:.4f}, last {result.last_val_l1:.4f}")
        print(f"samples/s: {result.samples_per_s:.2f}")
    return 0


def main(argv=None) -> int:
    from oft_policy.model.config import ConfigError
    from oft_policy.normalization import StatsError

    from oft_training.lerobot_format import DatasetFormatError

    return run_main(main_impl, argv, (UsageError, TrainConfigError, DatasetFormatError, ConfigError, StatsError, OSError))


if __name__ == "__main__":
    sys.exit(main())
