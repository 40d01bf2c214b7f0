"""OFT policy library (model, normalizer, runtime cores) and its ROS 2 nodes."""
