"""Shared fixtures of oft_training's tests: small exported datasets built from synthetic bags."""

import pytest

from oft_training import synthetic
from oft_training.exporter import ExportOptions, export

CAMERAS = ("cam_high",)


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory):
    """4 one-second episodes, one 32x32 camera, 50 fps (about 200 frames)."""
    root = tmp_path_factory.mktemp("tiny_dataset")
    bags = [synthetic.write_bag(root / f"bag_{i}", seconds=1.0 + 0.1 * i, cameras=CAMERAS) for i in range(4)]
    out = root / "dataset"
    options = ExportOptions("fold the towel", cameras=CAMERAS, min_frames=10, calibration=synthetic.CALIBRATION)
    export(bags, out, options, progress=False)
    return out
