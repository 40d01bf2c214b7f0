"""Ask a lifecycle node for transitions through its `<node>/change_state` service.

Non-blocking: the caller spins (`spin_once`) between its own checks, so a
child that dies or a Ctrl-C is noticed while a node is still configuring.
rclpy's signal handlers stay off: the caller owns SIGINT and SIGTERM.
"""

from __future__ import annotations

import os


class LifecycleClient:
    def __init__(self, node_name: str, namespace: str = ""):
        import rclpy
        from lifecycle_msgs.srv import ChangeState
        from rclpy.context import Context
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.signals import SignalHandlerOptions

        self.context = Context()
        # args=[]: bringup's own name:=value arguments are no ROS arguments.
        rclpy.init(args=[], context=self.context, signal_handler_options=SignalHandlerOptions.NO)
        self.node = rclpy.create_node(f"bringup_{os.getpid()}", context=self.context)
        prefix = "/" + namespace.strip("/") if namespace.strip("/") else ""
        self.service = f"{prefix}/{node_name}/change_state"
        self.client = self.node.create_client(ChangeState, self.service)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)

    def ready(self) -> bool:
        return self.client.service_is_ready()

    def request(self, transition_id: int):
        """A future of the ChangeState response (its `success` says whether the transition went through)."""
        from lifecycle_msgs.msg import Transition
        from lifecycle_msgs.srv import ChangeState

        return self.client.call_async(ChangeState.Request(transition=Transition(id=transition_id)))

    def spin_once(self, timeout_s: float) -> None:
        self.executor.spin_once(timeout_sec=timeout_s)

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        self.context.try_shutdown()


def configure_then_activate():
    """The transitions that bring a node from unconfigured to active, with their names."""
    from lifecycle_msgs.msg import Transition

    return (("configure", Transition.TRANSITION_CONFIGURE), ("activate", Transition.TRANSITION_ACTIVATE))
