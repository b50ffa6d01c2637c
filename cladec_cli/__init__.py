"""cladec: explain layers of Keras image classifiers by decoding their activations (ClaDec)."""

import os

# TensorFlow's C++ start-up chatter would bury the tool's own messages.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

__version__ = "0.1.0"
