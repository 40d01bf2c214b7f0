"""LeRobot's own writer round trip: copy our export's episodes into LeRobotDataset.create(), then diff the
two layouts (meta/info.json, meta/episodes, meta/tasks, meta/stats.json, data parquet, video streams).

usage: python compare_writer.py OURS OUT
"""
import logging
import sys

import lerobot_env  # first: before torch, torchvision and lerobot

lerobot_env.prepare(logging.INFO)

import json
import shutil
from pathlib import Path

import torch

import av
import numpy as np
import pyarrow.parquet as pq

from lerobot.datasets.lerobot_dataset import LeRobotDataset

ours_root, out = Path(sys.argv[1]), Path(sys.argv[2])
if out.exists():
    shutil.rmtree(out)
ours = LeRobotDataset("local/oft_export", root=ours_root)
features = {k: {kk: vv for kk, vv in v.items() if kk != "info"} for k, v in ours.meta.features.items()
            if k in ("observation.state", "action") or v["dtype"] == "video"}
theirs = LeRobotDataset.create("local/lerobot_written", fps=ours.fps, features=features, root=out,
                               robot_type=ours.meta.robot_type, use_videos=True)
for ep in range(ours.meta.total_episodes):
    e = ours.meta.episodes[ep]
    for idx in range(int(e["dataset_from_index"]), int(e["dataset_to_index"])):
        it = ours[idx]
        frame = {"observation.state": it["observation.state"], "action": it["action"], "task": it["task"]}
        for cam in ours.meta.video_keys:
            frame[cam] = (it[cam].permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()
        theirs.add_frame(frame)
    theirs.save_episode()
theirs.finalize()
print("LeRobot-written dataset files:")
for p in sorted(out.rglob("*")):
    if p.is_file():
        print(f"  {p.relative_to(out)}")
ours_files = sorted(str(p.relative_to(ours_root)) for p in ours_root.rglob("*") if p.is_file())
their_files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
print(f"files only in ours: {sorted(set(ours_files) - set(their_files))}")
print(f"files only in LeRobot's: {sorted(set(their_files) - set(ours_files))}")


def diff_dict(a, b, path=""):
    for k in sorted(set(a) | set(b), key=str):
        p = f"{path}.{k}" if path else str(k)
        if k not in a:
            print(f"  only LeRobot's: {p} = {json.dumps(b[k])[:200]}")
        elif k not in b:
            print(f"  only ours:      {p} = {json.dumps(a[k])[:200]}")
        elif isinstance(a[k], dict) and isinstance(b[k], dict):
            diff_dict(a[k], b[k], p)
        elif a[k] != b[k]:
            print(f"  differs:        {p}: ours={json.dumps(a[k])[:200]} LeRobot's={json.dumps(b[k])[:200]}")


print("== meta/info.json (ours vs LeRobot's)")
diff_dict(json.loads((ours_root / "meta/info.json").read_text()), json.loads((out / "meta/info.json").read_text()))


def schema_diff(name, a_path, b_path):
    a, b = pq.read_schema(a_path), pq.read_schema(b_path)
    at = {f.name: str(f.type) for f in a}
    bt = {f.name: str(f.type) for f in b}
    print(f"== {name}: {len(at)} columns ours, {len(bt)} LeRobot's")
    for k in sorted(set(at) | set(bt)):
        if at.get(k) != bt.get(k):
            print(f"  {k}: ours={at.get(k)} LeRobot's={bt.get(k)}")
    index = lambda s: json.loads(s.metadata[b"pandas"])["index_columns"] if s.metadata and b"pandas" in s.metadata else None  # noqa: E731
    print(f"  pandas index columns: ours={index(a)} LeRobot's={index(b)};"
          f" 'huggingface' schema metadata: ours={b'huggingface' in (a.metadata or {})} LeRobot's={b'huggingface' in (b.metadata or {})}")


schema_diff("data/chunk-000/file-000.parquet", ours_root / "data/chunk-000/file-000.parquet", out / "data/chunk-000/file-000.parquet")
schema_diff("meta/episodes/chunk-000/file-000.parquet", ours_root / "meta/episodes/chunk-000/file-000.parquet",
            out / "meta/episodes/chunk-000/file-000.parquet")
schema_diff("meta/tasks.parquet", ours_root / "meta/tasks.parquet", out / "meta/tasks.parquet")

print("== episode rows (non-stats columns that differ)")
a = pq.read_table(ours_root / "meta/episodes/chunk-000/file-000.parquet").to_pylist()
b = pq.read_table(out / "meta/episodes/chunk-000/file-000.parquet").to_pylist()
for ra, rb in zip(a, b):
    for k in sorted(set(ra) | set(rb)):
        if k.startswith("stats/"):
            continue
        va, vb = ra.get(k), rb.get(k)
        same = (isinstance(va, float) and isinstance(vb, float) and abs(va - vb) < 1e-6) or va == vb
        if not same:
            print(f"  episode {ra.get('episode_index')}: {k}: ours={va!r} LeRobot's={vb!r}")

print("== meta/stats.json: per-feature stat names and shapes")
sa = json.loads((ours_root / "meta/stats.json").read_text())
sb = json.loads((out / "meta/stats.json").read_text())
for feat in sorted(set(sa) | set(sb)):
    ka, kb = set(sa.get(feat, {})), set(sb.get(feat, {}))
    shapes = {k: (np.shape(sa[feat][k]), np.shape(sb[feat][k])) for k in ka & kb
              if np.shape(sa[feat][k]) != np.shape(sb[feat][k])}
    if ka != kb or shapes:
        print(f"  {feat}: only ours {sorted(ka - kb)} only LeRobot's {sorted(kb - ka)} shape differences {shapes}")
for feat in ("observation.state", "action"):
    for stat in ("min", "max", "mean", "std"):
        d = np.abs(np.array(sa[feat][stat]) - np.array(sb[feat][stat])).max()
        print(f"  {feat}.{stat}: largest |ours - LeRobot's| = {d:.2e}")
for cam in ours.meta.video_keys:
    for stat in ("min", "max", "mean", "std"):
        d = np.abs(np.array(sa[cam][stat]) - np.array(sb[cam][stat])).max()
        print(f"  {cam}.{stat}: ours={np.ravel(sa[cam][stat]).round(4).tolist()} LeRobot's={np.ravel(sb[cam][stat]).round(4).tolist()} (|d|max {d:.3f})")

print("== video streams")
for cam in ours.meta.video_keys:
    for label, root in (("ours", ours_root), ("LeRobot's", out)):
        path = next((root / "videos" / cam).rglob("*.mp4"))
        with av.open(str(path)) as c:
            s = c.streams.video[0]
            pts = [f.pts for f in c.decode(video=0)]
            print(f"  {cam} {label}: codec={s.codec_context.name} pix_fmt={s.codec_context.pix_fmt} {s.width}x{s.height}"
                  f" time_base={s.time_base} average_rate={s.average_rate} frames={len(pts)} first pts={pts[:3]} last pts={pts[-1]}")

print("== reading LeRobot's own dataset back")
back = LeRobotDataset("local/lerobot_written", root=out)
print(f"  len={len(back)} episodes={back.num_episodes}; item 50 state equal to ours: "
      f"{torch.allclose(back[50]['observation.state'], ours[50]['observation.state'])}")
print("done")
