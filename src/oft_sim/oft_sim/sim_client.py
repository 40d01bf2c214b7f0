"""Client side of the simulator's ROS interface: reset by seed, follow reward, success and clock.

Used by `scripted_demos`, `evaluate` and the tests, so episodes are driven through
ROS exactly as an operator's script would, never through the simulator's Python objects.
"""

from __future__ import annotations

import json
import time
from typing import Callable, Optional

from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
from rcl_interfaces.srv import SetParameters
from rclpy.node import Node
from rosgraph_msgs.msg import Clock
from std_msgs.msg import String
from std_srvs.srv import Trigger

from oft_policy.nodes.conversions import time_to_nanoseconds
from oft_policy.nodes.services import call_with_deadline
from oft_policy.qos import STATUS_QOS
from oft_sim import interface


class SimClient:
    """Owns subscriptions and service clients on `node`; the caller spins the node
    (pass `spin`, a function spinning it for up to the given seconds)."""

    def __init__(self, node: Node, spin: Callable[[float], None], sim_node_name: str = interface.SIM_NODE_NAME):
        self.node = node
        self.spin = spin
        self.episode: Optional[dict] = None  # newest record of the current episode
        self.sim_time_ns: Optional[int] = None
        self._episode_id: Optional[int] = None
        self._reset = node.create_client(Trigger, interface.RESET_SERVICE)
        self._set_parameters = node.create_client(SetParameters, f"/{sim_node_name}/set_parameters")
        node.create_subscription(String, interface.EPISODE_TOPIC, self._on_episode, STATUS_QOS)
        node.create_subscription(Clock, interface.CLOCK_TOPIC, self._on_clock, 10)

    def wait_until_ready(self, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        for client in (self._reset, self._set_parameters):
            while not client.service_is_ready():
                if time.monotonic() > deadline:
                    raise TimeoutError(f"simulator service {client.srv_name} not available after {timeout_s} s")
                self.spin(0.1)

    @property
    def success(self) -> bool:
        return bool(self.episode and self.episode["success"])

    @property
    def steps(self) -> int:
        return int(self.episode["step"]) if self.episode else 0

    def reset(self, seed: int, target: str = "", timeout_s: float = 10.0) -> dict:
        """New episode with this seed (and named `target`, "" for the seed's default); returns its first
        record (see interface.EPISODE_TOPIC)."""
        request = SetParameters.Request()
        request.parameters = [
            Parameter(name="seed", value=ParameterValue(type=ParameterType.PARAMETER_INTEGER, integer_value=int(seed))),
            Parameter(name="target", value=ParameterValue(type=ParameterType.PARAMETER_STRING, string_value=target)),
        ]
        result = self._call(self._set_parameters, request, timeout_s)
        if not all(r.successful for r in result.results):
            raise RuntimeError(f"simulator refused seed {seed}: {[r.reason for r in result.results]}")
        response = self._call(self._reset, Trigger.Request(), timeout_s)
        if not response.success:
            raise RuntimeError(f"simulator reset failed: {response.message}")
        self.episode = json.loads(response.message)
        self._episode_id = self.episode["episode"]
        return self.episode

    def _call(self, client, request, timeout_s: float):
        return call_with_deadline(client, request, self.spin, timeout_s)

    def _on_episode(self, msg: String) -> None:
        record = json.loads(msg.data)
        if self._episode_id is not None and record["episode"] != self._episode_id:
            return  # a late message from an earlier episode
        if self.episode is None or record["step"] >= self.episode["step"]:
            self.episode = record

    def _on_clock(self, msg: Clock) -> None:
        self.sim_time_ns = time_to_nanoseconds(msg.clock)
