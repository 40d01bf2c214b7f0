"""Time stamps as integer nanoseconds, and their (sec, nanosec) split, for every message type that carries one
(rclpy's builtin_interfaces, rosbags' types, rosbag2 QoS durations). Plain Python: no ROS imports."""

NS_PER_S = 1_000_000_000


def split_ns(nanoseconds: int) -> tuple:
    """Integer nanoseconds -> (sec, nanosec) with 0 <= nanosec < 1e9, as builtin_interfaces/Time holds them."""
    return divmod(int(nanoseconds), NS_PER_S)


def seconds_to_ns(seconds: float) -> int:
    return int(round(seconds * NS_PER_S))


def stamp_to_ns(stamp) -> int:
    """Any (sec, nanosec) stamp -> integer nanoseconds (exact, unlike seconds as a float)."""
    return int(stamp.sec) * NS_PER_S + int(stamp.nanosec)
