"""Topics and services only the simulator adds to the suite's shared names (plain Python).

Everything the real robot also has (joint states, cameras, command topics) comes
from `oft_policy.names`; these are the simulator's own extras.
"""

from oft_policy import names

SIM_NODE_NAME = "aloha_sim"

REWARD_TOPIC = "/sim/reward"
"""std_msgs/Float32: the task reward after every control step (0..4)."""

SUCCESS_TOPIC = "/sim/success"
"""std_msgs/Bool: True once the episode has reached reward 4 (stays True until reset)."""

EPISODE_TOPIC = "/sim/episode"
"""std_msgs/String holding JSON after every control step: {"episode", "seed", "step", "reward",
"max_reward", "success", "sim_time_ns"}; `episode` counts resets, so a reader never mixes
up two episodes (the Float32/Bool topics above are for plotting)."""

RESET_SERVICE = "/sim/reset"
"""std_srvs/Trigger: start a new episode with the node's `seed` parameter (set it first);
the response message is the new episode's JSON record (as on EPISODE_TOPIC)."""

COMMANDED_ACTION_TOPIC = names.COMMANDED_ACTION_TOPIC
"""std_msgs/Float64MultiArray, 14 values in ALOHA order: the action a demonstrator commanded
at each control step (recorded with scripted demos; the training export's action source)."""

CLOCK_TOPIC = "/clock"
