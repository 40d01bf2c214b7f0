"""Plain-Python cores of the runtime (no ROS imports): chunk validation, the
action queue, safety limits, the drift monitor, latency statistics and the
executor's per-tick logic. The nodes in oft_policy.nodes only translate
messages and parameters to and from these classes."""

from oft_policy.runtime.action_queue import CHUNK_POLICIES, ActionQueue, QueuedAction
from oft_policy.runtime.chunks import Chunk, ChunkRejected, ChunkValidator, PublishedChunks, chunk_start, start_lead_limit
from oft_policy.runtime.drift import (
    ActionDriftMonitor, DriftLevel, DriftSample, drift_scale_from_stats, watched_joint_mask,
)
from oft_policy.runtime.executor import ExecutorCore, ExecutorState, TickResult
from oft_policy.runtime.latency import RollingStats, StageLatency, TickMonitor
from oft_policy.runtime.limits import JointLimits, LimitsError, SafetyFilter

__all__ = [
    "CHUNK_POLICIES", "ActionQueue", "QueuedAction",
    "Chunk", "ChunkRejected", "ChunkValidator", "PublishedChunks", "chunk_start", "start_lead_limit",
    "ActionDriftMonitor", "DriftLevel", "DriftSample", "drift_scale_from_stats", "watched_joint_mask",
    "ExecutorCore", "ExecutorState", "TickResult",
    "RollingStats", "StageLatency", "TickMonitor",
    "JointLimits", "LimitsError", "SafetyFilter",
]
