"""PNG explanation grids: one row per image, labelled tiles, column headers (Pillow)."""

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFont

COLUMNS = ("original", "RefAE", "ClaDec", "|ClaDec - RefAE|")


@dataclass(frozen=True)
class GridLayout:
    """Pixel geometry of a grid: tiles `tile` px wide and `tile_height` px high (default: square), a
    header row, a caption band under each tile."""

    tile: int
    header: int = 36
    caption: int = 30
    gap: int = 6
    tile_height: int = None

    @property
    def height(self):
        return self.tile_height or self.tile

    def size(self, rows, columns):
        """(width, height) of a grid with `rows` x `columns` tiles."""
        width = columns * self.tile + (columns + 1) * self.gap
        height = self.header + rows * (self.height + self.caption + self.gap) + self.gap
        return width, height

    def origin(self, row, column):
        """Top-left corner of a tile."""
        return (self.gap + column * (self.tile + self.gap),
                self.header + self.gap + row * (self.height + self.caption + self.gap))


def layout_for(image_shape, min_tile=128):
    """Tiles upscaled by a whole factor so that a small image is readable: as wide as the image's longer
    side (room for captions), as high as the image."""
    scale = max(1, -(-min_tile // max(image_shape[0], image_shape[1])))
    return GridLayout(tile=max(image_shape[0], image_shape[1]) * scale, tile_height=image_shape[0] * scale)


def _font(size=12):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has only the fixed bitmap font
        return ImageFont.load_default()


def class_name_of(class_names, i):
    """The name of class `i` for a caption, or its number where `class_names` has none for it."""
    return class_names[i] if 0 <= i < len(class_names) else str(i)


def to_tile(image, tile):
    """An H x W x C float image in [0, 1] as an RGB PIL image of `tile` px, upscaled with nearest."""
    array = np.clip(np.asarray(image, np.float32), 0, 1)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    pil = Image.fromarray((array * 255).round().astype(np.uint8)).convert("RGB")
    scale = tile / max(pil.size)
    return pil.resize((round(pil.width * scale), round(pil.height * scale)), Image.NEAREST)


def heatmap(difference):
    """|a - b| per pixel (channels averaged) as an RGB heat map, black (0) -> red -> yellow (1)."""
    d = np.asarray(difference, np.float32)
    d = d.mean(axis=-1) if d.ndim == 3 else d
    d = np.clip(d, 0, 1)
    rgb = np.stack([np.clip(2 * d, 0, 1), np.clip(2 * d - 1, 0, 1), np.zeros_like(d)], axis=-1)
    return rgb


def render_grid(rows, layout, columns=COLUMNS):
    """Draw rows of (tiles, captions): each tile an image array, each caption up to two text lines."""
    image = Image.new("RGB", layout.size(len(rows), len(columns)), "white")
    draw = ImageDraw.Draw(image)
    font = _font()
    for c, title in enumerate(columns):
        x, _ = layout.origin(0, c)
        draw.multiline_text((x, 4), title, fill="black", font=font, spacing=2)
    for r, (tiles, captions) in enumerate(rows):
        for c, (tile, caption) in enumerate(zip(tiles, captions)):
            x, y = layout.origin(r, c)
            image.paste(to_tile(tile, layout.tile), (x, y))
            draw.multiline_text((x, y + layout.height + 2), caption, fill="black", font=font, spacing=2)
    return image
