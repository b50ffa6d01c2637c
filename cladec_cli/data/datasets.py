"""The Dataset type and `load_dataset`, which turns a dataset name into preprocessed splits."""

from dataclasses import dataclass

import numpy as np

from cladec_cli import memory
from cladec_cli.data import readers
from cladec_cli.data.names import DATASET_NAMES, PIXEL_RANGES, RESIZE_MODES
from cladec_cli.data.preprocess import fit_images, pixel_scale, stratified_indices, with_channel_axis
from cladec_cli.data.split import Split
from cladec_cli.errors import UsageError


DEFAULT_SHAPES = {"fashion_mnist": (32, 32, 1), "mnist": (32, 32, 1), "tiny_imagenet": (64, 64, 3)}


@dataclass
class Dataset:
    """Preprocessed train and test splits with class names and the preprocessing that made them.

    The splits hold images in [0, 1]; `pixel_range` is the range the classifier takes them in, which
    the models apply themselves (see `cladec_cli.pixels`). `test_fraction` chose the test split only
    where `draws_test_split(name)`; other data come with their own.
    """

    name: str
    train: Split
    test: Split
    class_names: list
    resize: str
    limit: int = None
    origin: str = ""
    split_seed: int = 0
    test_fraction: float = 0.2
    pixel_range: str = "0,1"
    native_shape: tuple = None
    hold_bytes: int = None

    @property
    def image_shape(self):
        return tuple(self.train.image_shape)

    @property
    def n_classes(self):
        return len(self.class_names)

    def provenance(self):
        """What a model trained on this data records about it."""
        return {
            "dataset": self.name,
            "resize": self.resize,
            "image_shape": list(self.image_shape),
            "limit": self.limit or 0,
            "split_seed": self.split_seed,
            "test_fraction": self.test_fraction,
            "pixel_range": self.pixel_range,
            "class_names": list(self.class_names),
        }


def read_raw(name, data_dir=None, test_fraction=0.2, split_seed=0, download=True):
    """Dispatch a dataset name to its reader."""
    if name in ("fashion_mnist", "mnist"):
        return readers.read_mnist_like(name, data_dir, download)
    if name == "tiny_imagenet":
        return readers.read_tiny_imagenet(data_dir)
    kind, _, path = name.partition(":")
    if kind == "folder" and path:
        return readers.read_folder(path, test_fraction, split_seed)
    if kind == "npz" and path:
        return readers.read_npz(path)
    raise UsageError(f"unknown dataset {name!r}; choose one of {', '.join(DATASET_NAMES)}")


def draws_test_split(name):
    """Whether the dataset `name` draws its test split by a test fraction (an image folder without train/
    and test/) rather than coming with its own."""
    kind, _, path = name.partition(":")
    return kind == "folder" and bool(path) and not readers.folder_has_split(path)


def fitted_bytes(n_images, image_shape):
    """Bytes that `n_images` images fitted to `image_shape` take as float32."""
    return int(n_images) * int(np.prod(image_shape)) * 4


