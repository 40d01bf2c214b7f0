"""Load an exported dataset with LeRobot's own LeRobotDataset and print what it reads.

usage: python load.py ROOT [BACKEND] [recorded]   (BACKEND: default | torchcodec | pyav; `recorded`: a dataset
       exported from recorded bags, not the synthetic ones, so the synthetic gray levels are not checked)
"""
import logging
import sys

import lerobot_env  # first: before torch, torchvision and lerobot

lerobot_env.prepare(logging.INFO)

import time
import traceback
import numpy as np

import importlib.metadata as md
import json
from pathlib import Path

import torch

import av
import torchvision

from lerobot.datasets.lerobot_dataset import LeRobotDataset

root = sys.argv[1]
backend = sys.argv[2] if len(sys.argv) > 2 else "default"
synthetic = sys.argv[3:] != ["recorded"]
video_backend = None if backend == "default" else backend

print("== versions")
for pkg in ("lerobot", "torch", "torchvision", "torchcodec", "av", "datasets", "huggingface-hub", "pyarrow", "pandas", "numpy"):
    try:
        print(f"  {pkg} {md.version(pkg)}")
    except md.PackageNotFoundError:
        print(f"  {pkg} (not installed)")

print(f"== LeRobotDataset('local/oft_export', root={root!r}, video_backend={video_backend!r})")
t0 = time.time()
ds = LeRobotDataset("local/oft_export", root=root, video_backend=video_backend)
print(f"  constructed in {time.time() - t0:.2f}s; video_backend in use: {ds.video_backend}")
print(f"  len(ds)={len(ds)} num_episodes={ds.num_episodes} fps={ds.fps} codebase_version={ds.meta.info['codebase_version']}")
print("  features:")
for key, ft in ds.meta.features.items():
    print(f"    {key}: dtype={ft['dtype']} shape={ft['shape']}")
print(f"  video_keys={ds.meta.video_keys} camera_keys={ds.meta.camera_keys}")
print(f"  meta.tasks:\n{ds.meta.tasks}")
print(f"  meta.episodes columns: {list(ds.meta.episodes.column_names)}")
for ep in range(ds.meta.total_episodes):
    e = ds.meta.episodes[ep]
    print(f"    episode {ep}: length={e['length']} tasks={e['tasks']} rows {e['dataset_from_index']}..{e['dataset_to_index']}"
          f" cam_high ts {e['videos/observation.images.cam_high/from_timestamp']:.4f}..{e['videos/observation.images.cam_high/to_timestamp']:.4f}")
print(f"  meta.stats keys: {sorted(ds.meta.stats)}")
print(f"  meta.stats['observation.state'] stats: {sorted(ds.meta.stats['observation.state'])}")

print("== one item (index 0)")
item = ds[0]
for key, val in item.items():
    if isinstance(val, torch.Tensor):
        print(f"  {key}: shape={tuple(val.shape)} dtype={val.dtype}")
    else:
        print(f"  {key}: {type(val).__name__} {val!r}")

np.set_printoptions(precision=4, suppress=True, linewidth=200)
print("== observation.state / action at a few frames")
for idx in (0, 1, 50, int(ds.meta.episodes[0]["dataset_to_index"]) - 1, int(ds.meta.episodes[1]["dataset_from_index"]), len(ds) - 1):
    it = ds[idx]
    print(f"  [{idx}] ep={it['episode_index'].item()} frame={it['frame_index'].item()} t={it['timestamp'].item():.4f}")
    print(f"     state  {it['observation.state'].numpy()}")
    print(f"     action {it['action'].numpy()}")

print("== grippers over the whole dataset (columns 6 left_gripper, 13 right_gripper)")
names = ds.meta.features["observation.state"]["names"]
print(f"  names[6]={names[6]!r} names[13]={names[13]!r}")
for key in ("observation.state", "action"):
    arr = torch.stack(list(ds.hf_dataset[key])).numpy()
    for col in (6, 13):
        v = arr[:, col]
        inside = np.mean((v >= 0) & (v <= 1))
        print(f"  {key}[{col}] {names[col]}: min={v.min():.4f} max={v.max():.4f} mean={v.mean():.4f}"
              f" in[0,1]={inside:.1%} in[-0.25,1.25]={np.mean((v >= -0.25) & (v <= 1.25)):.1%}")
    others = np.delete(arr, [6, 13], axis=1)
    print(f"  {key} arm joints (rad): min={others.min():.4f} max={others.max():.4f}")

