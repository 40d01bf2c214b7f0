"""ROS 2 nodes of the runtime: thin shells over oft_policy.runtime."""
