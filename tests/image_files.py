"""Writers for image-file datasets on disk: a miniature TinyImageNet and `folder:` datasets.

The pictures come from `conftest.synthetic_images` (a bright square in the quadrant of the class), so
a test can tell from the decoded pixels alone which class an image was written for.
"""

from pathlib import Path

import numpy as np
from PIL import Image

from conftest import synthetic_images

WNIDS = ("n01443537", "n01629819", "n01641577")
WORDS = {"n01443537": "goldfish, Carassius auratus", "n01629819": "European fire salamander",
         "n01641577": "bullfrog, Rana catesbeiana", "n99999999": "not in wnids"}


def class_images(label, n, size, channels=3, n_classes=4, seed=0):
    """`n` uint8 images of class `label` (which fixes the bright quadrant)."""
    images, labels = synthetic_images(n * n_classes, size, channels, n_classes=n_classes, seed=seed + label)
    return images[labels == label][:n]


def save_image(path, array):
    """Save an H x W x C uint8 array (C = 1 or 3) with Pillow; the format follows the suffix."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array).save(path, quality=95)
    return path


def bright_quadrant(image):
    """The class a synthetic image was drawn for: the quadrant with the highest mean."""
    h, w = image.shape[0] // 2, image.shape[1] // 2
    means = [image[:h, :w].mean(), image[:h, w:].mean(), image[h:, :w].mean(), image[h:, w:].mean()]
    return int(np.argmax(means))


def write_tiny_imagenet(root, wnids=WNIDS, n_train=8, n_val=4, words=True):
    """TinyImageNet's layout: wnids.txt, train/<wnid>/images/*.JPEG (+ boxes), val/images/ + annotations.

    Class i of `wnids` has its bright square in quadrant i; validation files are interleaved by class.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    (root / "wnids.txt").write_text("".join(f"{w}\n" for w in wnids))
    if words:
        (root / "words.txt").write_text("".join(f"{w}\t{name}\n" for w, name in WORDS.items()))
    for label, wnid in enumerate(wnids):
        boxes = []
        for i, image in enumerate(class_images(label, n_train, 64)):
            save_image(root / "train" / wnid / "images" / f"{wnid}_{i}.JPEG", image)
            boxes.append(f"{wnid}_{i}.JPEG\t0\t0\t63\t63\n")
        (root / "train" / wnid / f"{wnid}_boxes.txt").write_text("".join(boxes))
    lines, count = [], 0
    per_class = [class_images(label, n_val, 64, seed=100) for label in range(len(wnids))]
    for i in range(n_val):
        for label, wnid in enumerate(wnids):
            name = f"val_{count}.JPEG"
            save_image(root / "val" / "images" / name, per_class[label][i])
            lines.append(f"{name}\t{wnid}\t0\t0\t63\t63\n")
            count += 1
    (root / "val" / "val_annotations.txt").write_text("".join(lines))
    return root


def write_image_folder(root, classes=("cat", "dog", "eel"), n_per_class=10, size=16, channels=3,
                       suffix=".png", seed=0):
    """One sub-folder per class with `n_per_class` images; class i has its bright square in quadrant i."""
    root = Path(root)
    for label, name in enumerate(classes):
        for i, image in enumerate(class_images(label, n_per_class, size, channels, seed=seed)):
            save_image(root / name / f"{name}_{i:04d}{suffix}", image)
    return root
