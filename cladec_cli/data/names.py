"""Names the command line offers before TensorFlow is loaded."""

from pathlib import Path

RESIZE_MODES = ("bilinear", "nearest", "pad")
DATASET_NAMES = ("fashion_mnist", "mnist", "tiny_imagenet", "folder:PATH", "npz:PATH")
PIXEL_RANGES = ("0,1", "-1,1", "0,255")


def same_dataset(name, other):
    """Whether two dataset names name the same data: the same name, or `folder:` or `npz:` paths to the
    same place (relative ones taken from the working folder), however written."""
    if name == other:
        return True
    if not name or not other:
        return False
    (kind, _, path), (other_kind, _, other_path) = name.partition(":"), other.partition(":")
    if kind != other_kind or kind not in ("folder", "npz") or not path or not other_path:
        return False
    return Path(path).expanduser().resolve() == Path(other_path).expanduser().resolve()
