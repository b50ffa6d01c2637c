"""Explanation grids: pick images, reconstruct them with RefAE and ClaDec, draw and save the grid."""

from pathlib import Path

import numpy as np

from cladec_cli import artifacts
from cladec_cli.data.split import read_image_file
from cladec_cli.errors import DataError, UsageError, counted, option
from cladec_cli.grid import COLUMNS, class_name_of, heatmap, layout_for, render_grid
from cladec_cli.methods import ClaDec, RefAE, explain_all
from cladec_cli.methods.prototypes import class_prototypes


# Images shown when neither indices nor a count are given.
DEFAULT_COUNT = 8


def parse_indices(text):
    """'0,5,9' -> [0, 5, 9]."""
    try:
        return [int(part) for part in str(text).split(",") if part.strip()]
    except ValueError:
        raise UsageError(f"{option('indices')} must be comma-separated whole numbers, got {text!r}") from None


def class_label(class_names, name):
    """The label of a class given by name (case-insensitive) or number."""
    lowered = [c.lower() for c in class_names]
    if str(name).lower() in lowered:
        return lowered.index(str(name).lower())
    if str(name).isdigit() and int(name) < len(class_names):
        return int(name)
    raise UsageError(f"unknown class {name!r}; classes are: {', '.join(class_names)}")


def select(split, class_names, indices=None, class_name=None, count=None):
    """Indices into `split`: the given ones, the first `count` (default 8) of a class, or the first `count`."""
    if indices is not None:
        if class_name is not None or count is not None:
            raise UsageError(f"{option('indices')} names the images itself; leave out {option('class_name')} "
                             f"and {option('count')}")
        if not indices:
            raise UsageError(f"{option('indices')} names no image; give test image numbers such as 0,5,9")
        bad = [i for i in indices if not 0 <= i < len(split)]
        if bad:
            raise UsageError(f"{option('indices')} {bad} out of range: the test split has "
                             f"{counted(len(split), 'image')}")
        return list(indices)
    count = DEFAULT_COUNT if count is None else count
    if count < 1:
        raise UsageError(f"{option('count')} must be at least 1, got {count}")
    if class_name is not None:
        label = class_label(class_names, class_name)
        chosen = np.flatnonzero(split.labels == label)[:count]
        if len(chosen) == 0:
            raise DataError(f"the test split has no images of class {class_names[label]!r}")
        return chosen.tolist()
    return list(range(min(count, len(split))))


def images_to_explain(explainer, split, class_names, images_dir=None, indices=None, class_name=None, count=None,
                      resize=None):
    """(images, true labels or None, row names): the user's files in `images_dir` (the first `count`,
    resized by `resize`, default the explainer's), else the test images of `split` that `select` picks."""
    if images_dir:
        if indices is not None or class_name is not None:
            raise UsageError(f"{option('images_dir')} explains your own files; leave out {option('indices')} and "
                             f"{option('class_name')}")
        images, names = load_image_folder(images_dir, explainer.image_shape, resize or explainer.resize)
        return images[:count], None, names[:count]
    chosen = select(split, class_names, indices, class_name, count)
    images, labels = split.subset(chosen).arrays()
    return images, labels, [f"test #{i}" for i in chosen]


def write_prototype_grid(out, explainer, split, class_names, overwrite=False, arrays_out=None, predicted_names=None):
    """The grid of `prototype_arrays` of `split`, one row per class; returns (size, the rows' class names).
    Predictions are named by `predicted_names` (the classifier's classes) where `class_names` differ."""
    arrays = prototype_arrays(explainer, split)
    labels = arrays.pop("labels")
    size = write_grid(out, arrays, class_names, labels, None, overwrite, arrays_out, first_column="class mean",
                      predicted_names=predicted_names)
    return size, [class_names[c] for c in labels]


def own_image_files(folder):
    """(image files, other files) directly in `folder`, sorted; image files are those of a kind Pillow
    opens, by suffix (PNG, JPEG, WebP, TIFF, ...). Hidden files are neither. A file in place of the
    folder is the one image file."""
    from PIL import Image

    folder = Path(folder)
    if not folder.exists():
        raise DataError(f"{folder} does not exist; give a folder of image files or one image file")
    if folder.is_file():
        return [folder], []
    if not folder.is_dir():
        raise DataError(f"{folder} is neither a folder nor a file")
    readable = {suffix for suffix, kind in Image.registered_extensions().items() if kind in Image.OPEN}
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    return [p for p in files if p.suffix.lower() in readable], [p for p in files if p.suffix.lower() not in readable]


