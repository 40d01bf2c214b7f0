"""The one way the suite's node executables spin and shut down."""

from typing import Callable, Optional

import rclpy
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor


def spin_until_shutdown(node, before_spin: Optional[Callable[[], None]] = None) -> int:
    """Spin `node` until Ctrl-C or a context shutdown, then destroy it and shut rclpy down."""
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    if before_spin is not None:
        before_spin()
    try:
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return 0
