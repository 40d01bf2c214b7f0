"""Fixtures of oft_bringup's tests (the suite's root conftest.py keeps ROS on loopback)."""

import threading

import pytest


@pytest.fixture
def spinning_node():
    """spinning_node(name) -> an rclpy node in a context of its own, spun in a thread until the test ends."""
    import rclpy
    from rclpy.context import Context
    from rclpy.executors import SingleThreadedExecutor

    opened = []

    def make(name):
        context = Context()
        rclpy.init(args=[], context=context)
        node = rclpy.create_node(name, context=context)
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)
        thread = threading.Thread(target=executor.spin, daemon=True)
        thread.start()
        opened.append((context, node, executor, thread))
        return node

    yield make
    for context, node, executor, thread in opened:
        executor.shutdown()
        thread.join(timeout=5)
        node.destroy_node()
        context.try_shutdown()
