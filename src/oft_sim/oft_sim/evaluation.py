"""What `evaluate` measures, as plain Python: episode outcomes, latencies, jitter, drift,
and the artifacts it writes (JSON summary, drift plot, rollout video).

Image-to-command latency is wall-clock time as the evaluator sees the topics: from
the arrival of the camera image an action chunk was computed from (the chunk's
header stamp is that observation's sim time) to the arrival of the first arm
command after the chunk itself arrived. Under strict lockstep that command is the
chunk's row 0, sent once the simulator has taken the one step the chunk's
inference stands for. Each episode's first chunk is left out: its image waits at
the reset while the executor and the policy start.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np


def percentiles(values: Sequence[float], keys=("p50", "p95", "p99")) -> Dict[str, Optional[float]]:
    """{"p50": .., ...} rounded to 3 decimals; None for every key when there are no values."""
    data = np.asarray(list(values), dtype=np.float64)
    if data.size == 0:
        return {k: None for k in keys}
    return {k: round(float(np.percentile(data, float(k[1:]))), 3) for k in keys}


class ImageToCommandLatency:
    """Pairs observation images, the chunks computed from them, and the commands that follow."""

    def __init__(self, keep_images: int = 2000):
        self._image_wall: Dict[int, float] = {}
        self._keep = keep_images
        self._waiting: List[float] = []  # image arrival times of chunks not yet followed by a command
        self.samples_ms: List[float] = []
        self.unmatched_chunks = 0

    def on_image(self, stamp_ns: int, wall_s: float) -> None:
        self._image_wall.setdefault(stamp_ns, wall_s)
        if len(self._image_wall) > self._keep:
            for old in sorted(self._image_wall)[: len(self._image_wall) - self._keep]:
                del self._image_wall[old]

    def on_chunk(self, observation_stamp_ns: int) -> None:
        image_wall = self._image_wall.get(observation_stamp_ns)
        if image_wall is None:
            self.unmatched_chunks += 1
        else:
            self._waiting.append(image_wall)

    def clear_pending(self) -> None:
        """A new episode: chunks of the previous one are no longer followed by their commands."""
        self._waiting = []

    def on_command(self, wall_s: float) -> None:
        for image_wall in self._waiting:
            self.samples_ms.append((wall_s - image_wall) * 1e3)
        self._waiting = []
        self.last_command_wall = wall_s


class ChunkSeams:
    """How smoothly consecutive chunks join, as the executor's queue runs them.

    Each episode's chunks are replayed through the executor's own `ActionQueue` (same merge
    policy) on the control-tick grid, from the first chunk's start to the episode's last
    tick: the action each tick takes, and which chunk it came from. A seam is a tick whose
    action comes from a newer chunk than the tick before; its jump is the largest change of
    any arm joint (milliradians; grippers left out) across it. The same change between ticks of
    one chunk is a within-chunk step. Under strict lockstep the grid is exactly the ticks the
    executor ran; the safety filter's speed limit comes after this and is not counted.
    """

    def __init__(self, joint_names: Sequence[str], period_s: float, policy: str = "replace", blend_weight: float = 0.5):
        from oft_policy.names import is_gripper

        self.arm_columns = [i for i, name in enumerate(joint_names) if not is_gripper(name)]
        self.period_s = period_s
        self.policy, self.blend_weight = policy, blend_weight
        self.seam_jumps: List[float] = []
        self.within_steps: List[float] = []

    def add_episode(self, chunks: Sequence, last_tick_s: Optional[float] = None) -> None:
        from oft_policy.runtime.action_queue import ActionQueue

        chunks = sorted(chunks, key=lambda chunk: chunk.sequence)
        if not chunks:
            return
        queue = ActionQueue(self.period_s, self.policy, self.blend_weight)
        end = last_tick_s if last_tick_s is not None else max(float(c.due_times()[-1]) for c in chunks)
        pending, previous = list(chunks), None
        for k in range(int(np.floor((end - chunks[0].start_time_s) / self.period_s + 1e-6)) + 1):
            tick = chunks[0].start_time_s + k * self.period_s
            while pending and pending[0].stamp_s < tick - 0.5 * self.period_s:  # accepted before this tick
                queue.insert(pending.pop(0))
            item = queue.pop_due(tick)
            if item is not None and previous is not None:
                change = 1e3 * float(np.max(np.abs(item.action[self.arm_columns] - previous.action[self.arm_columns])))
                (self.seam_jumps if item.sequence != previous.sequence else self.within_steps).append(change)
            previous = item

    def summary(self) -> dict:
        seam, step = percentiles(self.seam_jumps, ("p50", "p99")), percentiles(self.within_steps, ("p50", "p99"))
        ratio = None if not seam["p99"] or not step["p99"] else round(seam["p99"] / step["p99"], 2)
        return {"seams": len(self.seam_jumps), "seam_jump_mrad": seam, "within_chunk_step_mrad": step,
                "seam_p99_over_step_p99": ratio}


@dataclass
class EpisodeOutcome:
    seed: int
    success: bool
    max_reward: int
    steps: int
    wall_s: float
    commands: int = 0  # arm commands the evaluator saw during the episode
    chunks: int = 0
    halted: str = ""  # the executor's reason when its drift monitor halted the episode
    image_to_command_max_ms: float = 0.0  # the episode's slowest chunk (0: none measured)
    target: str = ""  # what the instruction named (tasks that choose among objects)
    grasped: str = ""  # the object the grasp lifted first ("" none; tasks that choose)
    instruction: str = ""


@dataclass
class DriftTrace:
    """DriftReport trend over one episode (sim seconds since the episode started)."""

    seed: int
    time_s: List[float] = field(default_factory=list)
    trend: List[float] = field(default_factory=list)
    warn_threshold: Optional[float] = None
    critical_threshold: Optional[float] = None

    def add(self, time_s: float, trend: float, warn: float, critical: float) -> None:
        self.time_s.append(time_s)
        self.trend.append(trend)
        self.warn_threshold, self.critical_threshold = warn, critical


def summarize(
    outcomes: Sequence[EpisodeOutcome],
    first_seed: int,
    latency_ms: Sequence[float],
    period_error_ms: Sequence[float],
    drift: Sequence[DriftTrace],
    extra: Optional[dict] = None,
) -> dict:
    """The evaluation JSON: the headline keys first, then details."""
    peak = max((max(t.trend) for t in drift if t.trend), default=None)
    result = {
        "success_rate": (sum(o.success for o in outcomes) / len(outcomes)) if outcomes else 0.0,
        "episodes": len(outcomes),
        "first_seed": first_seed,
        "image_to_command_ms": percentiles(latency_ms),
        "executor_period_error_ms": percentiles(period_error_ms, keys=("p50", "p99")),
        "peak_drift": None if peak is None else round(float(peak), 4),
        "successes": sum(o.success for o in outcomes),
        "per_episode": [asdict(o) for o in outcomes],
    }
    named = [o for o in outcomes if o.target]
    if named:
        # Of the episodes whose grasp lifted a cube, the share that lifted the one the instruction named.
        grasps = [o for o in named if o.grasped]
        result["named_object_rate"] = (sum(o.grasped == o.target for o in grasps) / len(grasps)) if grasps else 0.0
        result["episodes_with_a_grasp"] = len(grasps)
    result.update(extra or {})
    return result


def write_json(result: dict, path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(result, indent=2))
    tmp.replace(path)


def plot_drift(traces: Sequence[DriftTrace], path) -> Path:
    """PNG of the drift trend per episode with the WARN / CRITICAL thresholds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(8, 4), dpi=100)
    for trace in traces:
        axes.plot(trace.time_s, trace.trend, linewidth=1, label=f"seed {trace.seed}")
    thresholds = next((t for t in traces if t.warn_threshold is not None), None)
    if thresholds is not None:
        axes.axhline(thresholds.warn_threshold, color="orange", linestyle="--", label="WARN")
        axes.axhline(thresholds.critical_threshold, color="red", linestyle="--", label="CRITICAL")
    axes.set_xlabel("sim time in episode (s)")
    axes.set_ylabel("drift trend (normalized |commanded - measured|)")
    axes.set_title("Executor drift monitor, closed loop in aloha_sim")
    if len(traces) <= 10:
        axes.legend(fontsize=7, loc="upper right")
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)
    return path


