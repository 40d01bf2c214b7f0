"""What the three LeRobot scripts share, imported before lerobot: offline hub, logging, and torchvision's import.

The only torchvision 0.28 wheel PyPI offers for torch 2.13 is the CUDA build (0.28.0+cu130); its compiled
ops need libtorch_cuda.so, which the CPU torch lacks, so torchvision's import fails in _meta_registrations
("operator torchvision::nms does not exist"). Declaring the two op schemas it registers fakes for lets it
import, without its C++ ops, which LeRobotDataset does not use. Nothing else is patched.
"""
import logging
import os
import warnings


def prepare(log_level: int = logging.INFO) -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a local dataset must load without the hub
    os.environ.setdefault("HF_HOME", os.path.join(os.environ.get("WORK", "."), "hf_home"))
    logging.basicConfig(level=log_level, format="LOG %(levelname)s %(name)s: %(message)s")
    logging.captureWarnings(True)
    warnings.simplefilter("always")
    import torch

    for name in ("nms", "qnms"):
        try:
            torch.library.define(f"torchvision::{name}", "(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        except RuntimeError:  # defined already
            pass