def load_image_folder(folder, image_shape, resize="bilinear"):
    """The user's image files in `folder` (`own_image_files`; or the one file it names), decoded and
    resized to the model's input; and their names."""
    files, _ = own_image_files(folder)
    if not files:
        raise DataError(f"image folder {folder} holds no image files (.png, .jpg, .webp, .tif, ...)")
    return np.stack([load_image_file(path, image_shape, resize) for path in files]), [p.name for p in files]


def load_image_file(path, image_shape, resize="bilinear"):
    """One image file of the user's, decoded and resized to the model's input."""
    if not Path(path).is_file():
        raise DataError(f"{path} is not a file")
    try:
        return read_image_file(str(path), tuple(image_shape), resize)
    except Exception as e:  # Pillow reports undecodable files with several error types
        try:
            with open(path, "rb") as f:
                begins = f"; it begins with {f.read(8)!r}"
        except OSError:
            begins = ""
        raise DataError(f"cannot read image {path}: Pillow cannot decode it ({type(e).__name__}{begins}); "
                        f"replace it or remove it") from e


def explanation_arrays(explainer, images, extra=()):
    """Originals, reconstructions, |ClaDec - RefAE|, the classifier's predictions, and the explanations of
    the `extra` methods (`methods.Method`s: pictures, with the classifier's predictions, and attribution
    maps for the class predicted for each original)."""
    recs = explainer.reconstructions(images)
    arrays = {"original": images, "cladec": recs["cladec"],
              "pred_original": explainer.classify(images), "pred_cladec": explainer.classify(recs["cladec"])}
    if "refae" in recs:
        arrays["refae"] = recs["refae"]
        arrays["difference"] = np.abs(recs["cladec"] - recs["refae"])
        arrays["pred_refae"] = explainer.classify(recs["refae"])
    arrays.update(explain_all(extra, images, arrays["pred_original"]))
    for method in extra:
        if method.kind == "image":
            arrays[f"pred_{method.name}"] = explainer.classify(arrays[method.name])
    return arrays


def blank_maps_note(arrays, methods):
    """A line naming the attribution maps of `arrays` that are zero everywhere (drawn black: the method
    found nothing that raises the predicted class's score), or None."""
    blank = []
    for method in methods:
        if method.kind == "map":
            maps = np.asarray(arrays[method.name])
            count = int(np.sum(maps.reshape(len(maps), -1).max(axis=1) <= 0))
            if count:
                blank.append(f"{method.title.splitlines()[0]} for {count} of {counted(len(maps), 'image')}")
    if not blank:
        return None
    return (f"note: zero everywhere, so drawn black: {'; '.join(blank)} (nothing the method looks at raises the "
            "predicted class's score)")


def prototype_arrays(explainer, split, per_class=1000):
    """Per class of `split` (up to `per_class` of its images each): the mean image, and the decodings of
    the class's mean code by ClaDec and, when loaded, by the RefAE, with the classifier's predictions;
    arranged as `explanation_arrays` arranges images, plus the class of each row ("labels")."""
    labels = np.asarray(split.labels)
    classes = [int(c) for c in np.unique(labels)]

    def images_of(c):
        return split.subset(np.flatnonzero(labels == c)[:per_class].tolist()).arrays()[0]

    means = np.stack([images_of(c).mean(axis=0) for c in classes]).astype(np.float32)
    arrays = {"original": means, "pred_original": explainer.classify(means), "labels": np.asarray(classes)}
    for method in (ClaDec(explainer), RefAE(explainer)):
        if method.available():
            encoder, decoder = method.parts()
            arrays[method.name] = class_prototypes(encoder, decoder, images_of, classes)
            arrays[f"pred_{method.name}"] = explainer.classify(arrays[method.name])
    if "refae" in arrays:
        arrays["difference"] = np.abs(arrays["cladec"] - arrays["refae"])
    return arrays


def _namers(class_names, predicted_names=None):
    """(name of a true class, name of a predicted one): the images' `class_names`, and for predictions the
    classifier's `predicted_names` where they differ from those."""
    predicted = class_names if predicted_names is None else predicted_names
    return (lambda i: class_name_of(class_names, i)), (lambda i: class_name_of(predicted, i))


