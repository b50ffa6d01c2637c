"""Array preprocessing: scaling to [0, 1], channel conversion, resizing, stratified subsets.

Arrays and image files go through the same channel conversion (`convert_channels`) and resizing
(`resize_images`), so one image gives the same input whichever way it reaches the model."""

import keras
import numpy as np
from keras import ops

from cladec_cli.errors import DataError, UsageError, option

from cladec_cli.data.names import RESIZE_MODES  # noqa: F401  (re-exported)


def _first_bad_image(x, is_bad, chunk=1024):
    """(index, value) of the first image of `x` with a pixel for which `is_bad` holds, chunk by chunk, so
    that the mask never takes more memory than `chunk` images."""
    for start in range(0, len(x), chunk):
        mask = is_bad(x[start:start + chunk])
        if mask.any():
            first = np.argwhere(mask)[0]
            return start + int(first[0]), x[start:start + chunk][tuple(first)]
    return None, None


def check_pixels(images, where="the image array"):
    """Refuse an image array whose values `to_unit_float` would misread: anything but numbers in [0, 1]
    or [0, 255] (uint8 and bool arrays always pass). `where` names the array in the message.

    Costs one min and one max over the array (NaN propagates through both); the offending image is
    looked for only when the check fails."""
    x = np.asarray(images)
    if x.dtype == np.uint8 or x.dtype == np.bool_ or x.size == 0:
        return
    if x.dtype.kind not in "iuf":
        raise DataError(f"{where} holds {x.dtype} values; images must be arrays of numbers "
                        "(uint8, or floats in [0, 1] or [0, 255])")
    low, high = x.min(), x.max()
    if not (np.isfinite(low) and np.isfinite(high)):
        index, value = _first_bad_image(x, lambda part: ~np.isfinite(part))
        raise DataError(f"{where} holds pixel values that are not finite numbers (image {index} has "
                        f"{float(value)}); every pixel must be a number in [0, 1] or [0, 255]")
    if x.dtype.kind == "f" and 1 < high <= 2:
        index, value = _first_bad_image(x, lambda part: part > 1)
        raise DataError(
            f"{where} holds float pixel values up to {high:g} (image {index} has {value:g}): just above 1, so "
            "neither images in [0, 1] nor in [0, 255], and scaling them as either would be wrong; clip them "
            "to [0, 1]")
    if low < 0 or high > 255:
        index, value = _first_bad_image(x, lambda part: (part < 0) | (part > 255))
        raise DataError(
            f"{where} holds pixel values from {low:g} to {high:g} (image {index} has {value:g}); cladec "
            "expects images in [0, 1] or [0, 255] (uint8 or float) and scales them to [0, 1] itself, so "
            "rescale the array to one of these ranges (the range the classifier takes its input in is "
            f"set with {option('pixel_range')})")


def pixel_scale(*arrays):
    """What non-uint8 image arrays are divided by: 255 when, taken together, they hold a value above 1,
    else 1. One scale for all the splits of a dataset, so that a split of dark images is not read in
    another range than the others. (uint8 arrays are always divided by 255.)"""
    for x in map(np.asarray, arrays):
        if x.dtype != np.uint8 and x.size and float(x.max()) > 1.0:
            return 255.0
    return 1.0


def with_channel_axis(images):
    """An N x H x W x C image array (N x H x W gets a channel axis); other shapes are refused."""
    x = np.asarray(images)
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4:
        raise DataError(f"images must be N x H x W or N x H x W x C arrays, got shape {x.shape}")
    return x


def checked_scale(images, where="the image array"):
    """`pixel_scale` of `images` once `check_pixels` has passed them (`where` names them in its message)."""
    check_pixels(images, where)
    return pixel_scale(images)


def to_unit_float(images, where="the image array", scale=None):
    """uint8 images (or floats in [0, 255]) -> float32 in [0, 1] with a channel axis; other than uint8
    arrays are divided by `scale`, given by a caller that has checked the values (as `load_dataset` does
    with what its readers checked), else `pixel_scale` of these images once `check_pixels` has passed them:
    floats above 1 are read as [0, 255], so one outside [0, 255] (or below 0) could only come out wrong."""
    x = with_channel_axis(images)
    scale = checked_scale(x, where) if scale is None else scale
    if x.dtype == np.uint8:
        return x.astype(np.float32) / 255.0
    return x.astype(np.float32) / np.float32(scale)


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


def fit_images(images, image_shape, mode="bilinear", chunk=8192, scale=None):
    """Scale (by `scale`, see `to_unit_float`), convert channels and resize an image array to
    `image_shape` = (H, W, C), float32 [0, 1], on the CPU.

    The CPU, also where an accelerator is the default device: a GPU's resize kernels can differ from the
    CPU's in the last bit, and tf.data fits batches on the CPU, so fitted images are the same on every
    machine and held or fitted batch by batch; nor do they take accelerator memory."""
    x = with_channel_axis(images)
    scale = checked_scale(x) if scale is None else scale
    out = np.empty((len(x),) + tuple(image_shape), dtype=np.float32)
    with keras.device("cpu:0"):
        for start in range(0, len(x), chunk):  # chunk by chunk, so no float copy of the whole array is made
            part = convert_channels(to_unit_float(x[start:start + chunk], scale=scale), image_shape[2])
            out[start:start + chunk] = ops.convert_to_numpy(resize_images(part, image_shape[:2], mode))
    return out


class BatchFitter:
    """Fits batches of images to `image_shape` as `fit_images` fits a whole array: NumPy batches give
    NumPy arrays, a tf.data pipeline's tensors give tensors of the same values. Non-uint8 images are
    divided by `scale` (see `to_unit_float`)."""

    def __init__(self, image_shape, mode="bilinear", scale=1.0):
        self.image_shape, self.mode, self.scale = tuple(int(v) for v in image_shape), mode, float(scale)

    def __call__(self, images):
        if isinstance(images, np.ndarray):
            return fit_images(images, self.image_shape, self.mode, scale=self.scale)
        uint8 = keras.backend.standardize_dtype(images.dtype) == "uint8"
        x = ops.divide(ops.cast(images, "float32"), np.float32(255.0 if uint8 else self.scale))
        return resize_images(convert_channels(x, self.image_shape[2]), self.image_shape[:2], self.mode)


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
