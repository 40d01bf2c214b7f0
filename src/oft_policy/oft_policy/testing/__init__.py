"""Stand-ins for the robot and fixtures, for the simulator, tests and benchmarks (not for a real arm)."""
