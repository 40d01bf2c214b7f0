"""Setting up the ALOHA follower drivers before the first command, as ALOHA's own scripts do.

The interbotix_xs_sdk driver interprets a command by the joint's operating mode, and
ALOHA's follower configuration starts the gripper in `linear_position` (metres of finger
travel). The executor commands joint radians, so before it sends anything it sets, per
follower: group `arm` to `position`, single `gripper` to `current_based_position`, torque on
for both, and then reads the modes back with `get_robot_info`. Plain Python: the node
makes the service calls this plan lists and feeds the answers back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

from oft_policy import names

ARM_MODE = "position"
GRIPPER_MODE = "current_based_position"
PROFILE = {"profile_type": "velocity", "profile_velocity": 0, "profile_acceleration": 0}


@dataclass(frozen=True)
class SetupCall:
    """One service call of the set-up: which robot, which service, the request fields, what the answer must say."""

    robot: str
    service: str  # a key of names.INTERBOTIX_SERVICES
    request: Dict[str, object]
    expect: Dict[str, object] = field(default_factory=dict)

    def describe(self) -> str:
        return f"/{self.robot}/{names.INTERBOTIX_SERVICES[self.service]} {self.request}"


def follower_setup_plan(robots: Sequence[str]) -> List[SetupCall]:
    """Modes, torque, then the confirmation, for every follower."""
    plan: List[SetupCall] = []
    arm = {"cmd_type": "group", "name": names.INTERBOTIX_ARM_GROUP}
    gripper = {"cmd_type": "single", "name": names.GRIPPER_JOINT}
    for robot in robots:
        plan += [
            SetupCall(robot, "set_operating_modes", {**arm, "mode": ARM_MODE, **PROFILE}),
            SetupCall(robot, "set_operating_modes", {**gripper, "mode": GRIPPER_MODE, **PROFILE}),
            SetupCall(robot, "torque_enable", {**arm, "enable": True}),
            SetupCall(robot, "torque_enable", {**gripper, "enable": True}),
            SetupCall(robot, "get_robot_info", arm, expect={"mode": ARM_MODE}),
            SetupCall(robot, "get_robot_info", gripper, expect={"mode": GRIPPER_MODE}),
        ]
    return plan


class DriverSetup:
    """Walks a plan: the next call to make, each answer checked, a deadline per call.

    `failure` holds why the set-up failed (a service absent, an answer that contradicts
    the plan); `done` once every call was answered as expected."""

    def __init__(self, plan: Sequence[SetupCall], call_timeout_s: float):
        if not plan:
            raise ValueError("an empty driver set-up plan")
        if call_timeout_s <= 0:
            raise ValueError("call_timeout_s must be positive")
        self.plan = list(plan)
        self.call_timeout_s = call_timeout_s
        self.restart(0.0)

    def restart(self, now_s: float) -> None:
        self.index = 0
        self.failure: Optional[str] = None
        self._step_started_s = now_s

    def skip(self) -> None:
        """The driver was set up by other means (trusted as is)."""
        self.index, self.failure = len(self.plan), None

    @property
    def done(self) -> bool:
        return self.failure is None and self.index >= len(self.plan)

    @property
    def current(self) -> Optional[SetupCall]:
        return None if self.done or self.failure else self.plan[self.index]

    def status(self) -> str:
        if self.failure:
            return f"driver set-up failed: {self.failure}"
        if self.done:
            return "driver set up: arm in position, gripper in current_based_position, torque on"
        return f"setting up the driver: {self.current.describe()}"

    def check_deadline(self, now_s: float, what: str) -> bool:
        """False (and failed) once the current call waited longer than its timeout for `what`."""
        if self.current is None or now_s - self._step_started_s <= self.call_timeout_s:
            return True
        self.failure = f"{self.current.describe()}: {what} after {self.call_timeout_s:g} s; nothing is sent to the arms"
        return False

    def answered(self, response: Dict[str, object], now_s: float) -> None:
        """The current call's answer (its fields); checked against what the plan expects."""
        call = self.current
        if call is None:
            raise RuntimeError("no set-up call is pending")
        wrong = {k: response.get(k) for k, v in call.expect.items() if response.get(k) != v}
        if wrong:
            self.failure = (f"{call.describe()} answered {wrong}, expected {call.expect}: the driver did not take "
                            "the operating modes; nothing is sent to the arms")
            return
        self.index += 1
        self._step_started_s = now_s