def rollout_frames(frames: Dict[int, Dict[str, np.ndarray]], labels: Dict[int, tuple], cameras: Sequence[str],
                   scale: int = 3) -> list:
    """One picture per sim step: the cameras side by side, enlarged `scale` times (nearest), with the
    step and reward written on top; steps missing a camera are left out."""
    from PIL import Image, ImageDraw

    pictures, last_label = [], (0, 0.0)
    for stamp in sorted(frames):
        views = frames[stamp]
        if not all(camera in views for camera in cameras):
            continue
        row = np.concatenate([views[camera] for camera in cameras], axis=1)
        big = np.repeat(np.repeat(row, scale, axis=0), scale, axis=1)
        picture = Image.fromarray(np.ascontiguousarray(big))
        last_label = labels.get(stamp, last_label)
        step, reward = last_label
        draw = ImageDraw.Draw(picture)
        draw.rectangle([0, 0, picture.width, 18], fill=(0, 0, 0))
        draw.text((6, 3), f"step {step:4d}   reward {reward:.0f} / 4   {'   '.join(cameras)}", fill=(255, 255, 255))
        pictures.append(np.asarray(picture))
    return pictures


def write_video(frames: Sequence[np.ndarray], path, fps: int = 50) -> Path:
    """H.264 mp4 of uint8 RGB frames (sizes rounded down to even, as yuv420p needs)."""
    import av

    if not frames:
        raise ValueError("no frames to write")
    height, width = (frames[0].shape[0] // 2) * 2, (frames[0].shape[1] // 2) * 2
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for frame in frames:
            image = np.ascontiguousarray(frame[:height, :width, :3])
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path
