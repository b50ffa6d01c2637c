"""Names the command line offers before TensorFlow is loaded."""

RESIZE_MODES = ("bilinear", "nearest", "pad")
DATASET_NAMES = ("fashion_mnist", "mnist", "tiny_imagenet", "folder:PATH", "npz:PATH")
