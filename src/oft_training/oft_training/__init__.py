"""Offline fine-tuning of OFT policies from rosbag2 recordings."""
