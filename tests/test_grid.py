"""Explanation grids drawn from arrays with known values: sizes, tile positions and colours."""

import numpy as np
from PIL import Image

from cladec_cli.explain import write_grid

# 8x8 images are upscaled 16x to 128 px tiles; tiles sit 6 px apart under a 36 px header, each row
# leaving 30 px for its caption: tile (row r, column c) starts at x = 6 + 134 c, y = 42 + 164 r.
TILE, WIDTH_4, HEIGHT_2 = 128, 4 * 128 + 5 * 6, 36 + 2 * (128 + 30 + 6) + 6


def tile(image, row, column):
    x, y = 6 + 134 * column, 42 + 164 * row
    return np.asarray(image.crop((x, y, x + TILE, y + TILE)))


def test_grid_tiles_show_the_arrays(tmp_path):
    original = np.full((2, 8, 8, 1), 0.25, np.float32)
    original[1, :4] = 1.0  # the second original: top half white, bottom half at 0.25
    refae = np.zeros((2, 8, 8, 1), np.float32)
    cladec = np.stack([np.ones((8, 8, 1)), np.full((8, 8, 1), 0.5)]).astype(np.float32)
    arrays = {"original": original, "refae": refae, "cladec": cladec, "difference": np.abs(cladec - refae),
              "pred_original": np.array([0, 1]), "pred_refae": np.array([0, 0]), "pred_cladec": np.array([1, 1])}
    out = tmp_path / "grid.png"
    assert write_grid(out, arrays, ["a", "b"], true_labels=np.array([0, 1])) == (WIDTH_4, HEIGHT_2)
    with Image.open(out) as image:
        assert image.size == (WIDTH_4, HEIGHT_2)
        rgb = image.convert("RGB")
        assert np.all(tile(rgb, 0, 0) == 64)  # 0.25 * 255, gray in all three channels
        assert np.all(tile(rgb, 0, 1) == 0) and np.all(tile(rgb, 0, 2) == 255)
        assert np.all(tile(rgb, 0, 3) == [255, 255, 0])  # the largest difference is yellow
        second = tile(rgb, 1, 0)
        assert np.all(second[:TILE // 2] == 255) and np.all(second[TILE // 2:] == 64)  # upscaled, not blurred
        assert np.all(tile(rgb, 1, 3) == [255, 0, 0])  # half the largest difference: red


def test_wide_images_leave_no_band_under_their_tiles(tmp_path):
    # 4x8 images (wide) are upscaled 16x to 64 x 128 px tiles: a row is 64 px of image and its caption.
    original = np.ones((2, 4, 8, 1), np.float32)
    arrays = {"original": original, "cladec": original * 0.5, "pred_original": np.array([0, 1]),
              "pred_cladec": np.array([0, 1])}
    out = tmp_path / "wide.png"
    width, height = write_grid(out, arrays, ["a", "b"], true_labels=np.array([0, 1]))
    assert (width, height) == (2 * 128 + 3 * 6, 36 + 2 * (64 + 30 + 6) + 6)
    with Image.open(out) as image:
        rgb = np.asarray(image.convert("RGB"))
    second_row = 36 + 6 + 64 + 30 + 6
    assert np.all(rgb[second_row:second_row + 64, 6 + 134:6 + 134 + 128] == 128)  # 0.5, the second row's ClaDec
