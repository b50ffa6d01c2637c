"""IDX reader: round trips and the errors for broken files."""

import gzip

import numpy as np
import pytest

from cladec_cli.data.idx import read_idx, read_idx_pair
from cladec_cli.errors import DataError
from conftest import write_idx


@pytest.mark.parametrize("compress", [True, False], ids=["gz", "raw"])
def test_round_trip_images_and_labels(tmp_path, compress):
    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, size=(7, 5, 4), dtype=np.uint8)
    labels = np.array([0, 9, 3, 3, 1, 7, 255], np.uint8)
    suffix = ".gz" if compress else ""
    images_path = write_idx(tmp_path / f"images{suffix}", images, compress)
    labels_path = write_idx(tmp_path / f"labels{suffix}", labels, compress)

    read = read_idx(images_path)
    assert read.dtype == np.uint8
    assert read.shape == (7, 5, 4)
    np.testing.assert_array_equal(read, images)

    got_images, got_labels = read_idx_pair(images_path, labels_path)
    np.testing.assert_array_equal(got_images, images)
    assert got_labels.dtype == np.int64
    np.testing.assert_array_equal(got_labels, labels.astype(np.int64))


@pytest.mark.parametrize("compress", [True, False], ids=["gz", "raw"])
def test_truncated_file(tmp_path, compress):
    path = write_idx(tmp_path / "full", np.ones((4, 3, 3), np.uint8), compress=False)
    data = path.read_bytes()[:-5]
    target = tmp_path / ("cut.gz" if compress else "cut")
    if compress:
        with gzip.open(target, "wb") as f:
            f.write(data)
    else:
        target.write_bytes(data)
    with pytest.raises(DataError) as info:
        read_idx(target)
    message = str(info.value)
    assert "truncated" in message
    assert str(target) in message
    assert "4x3x3 = 36" in message and "31" in message


def test_truncated_header(tmp_path):
    path = write_idx(tmp_path / "full", np.ones((4, 3, 3), np.uint8), compress=False)
    path.write_bytes(path.read_bytes()[:9])  # magic + 1.25 of 3 dimensions
    with pytest.raises(DataError, match="header"):
        read_idx(path)


def test_cut_gzip_stream(tmp_path):
    path = write_idx(tmp_path / "full.gz", np.ones((40, 28, 28), np.uint8))
    path.write_bytes(path.read_bytes()[:30])
    with pytest.raises(DataError, match="cannot read IDX file"):
        read_idx(path)


def test_tiny_file_is_not_idx(tmp_path):
    path = tmp_path / "tiny"
    path.write_bytes(b"\x00\x00")
    with pytest.raises(DataError, match="not an IDX file"):
        read_idx(path)


@pytest.mark.parametrize("magic", [b"\x1f\x8b\x08\x03", b"\x00\x00\x0d\x01", b"\x00\x00\x08\x00", b"PK\x03\x04"],
                         ids=["gzip-bytes", "float-type", "zero-dims", "zip"])
def test_wrong_magic_number(tmp_path, magic):
    path = write_idx(tmp_path / "images", np.ones((2, 2, 2), np.uint8), compress=False)
    path.write_bytes(magic + path.read_bytes()[4:])
    with pytest.raises(DataError) as info:
        read_idx(path)
    message = str(info.value)
    assert "magic number" in message
    assert magic.hex() in message
    assert str(path) in message


def test_plain_file_named_gz(tmp_path):
    """A raw IDX file with a .gz name is reported, not a gzip traceback."""
    path = write_idx(tmp_path / "images.gz", np.ones((2, 2, 2), np.uint8), compress=False)
    with pytest.raises(DataError, match=str(path)):
        read_idx(path)


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="cannot read IDX file"):
        read_idx(tmp_path / "absent-idx3-ubyte.gz")


def test_count_mismatch(tmp_path):
    images = write_idx(tmp_path / "images.gz", np.zeros((5, 4, 4), np.uint8))
    labels = write_idx(tmp_path / "labels.gz", np.zeros(4, np.uint8))
    with pytest.raises(DataError) as info:
        read_idx_pair(images, labels)
    message = str(info.value)
    assert "5 images" in message and "4 labels" in message
    assert str(images) in message and str(labels) in message


def test_pair_checks_dimensions(tmp_path):
    images = write_idx(tmp_path / "images.gz", np.zeros((5, 4, 4), np.uint8))
    labels = write_idx(tmp_path / "labels.gz", np.zeros(5, np.uint8))
    with pytest.raises(DataError, match="N x H x W"):
        read_idx_pair(labels, labels)
    with pytest.raises(DataError, match="N labels"):
        read_idx_pair(images, images)
