"""Service calls with a deadline, for callers that spin their own node (scripts, tests, the closed loop)."""

from __future__ import annotations

import time
from typing import Callable, Sequence


def call_with_deadline(client, request, spin: Callable[[float], None], timeout_s: float):
    """Wait for the service and its answer (spinning with `spin`), or TimeoutError naming the service."""
    deadline = time.monotonic() + timeout_s
    while not client.service_is_ready():
        if time.monotonic() > deadline:
            raise TimeoutError(f"service {client.srv_name} not available within {timeout_s} s")
        spin(0.05)
    future = client.call_async(request)
    while not future.done():
        if time.monotonic() > deadline:
            raise TimeoutError(f"no answer from {client.srv_name} within {timeout_s} s")
        spin(0.02)
    return future.result()


def set_up_xs_followers(node, spin: Callable[[float], None], robots: Sequence[str], timeout_s: float = 10.0) -> None:
    """What ALOHA's scripts do before teleoperation: the follower set-up plan (oft_policy.runtime.driver_setup),
    call by call; RuntimeError with the failed step when a driver does not take it."""
    from interbotix_xs_msgs.srv import OperatingModes, RobotInfo, TorqueEnable

    from oft_policy import names
    from oft_policy.runtime.driver_setup import DriverSetup, follower_setup_plan

    kinds = {"set_operating_modes": OperatingModes, "torque_enable": TorqueEnable, "get_robot_info": RobotInfo}
    setup = DriverSetup(follower_setup_plan(robots), timeout_s)
    while not setup.done:
        call = setup.current
        client = node.create_client(kinds[call.service], f"/{call.robot}/{names.INTERBOTIX_SERVICES[call.service]}")
        try:
            response = call_with_deadline(client, kinds[call.service].Request(**call.request), spin, timeout_s)
        finally:
            node.destroy_client(client)
        setup.answered({k: getattr(response, k) for k in response.get_fields_and_field_types()}, time.monotonic())
        if setup.failure:
            raise RuntimeError(setup.status())
