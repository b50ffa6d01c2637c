"""`contrast`: what would have to change for the classifier to see another class, as a PNG strip of
decoded steps from an image's code to the nearest training code of that class."""

import numpy as np

from cladec_cli import artifacts
from cladec_cli.errors import DataError
from cladec_cli.grid import class_name_of, layout_for, render_grid
from cladec_cli.layers import build_head
from cladec_cli.methods import ClaDec
from cladec_cli.methods.prototypes import contrast_path

# Codes of at most this many training images of the target class are searched for the nearest.
CANDIDATES = 2000


def contrast(explainer, image, split, target_class, steps=8):
    """The ContrastPath of `image` towards the nearest code of `target_class` among `split`'s images of
    that class that the classifier also sees as that class (all of them when it sees none so), that
    training image, and whether the classifier saw any of them as that class."""
    indices = np.flatnonzero(np.asarray(split.labels) == target_class)[:CANDIDATES]
    if len(indices) == 0:
        raise DataError(f"the training split has no images of class {target_class}")
    candidates, _ = split.subset(indices.tolist()).arrays()
    seen = explainer.classify(candidates) == target_class
    if seen.any():
        candidates = candidates[seen]
    encoder, decoder = ClaDec(explainer).parts()
    path = contrast_path(encoder, decoder, build_head(explainer.classifier, explainer.layer), image, candidates, steps)
    return path, candidates[path.target_index], bool(seen.any())


def write_strip(out, image, path, target_image, class_names, start_label, target_class, overwrite=False,
                true_label=None):
    """The image (captioned with its `true_label`, when known, and the class the classifier sees), each
    decoded step captioned with its mix and the class the classifier sees, and the nearest training image
    of the target class, as one PNG row."""
    out = artifacts.check_output(out, overwrite, suffixes=(".png",))

    def label(c):
        return class_name_of(class_names, c)

    tiles = [image, *path.pictures, target_image]
    first = "start" if true_label is None else f"true: {label(true_label)}"
    captions = [f"{first}\npred: {label(start_label)}",
                *(f"{m:.0%} of the way\n{label(c)} {p:.2f}" for m, c, p in zip(path.mix, path.classes,
                                                                              path.probabilities)),
                "nearest of the class"]
    columns = ("image", *(f"step {i}" for i in range(len(path.mix))), f"nearest {label(target_class)}")
    picture = render_grid([(tiles, captions)], layout_for(np.asarray(image).shape), columns)
    with artifacts.atomic_path(out, overwrite) as tmp:
        picture.save(tmp, format="PNG")
    return picture.size
