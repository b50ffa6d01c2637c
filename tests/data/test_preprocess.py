"""One preprocessing for arrays and image files: the same RGB-to-gray conversion and resizing."""

import numpy as np
import pytest

from cladec_cli.data.datasets import load_dataset
from cladec_cli.data.preprocess import convert_channels, rgb_to_gray
from image_files import save_image

COLOURS = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [200, 100, 50]], np.uint8)


def test_rgb_to_gray_is_itu_601_luma():
    rgb = COLOURS.astype(np.float32)[:, None, None, :] / 255.0
    gray = np.asarray(rgb_to_gray(rgb))
    assert gray.shape == (4, 1, 1, 1)
    np.testing.assert_allclose(gray.ravel(), [0.299, 0.587, 0.114, (0.299 * 200 + 0.587 * 100 + 0.114 * 50) / 255],
                               atol=1e-6)
    rgba = np.concatenate([rgb, np.zeros_like(rgb[..., :1])], axis=-1)  # alpha is ignored
    np.testing.assert_allclose(np.asarray(convert_channels(rgba, 1)), gray, atol=1e-7)


@pytest.mark.parametrize("shape", [(8, 8, 1), (16, 16, 1), (16, 16, 3)])
def test_image_files_and_arrays_become_the_same_input(tmp_path, shape):
    rng = np.random.default_rng(0)
    images = {split: rng.integers(0, 256, (4, 8, 8, 3), dtype=np.uint8) for split in ("train", "test")}
    images["train"][0] = COLOURS[:, None, None, :].repeat(2, axis=1).reshape(8, 1, 3).repeat(8, axis=1)
    labels = np.array([0, 1, 0, 1])
    for split, batch in images.items():
        for i, image in enumerate(batch):
            save_image(tmp_path / "folder" / split / f"c{labels[i]}" / f"{i}.png", image)
    np.savez(tmp_path / "arrays.npz", x_train=images["train"], y_train=labels, x_test=images["test"], y_test=labels)
    from_files = load_dataset(f"folder:{tmp_path / 'folder'}", image_shape=shape, resize="bilinear")
    from_arrays = load_dataset(f"npz:{tmp_path / 'arrays.npz'}", image_shape=shape, resize="bilinear")
    files, file_labels = from_files.train.arrays()
    order = np.argsort(file_labels, kind="stable")  # the folder reader lists class by class
    arrays = from_arrays.train.images[np.argsort(labels, kind="stable")]
    np.testing.assert_allclose(files[order], arrays, atol=1e-5)
    if shape[2] == 1 and shape[0] == 8:  # the colour rows of the first image, unresized
        np.testing.assert_allclose(arrays[0, ::2, 0, 0], [0.299, 0.587, 0.114, 124.2 / 255], atol=1e-6)
