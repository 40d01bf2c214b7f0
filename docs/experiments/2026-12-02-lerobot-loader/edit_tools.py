"""LeRobot's dataset editing tools on our export: delete_episodes and merge_datasets, then reload and
list meta/stats.json features (these tools rebuild stats from the per-episode stats/<feature>/<stat>
columns of meta/episodes, which our export writes for every feature).

usage: python edit_tools.py OURS WORKDIR
"""
import logging
import sys

import lerobot_env  # first: before torch, torchvision and lerobot

lerobot_env.prepare(logging.WARNING)

import json
import shutil
import traceback
from pathlib import Path

import torch

from lerobot.datasets.dataset_tools import delete_episodes, merge_datasets
from lerobot.datasets.lerobot_dataset import LeRobotDataset

ours_root, work = Path(sys.argv[1]), Path(sys.argv[2])
shutil.rmtree(work, ignore_errors=True)
work.mkdir(parents=True)
ours = LeRobotDataset("local/oft_export", root=ours_root)


def report(label, fn):
    print(f"== {label}")
    try:
        ds = fn()
        stats = json.loads((ds.root / "meta/stats.json").read_text())
        print(f"  ok: len={len(ds)} episodes={ds.num_episodes}; item 0 keys {sorted(ds[0])}")
        print(f"  meta/stats.json features: {sorted(stats)}")
        missing = sorted(set(ds.meta.features) - set(stats))
        print(f"  features with no stats: {missing}")
    except Exception:
        traceback.print_exc(file=sys.stdout)


report("delete_episodes(ours, [1])",
       lambda: delete_episodes(ours, [1], output_dir=work / "deleted", repo_id="local/deleted"))
report("merge_datasets([ours, ours])",
       lambda: merge_datasets([ours, LeRobotDataset("local/oft_export_b", root=ours_root)], "local/merged",
                              output_dir=work / "merged"))
print("done")

print("== what lerobot.datasets.factory.make_dataset does next with use_imagenet_stats=True (its default)")
# factory.py's constant, read from its source: importing factory pulls in lerobot.robots (pyserial, ...).
import ast
import lerobot.datasets.lerobot_dataset as _lds

_tree = ast.parse((Path(_lds.__file__).parent / "factory.py").read_text())
IMAGENET_STATS = next(ast.literal_eval(n.value) for n in _tree.body
                      if isinstance(n, ast.Assign) and getattr(n.targets[0], "id", "") == "IMAGENET_STATS")

for label, root in (("delete_episodes result", work / "deleted"), ("merge_datasets result", work / "merged")):
    ds = LeRobotDataset("local/x", root=root)
    try:
        for key in ds.meta.camera_keys:
            for stats_type, stats in IMAGENET_STATS.items():
                ds.meta.stats[key][stats_type] = torch.tensor(stats, dtype=torch.float32)
        print(f"  {label}: ok")
    except Exception as exc:
        print(f"  {label}: {type(exc).__name__}: {exc}")
