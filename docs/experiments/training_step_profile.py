"""Time the parts of one training step of a recipe on a dataset: batching, forward, backward, optimizer.

    python docs/experiments/training_step_profile.py --config CONFIG --dataset DIR --stats STATS [--steps 6]
"""

import argparse
import time

import torch
from oft_policy.model import build_model, build_tokenizer, chunk_regression_loss

from oft_training.batching import Batcher, loss_mask, model_inputs
from oft_training.dataset import ChunkDataset, EpisodeTable
from oft_training.run_inputs import build_oft_config, load_stats, split_episodes
from oft_training.train_config import load_config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--stats", required=True)
    parser.add_argument("--steps", type=int, default=6)
    args = parser.parse_args()
    config = load_config(args.config, [f"data.dataset={args.dataset}", f"data.stats_path={args.stats}"])
    torch.set_num_threads(int(config["training"]["threads"] or torch.get_num_threads()))
    table = EpisodeTable(args.dataset)
    train_episodes, _ = split_episodes(table, int(config["data"]["val_episodes"]))
    oft_config = build_oft_config(config, table)
    stats = load_stats(config, table, train_episodes, oft_config.joint_names)
    dataset = ChunkDataset(table.root, oft_config.chunk_size, stats, train_episodes[:3], oft_config.camera_names,
                           int(config["data"]["cache_bytes"]), table)
    model = build_model(oft_config, seed=0)
    batcher = Batcher(oft_config, build_tokenizer(oft_config), torch.device("cpu"))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    samples = [dataset[i] for i in range(config["training"]["batch_size"])]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {len(samples)}")
    for step in range(args.steps):
        t0 = time.perf_counter()
        batch = batcher(samples, train=True, generator=torch.Generator().manual_seed(step))
        t1 = time.perf_counter()
        prediction = model(*model_inputs(batch))
        t2 = time.perf_counter()
        chunk_regression_loss(prediction, batch["actions"], loss_mask(batch)).backward()
        t3 = time.perf_counter()
        optimizer.step()
        optimizer.zero_grad()
        t4 = time.perf_counter()
        print(f"step {step}: batch {t1 - t0:.3f} s, forward {t2 - t1:.3f} s, backward {t3 - t2:.3f} s, "
              f"optimizer {t4 - t3:.3f} s, total {t4 - t0:.3f} s")


if __name__ == "__main__":
    main()
