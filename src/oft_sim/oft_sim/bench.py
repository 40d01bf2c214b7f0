"""`bench_sim`: physics step and camera render times of the simulator, side by side in one run.

Compares rendering the three ALOHA cameras with gym-aloha's scene as shipped
(shadows on, 4x multisampling) against the simulator's settings (no shadows,
no multisampling), at the same resolution, and reports the ratio.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

from oft_sim.simulator import SCENE_CAMERAS, AlohaSim
from oft_sim.tasks import TASKS


def _percentiles_ms(samples) -> dict:
    values = np.asarray(samples) * 1e3
    return {"p50": round(float(np.percentile(values, 50)), 3), "p99": round(float(np.percentile(values, 99)), 3)}


def _time(fn, repeats: int) -> list:
    fn()  # warm-up (first render creates the GL context)
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return samples


def run(height: int, width: int, repeats: int, task: str) -> dict:
    fast = AlohaSim(task, image_size=(height, width))
    fast.reset(0)
    hold = fast.joint_positions()
    step = _time(lambda: fast.step(hold), repeats * 10)
    fast_render = _time(fast.render, repeats)

    shipped = AlohaSim(task, image_size=(height, width))
    shipped.physics.model.vis.quality.offsamples = 4  # restore the scene's own setting before any render
    shipped.reset(0)

    def render_as_shipped():
        for camera in SCENE_CAMERAS.values():
            shipped.physics.render(height=height, width=width, camera_id=camera)

    shipped_render = _time(render_as_shipped, repeats)
    return {
        "task": task,
        "resolution": [height, width],
        "physics_step_ms": _percentiles_ms(step),
        "render_3_cameras_ms": {"as_shipped": _percentiles_ms(shipped_render), "fast": _percentiles_ms(fast_render)},
        "render_speedup_p50": round(float(np.median(shipped_render) / np.median(fast_render)), 2),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="bench_sim", description=__doc__)
    parser.add_argument("--task", default="transfer_cube", choices=sorted(TASKS))
    parser.add_argument("--resolutions", nargs="+", default=["480x640", "96x128"], help="HEIGHTxWIDTH ...")
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--json", help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    results = []
    for text in args.resolutions:
        height, width = (int(v) for v in text.lower().split("x"))
        result = run(height, width, args.repeats, args.task)
        results.append(result)
        shipped, fast = result["render_3_cameras_ms"]["as_shipped"], result["render_3_cameras_ms"]["fast"]
        print(
            f"{height}x{width}: physics step p50 {result['physics_step_ms']['p50']} ms; "
            f"3 cameras as shipped p50 {shipped['p50']} ms, fast p50 {fast['p50']} ms "
            f"-> {result['render_speedup_p50']}x"
        )
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"bench_sim": results}, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
