"""Bringup of the OFT suite: launch files, parameter files, and tools that check them without `launch`."""
