"""Names the command line offers before TensorFlow is loaded."""

RESIZE_MODES = ("bilinear", "nearest", "pad")
DATASET_NAMES = ("fashion_mnist", "mnist", "tiny_imagenet", "folder:PATH", "npz:PATH")
PIXEL_RANGES = ("0,1", "-1,1", "0,255")
