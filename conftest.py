"""Suite-wide pytest set-up: ROS isolation on loopback and CPU thread limits.

Every test run gets its own ROS domain and keeps DDS discovery on this host,
so concurrent runs never see each other and no traffic leaves loopback.
"""

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent

os.environ["ROS_DOMAIN_ID"] = os.environ.get("OFT_TEST_DOMAIN_ID", str(os.getpid() % 100 + 1))
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"  # Jazzy and later
os.environ["ROS_LOCALHOST_ONLY"] = "1"  # Humble
os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def ros_env() -> dict:
    """Environment for child processes: same domain, loopback discovery."""
    return dict(os.environ)