def layer_rows(explainers, images, class_names, true_labels=None, names=None, predicted_names=None):
    """Grid rows and column titles for the same images explained at several layers: the original, then
    per layer its RefAE (when loaded) and its ClaDec reconstruction, each with the classifier's prediction
    (named by `predicted_names`, the classifier's classes, where the images' own `class_names` differ)."""
    true, label = _namers(class_names, predicted_names)
    columns = ["original"]
    per_layer = []
    for explainer in explainers:
        recs = explainer.reconstructions(images)
        tag = f"L{explainer.decoder_provenance['layer_index']} {explainer.layer.name}"
        for method in ("refae", "cladec"):
            if method in recs:
                columns.append(f"{'RefAE' if method == 'refae' else 'ClaDec'}\n{tag}")
                per_layer.append((recs[method], explainer.classify(recs[method])))
    predicted = explainers[0].classify(images)
    rows = []
    for i in range(len(images)):
        first = f"true: {true(true_labels[i])}" if true_labels is not None else (names[i] if names else "")
        tiles = [images[i], *(pictures[i] for pictures, _ in per_layer)]
        captions = [f"{first}\npred: {label(predicted[i])}", *(f"pred: {label(p[i])}" for _, p in per_layer)]
        rows.append((tiles, captions))
    return rows, tuple(columns)


def write_layer_grid(out, explainers, images, class_names, true_labels=None, names=None, overwrite=False,
                     predicted_names=None):
    """Render and save the grid of `layer_rows` atomically; returns its size."""
    out = artifacts.check_output(out, overwrite, suffixes=(".png",))
    rows, columns = layer_rows(explainers, images, class_names, true_labels, names, predicted_names)
    image = render_grid(rows, layout_for(np.asarray(images).shape[1:]), columns)
    with artifacts.atomic_path(out, overwrite) as tmp:
        image.save(tmp, format="PNG")
    return image.size


def grid_rows(arrays, class_names, true_labels=None, names=None, scale=1.0, extra=(), predicted_names=None):
    """(tiles, captions) per image for `render_grid`; heat maps are divided by `scale`; `extra` lists
    (name, kind) of further methods' explanations in `arrays`, drawn after them: pictures with the
    classifier's prediction, attribution maps each scaled to its own image's maximum. Predictions are
    named by `predicted_names` (the classifier's classes) where the images' own `class_names` differ."""
    true, label = _namers(class_names, predicted_names)
    rows = []
    for i in range(len(arrays["original"])):
        first = f"true: {true(true_labels[i])}" if true_labels is not None else (names[i] if names else "")
        captions = [f"{first}\npred: {label(arrays['pred_original'][i])}"]
        tiles = [arrays["original"][i]]
        if "refae" in arrays:
            tiles.append(arrays["refae"][i])
            captions.append(f"pred: {label(arrays['pred_refae'][i])}")
        tiles.append(arrays["cladec"][i])
        captions.append(f"pred: {label(arrays['pred_cladec'][i])}")
        if "refae" in arrays:
            tiles.append(heatmap(arrays["difference"][i] / scale))
            captions.append(f"mean {float(arrays['difference'][i].mean()):.3f}")
        for name, kind in extra:
            if kind == "image":
                tiles.append(arrays[name][i])
                captions.append(f"pred: {label(arrays[f'pred_{name}'][i])}")
            else:
                tiles.append(heatmap(arrays[name][i]))
                captions.append(f"for {label(arrays['pred_original'][i])}")
        rows.append((tiles, captions))
    return rows


def write_grid(out, arrays, class_names, true_labels=None, names=None, overwrite=False, arrays_out=None,
               extra=(), first_column="original", predicted_names=None):
    """Render and save the PNG grid (and optionally the arrays as .npz), both atomically; the pictures
    and maps of the `extra` methods follow as columns of their own."""
    out = artifacts.check_output(out, overwrite, suffixes=(".png",))
    if arrays_out:
        artifacts.check_output(arrays_out, overwrite, suffixes=(".npz",))
    columns = ("original", "ClaDec")
    scale = 1.0
    if "refae" in arrays:
        # The heat maps share one scale, the grid's largest difference, shown in the header.
        scale = max(float(arrays["difference"].max()), 1e-6)
        columns = COLUMNS[:-1] + (f"{COLUMNS[-1]}\n(black 0, yellow {scale:.2f})",)
    columns = (first_column,) + columns[1:] + tuple(m.title for m in extra)
    layout = layout_for(arrays["original"].shape[1:])
    rows = grid_rows(arrays, class_names, true_labels, names, scale, [(m.name, m.kind) for m in extra],
                     predicted_names)
    image = render_grid(rows, layout, columns)
    with artifacts.atomic_path(out, overwrite) as tmp:
        image.save(tmp, format="PNG")
    if arrays_out:
        labels = {"labels": np.asarray(true_labels)} if true_labels is not None else {}
        row_names = {"names": np.asarray(names, dtype=str)} if names else {}
        with artifacts.atomic_path(arrays_out, overwrite) as tmp:
            with open(tmp, "wb") as f:
                np.savez_compressed(f, **arrays, **labels, **row_names)
    return image.size