def load_dataset(name, data_dir=None, resize="bilinear", limit=None, image_shape=None,
                 split_seed=0, test_fraction=0.2, download=True, pixel_range="0,1", hold_bytes=None):
    """Read a dataset and preprocess it to `image_shape` (H, W, C), float32 in [0, 1].

    Array datasets are held in memory, fitted to `image_shape` when both splits then take at most
    `hold_bytes` (default `memory.hold_limit()`: half the memory available), else as they come, each
    batch fitted when it is read (a model with a large input on small images: 60,000 Fashion-MNIST
    images at 224x224x3 would take 36 GB fitted, 47 MB as they come); either way every batch holds the
    same values. Image folders stay on disk and are decoded batch by batch.
    `limit` keeps a class-stratified subset of at most that many images of each split. `split_seed`
    chooses that subset and, for image folders without train/ and test/, which `test_fraction` of
    each class is held out; it is not a training seed, so that every model trained on the same data
    sees the same test images. `pixel_range` records the range the classifier takes the images in.
    """
    if resize not in RESIZE_MODES:
        raise UsageError(f"unknown resize mode {resize!r}; choose one of {', '.join(RESIZE_MODES)}")
    if pixel_range not in PIXEL_RANGES:
        raise UsageError(f"unknown pixel range {pixel_range!r}; choose one of {', '.join(PIXEL_RANGES)}")
    raw = read_raw(name, data_dir, test_fraction, split_seed, download)
    shape = tuple(int(v) for v in (image_shape or DEFAULT_SHAPES.get(name) or raw.native_shape))
    splits = []
    arrays = [part.images for part in (raw.train, raw.test) if part.images is not None]
    scale = pixel_scale(*arrays) if arrays else None
    kept = [stratified_indices(part.labels, limit, split_seed) for part in (raw.train, raw.test)]
    hold_bytes = memory.hold_limit() if hold_bytes is None else int(hold_bytes)
    held = fitted_bytes(sum(map(len, kept)), shape) <= hold_bytes
    for part, keep in zip((raw.train, raw.test), kept):
        if part.images is not None and held:
            images = fit_images(np.asarray(part.images)[keep], shape, resize, scale=scale)
            splits.append(Split(part.labels[keep], shape, images=images, resize=resize))
        elif part.images is not None:
            unfitted = with_channel_axis(np.asarray(part.images)[keep])
            splits.append(Split(part.labels[keep], shape, resize=resize, unfitted=unfitted, scale=scale))
            splits[-1].fitter()(unfitted[:1])  # images that cannot be fitted are refused now, not at a batch
        else:
            splits.append(Split(part.labels[keep], shape, paths=part.paths[keep], resize=resize))
    return Dataset(name, splits[0], splits[1], list(raw.class_names), resize, limit, raw.origin,
                   int(split_seed), float(test_fraction), pixel_range, tuple(int(v) for v in raw.native_shape),
                   hold_bytes)


# How images change channels to fit a model (`preprocess.convert_channels`), in words.
CHANNEL_CHANGES = {(1, 3): "gray copied to 3 channels", (3, 1): "turned to gray (luma)",
                   (4, 1): "turned to gray (luma)", (4, 3): "RGBA turned to RGB (alpha dropped)"}


def fitting_note(dataset):
    """One line saying how the images were changed to fit a model's input, or None: where the shape
    differs from the images' own and from the size the dataset is standardly used at (Fashion-MNIST and
    MNIST at 32x32, as in the paper). An image folder's own shape is that of its first training file."""
    native, target = dataset.native_shape, dataset.image_shape
    if native is None or tuple(native) == target or target == DEFAULT_SHAPES.get(dataset.name):
        return None
    changes = []
    if tuple(native[:2]) != target[:2]:
        verb = "padded" if dataset.resize == "pad" else f"resized ({dataset.resize})"
        changes.append(f"{verb} from {native[0]}x{native[1]} to {target[0]}x{target[1]}")
    if native[2] != target[2]:
        changes.append(CHANNEL_CHANGES.get((native[2], target[2]), f"{native[2]} channels to {target[2]}"))
    shape = "x".join(map(str, native))
    source = (f"{dataset.name} image files (the first is {shape})" if dataset.name.startswith("folder:")
              else f"{dataset.name} images ({shape})")
    return f"note: the {source} are {' and '.join(changes)} to fit the model's input {'x'.join(map(str, target))}"


def holding_note(dataset):
    """One line saying that the images are fitted to the model batch by batch, or None when they are held
    fitted (or stream from files)."""
    if not dataset.train.fitted_per_batch:
        return None
    n = len(dataset.train) + len(dataset.test)
    return (f"note: the {n:,} {dataset.name} images would take {memory.gigabytes(fitted_bytes(n, dataset.image_shape))} "
            f"fitted to {'x'.join(map(str, dataset.image_shape))}, more than the "
            f"{memory.gigabytes(dataset.hold_bytes)} that data held whole may take here (half the memory available), "
            "so they are held as they come and fitted batch by batch")
