"""Array preprocessing: scaling to [0, 1], channel conversion, resizing, stratified subsets.

Arrays and image files go through the same channel conversion (`convert_channels`) and resizing
(`resize_images`), so one image gives the same input whichever way it reaches the model."""

import numpy as np
from keras import ops

from cladec_cli.errors import DataError, UsageError, option

from cladec_cli.data.names import RESIZE_MODES  # noqa: F401  (re-exported)


def to_unit_float(images):
    """uint8 images (or floats in [0, 255]) -> float32 in [0, 1] with a channel axis."""
    x = np.asarray(images)
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4:
        raise DataError(f"images must be N x H x W or N x H x W x C arrays, got shape {x.shape}")
    if x.dtype == np.uint8 or (x.size and float(x.max()) > 1.0):
        return x.astype(np.float32) / 255.0
    return x.astype(np.float32)


# ITU-R BT.601 luma, as Pillow's "L" mode and most image libraries convert RGB to gray.
LUMA_WEIGHTS = (0.299, 0.587, 0.114)


def rgb_to_gray(x):
    """RGB (or RGBA, alpha ignored) -> one channel of ITU-R 601 luma; works on arrays and tensors."""
    red, green, blue = LUMA_WEIGHTS
    return x[..., 0:1] * red + x[..., 1:2] * green + x[..., 2:3] * blue


def convert_channels(x, channels):
    """Gray -> RGB by repetition, RGB -> gray as luma (`rgb_to_gray`); works on arrays and tensors."""
    have = x.shape[-1]
    if have == channels:
        return x
    if have == 1 and channels == 3:
        return ops.repeat(x, 3, axis=-1)
    if have in (3, 4) and channels == 1:
        return rgb_to_gray(x)
    if have == 4 and channels == 3:
        return x[..., :3]
    raise DataError(f"cannot convert images with {have} channels to {channels}")


def resize_images(x, size, mode="bilinear"):
    """Resize a batch (N x H x W x C, tensor or array) to `size` = (height, width)."""
    if mode not in RESIZE_MODES:
        raise UsageError(f"unknown resize mode {mode!r}; choose one of {', '.join(RESIZE_MODES)}")
    height, width = int(size[0]), int(size[1])
    if tuple(x.shape[1:3]) == (height, width):
        return x
    if mode == "pad":
        if (x.shape[1] or 0) > height or (x.shape[2] or 0) > width:
            raise DataError(
                f"{option('resize')} pad cannot shrink {x.shape[1]}x{x.shape[2]} images to {height}x{width}; "
                "use bilinear or nearest"
            )
        return ops.image.pad_images(x, target_height=height, target_width=width,
                                    top_padding=(height - x.shape[1]) // 2, left_padding=(width - x.shape[2]) // 2)
    return ops.image.resize(x, (height, width), interpolation=mode)


def fit_images(images, image_shape, mode="bilinear", chunk=8192):
    """Scale, convert channels and resize an image array to `image_shape` = (H, W, C), float32 [0, 1]."""
    x = to_unit_float(images)
    out = np.empty((len(x),) + tuple(image_shape), dtype=np.float32)
    for start in range(0, len(x), chunk):
        part = convert_channels(x[start:start + chunk], image_shape[2])
        out[start:start + chunk] = ops.convert_to_numpy(resize_images(part, image_shape[:2], mode))
    return out


def stratified_indices(labels, limit, seed=0):
    """Sorted indices of a class-stratified random subset of at most `limit` items."""
    labels = np.asarray(labels)
    if limit is None or limit >= len(labels):
        return np.arange(len(labels))
    if limit < 1:
        raise UsageError(f"{option('limit')} must be at least 1, got {limit}")
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(labels, return_counts=True)
    share = counts * limit / len(labels)
    quota = np.floor(share).astype(int)
    remainder = limit - quota.sum()
    quota[np.argsort(quota - share)[:remainder]] += 1
    chosen = [rng.permutation(np.flatnonzero(labels == c))[:q] for c, q in zip(classes, quota)]
    return np.sort(np.concatenate(chosen))
