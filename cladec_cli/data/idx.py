"""Reader for the IDX format of MNIST and Fashion-MNIST (gzip-compressed or raw)."""

import gzip
import struct

import numpy as np

from cladec_cli.errors import DataError

_UNSIGNED_BYTE = 0x08


def read_idx(path):
    """Return the array stored in an IDX file, validating its header and size."""
    path = str(path)
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as e:
        raise DataError(f"cannot read IDX file {path}: {e}") from e
    if len(raw) < 4:
        raise DataError(f"{path} is not an IDX file: it is only {len(raw)} bytes long")
    zero, dtype, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or dtype != _UNSIGNED_BYTE or not 1 <= ndim <= 4:
        raise DataError(f"{path} is not an IDX file of unsigned bytes (bad magic number {raw[:4].hex()})")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path} is truncated: its header is incomplete")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    expected = int(np.prod(dims))
    if len(raw) - header != expected:
        raise DataError(
            f"{path} is truncated or corrupt: header says {'x'.join(map(str, dims))} = {expected} bytes, "
            f"file holds {len(raw) - header}"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def read_idx_pair(images_path, labels_path):
    """Read an images file (N x H x W) and its labels file (N), checking that they belong together."""
    images = read_idx(images_path)
    labels = read_idx(labels_path)
    if images.ndim != 3:
        raise DataError(f"{images_path} should hold N x H x W images, holds shape {images.shape}")
    if labels.ndim != 1:
        raise DataError(f"{labels_path} should hold N labels, holds shape {labels.shape}")
    if len(images) != len(labels):
        raise DataError(
            f"{images_path} holds {len(images)} images but {labels_path} holds {len(labels)} labels"
        )
    return images, labels.astype(np.int64)