print("== images")
for cam in ds.meta.camera_keys:
    img = item[cam]
    print(f"  {cam}: shape={tuple(img.shape)} dtype={img.dtype} min={img.min().item():.4f} max={img.max().item():.4f}")

print("== every item decoded, frames checked against a direct PyAV decode of the same mp4")
direct = {}
for cam in ds.meta.camera_keys:
    path = ds.root / ds.meta.get_video_file_path(0, cam)
    with av.open(str(path)) as c:
        direct[cam] = np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])
    print(f"  {cam}: {path.relative_to(ds.root)} {direct[cam].shape[0]} frames in the file")
t0 = time.time()
worst = 0.0
lo, hi = 1.0, 0.0
level_err = 0.0  # synthetic bags: camera image k is flat gray (3k) % 256 at k/30 s; frame i takes image floor(0.6 i)
for idx in range(len(ds)):
    it = ds[idx]
    ep = ds.meta.episodes[it["episode_index"].item()]
    for cam in ds.meta.camera_keys:
        k = round((ep[f"videos/{cam}/from_timestamp"] + it["timestamp"].item()) * ds.fps)
        ours = (it[cam].permute(1, 2, 0).numpy() * 255.0).round()
        worst = max(worst, float(np.abs(ours - direct[cam][k]).max()))
        lo, hi = min(lo, it[cam].min().item()), max(hi, it[cam].max().item())
        expected = (3 * ((it["frame_index"].item() * 30) // 50)) % 256
        level_err = max(level_err, float(np.abs(ours - expected).max()))
print(f"  {len(ds)} items x {len(ds.meta.camera_keys)} cameras in {time.time() - t0:.1f}s;"
      f" largest pixel difference vs direct decode: {worst:.0f}/255")
print(f"  image values over the dataset: min={lo:.4f} max={hi:.4f} (float32, [0, 1])")
if synthetic:
    print(f"  largest difference from the synthetic bag's gray level of the source image: {level_err:.0f}/255")

raw = Path(root).parent / "raw_grippers_ep0.jsonl"
if raw.exists():
    print(f"== grippers vs the raw bag normalized by hand with the ALOHA 2 constants ({raw.name}, episode 0)")
    ep0 = int(ds.meta.episodes[0]["dataset_from_index"])
    worst_g = 0.0
    for line in raw.read_text().splitlines():
        row = json.loads(line)
        frame = round(row["t"] * ds.fps)
        if frame >= int(ds.meta.episodes[0]["length"]):
            continue
        it = ds[ep0 + frame]
        got = {"obs_left": it["observation.state"][6].item(), "obs_right": it["observation.state"][13].item(),
               "act_left": it["action"][6].item(), "act_right": it["action"][13].item()}
        diffs = {k: abs(got[k] - row[k]) for k in got}
        worst_g = max(worst_g, max(diffs.values()))
        print(f"  t={row['t']:.1f} frame {frame}: " + " ".join(f"{k} lerobot={got[k]:.4f} hand={row[k]:.4f}" for k in got))
    print(f"  largest |lerobot - hand| = {worst_g:.5f}")

print("== delta_timestamps (an ACT-style action chunk of 25, as training would ask)")
try:
    chunk = LeRobotDataset("local/oft_export", root=root, video_backend=video_backend,
                           delta_timestamps={"action": [i / ds.fps for i in range(25)]})
    last = int(chunk.meta.episodes[0]["dataset_to_index"]) - 3
    it = chunk[last]
    print(f"  item {last}: action {tuple(it['action'].shape)}, action_is_pad {it['action_is_pad'].int().tolist()}")
except Exception:
    traceback.print_exc(file=sys.stdout)
print("done")
