"""Readers that turn each supported dataset into raw train/test parts."""

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cladec_cli.data import sources
from cladec_cli.data.idx import read_idx_pair
from cladec_cli.data.preprocess import check_pixels
from cladec_cli.errors import DataError, option

FASHION_MNIST_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif"}


@dataclass
class RawPart:
    """One split as read from disk: an image array or a list of file paths, and integer labels."""

    labels: np.ndarray
    images: np.ndarray = None
    paths: np.ndarray = None


@dataclass
class RawDataset:
    """Train and test parts, class names, the images' natural shape and where they came from."""

    train: RawPart
    test: RawPart
    class_names: list
    native_shape: tuple
    origin: str
    notes: dict = field(default_factory=dict)


def read_mnist_like(name, data_dir=None, download=True):
    """Fashion-MNIST or MNIST from IDX files (or mnist.npz), searched in the documented order."""
    folders = sources.explicit_folders(name, data_dir) if data_dir else sources.default_folders(name)
    if name == "mnist":
        for folder in folders + ([] if data_dir else [sources.keras_cache_dir()]):
            npz = Path(folder) / "mnist.npz"
            if npz.is_file():
                return _from_npz_file(npz, [str(i) for i in range(10)], "mnist has 10 classes")
    for folder in folders:
        files = sources.find_idx_files(folder)
        if files:
            parts = []
            for split in ("train", "test"):
                images, labels = read_idx_pair(*files[split])
                parts.append(RawPart(class_indices(labels, 10, str(files[split][1]), f"{name} has 10 classes"),
                                     images))
            return _mnist_dataset(name, *parts, str(folder))
    if data_dir:
        raise DataError(
            f"{option('data_dir')} {data_dir} has no {name} files (expected train-images-idx3-ubyte[.gz], "
            f"train-labels-idx1-ubyte[.gz], t10k-images-idx3-ubyte[.gz], t10k-labels-idx1-ubyte[.gz])"
        )
    if not download:
        raise DataError(f"no {name} data found in {', '.join(map(str, folders))}; {sources.how_to_get(name)}")
    (xtr, ytr), (xte, yte) = sources.keras_download(name)
    reason = f"{name} has 10 classes"
    return _mnist_dataset(name, RawPart(class_indices(ytr, 10, f"{name} y_train (Keras' download)", reason), xtr),
                          RawPart(class_indices(yte, 10, f"{name} y_test (Keras' download)", reason), xte),
                          "keras download")


def _mnist_dataset(name, train, test, origin):
    classes = FASHION_MNIST_CLASSES if name == "fashion_mnist" else [str(i) for i in range(10)]
    return RawDataset(train, test, classes, (28, 28, 1), origin)


def read_npz(path, class_names=None):
    """Arrays x_train, y_train, x_test, y_test (and optionally class_names) from an .npz file."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise DataError(f"npz dataset {path} does not exist")
    return _from_npz_file(path, class_names)


def _from_npz_file(path, class_names=None, classes_reason=None):
    """The arrays of an .npz file, checked; `class_names` (else the file's own) fix the number of classes,
    `classes_reason` says why in messages."""
    try:
        with open(path, "rb") as f:
            head = f.read(4)
        if head[:2] != b"PK":
            raise DataError(f"{path} is not an .npz file (it begins with {head!r}, not a zip archive's "
                            f"b'PK'); save the arrays with numpy.savez")
        with np.load(path, allow_pickle=False) as data:
            missing = [k for k in ("x_train", "y_train", "x_test", "y_test") if k not in data]
            if missing:
                raise DataError(f"{path} lacks the arrays {', '.join(missing)}")
            arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError) as e:
        raise DataError(f"cannot read {path} as an .npz file: {e}") from e
    labels = {}
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if x.ndim not in (3, 4):
            raise DataError(f"{path}: x_{split} must be N x H x W or N x H x W x C, has shape {x.shape}")
        if y.ndim >= 2 and len(y) == len(x) and y.size != len(x):
            raise DataError(
                f"{path}: y_{split} has shape {y.shape}: labels must be one class index per image (an N or "
                f"N x 1 array), not one-hot rows or scores; convert one-hot labels with y_{split}.argmax(axis=1)")
        y = y.reshape(-1)
        if len(x) != len(y):
            raise DataError(f"{path}: x_{split} has {len(x)} images but y_{split} has {len(y)} labels")
        if x.size == 0:
            raise DataError(f"{path}: x_{split} holds no images (shape {x.shape}); "
                            f"both splits need at least one image")
        if x.ndim == 4 and x.shape[3] not in (1, 3, 4) and x.shape[1] in (1, 3, 4):
            raise DataError(f"{path}: x_{split} has shape {x.shape}, which looks channels-first (N x C x H x W); "
                            f"images must be channels-last, N x H x W x C: save "
                            f"x_{split}.transpose(0, 2, 3, 1)")
        if x.ndim == 4 and x.shape[3] not in (1, 3, 4):
            raise DataError(f"{path}: x_{split} has {x.shape[3]} channels; images must be gray (1 channel), RGB (3) "
                            f"or RGBA (4)")
        check_pixels(x, f"{path}: x_{split}")
        labels[split] = whole_labels(y, f"{path}: y_{split}")
    names = class_names or [n.decode("utf-8", "replace") if isinstance(n, bytes) else str(n)
                            for n in arrays.get("class_names", [])]
    if names:
        reason = classes_reason or f"its class_names array names {len(names)} classes"
    else:
        # Without names the classes are 0 to the largest label; more of them than labelled images means a
        # label that is no class index (and would make millions of empty classes).
        n_classes = int(max(labels["train"].max(), labels["test"].max())) + 1
        n_labels = len(labels["train"]) + len(labels["test"])
        if n_classes > n_labels:
            raise DataError(
                f"{path}: the largest label is {n_classes - 1}, which would make {n_classes} classes for "
                f"{n_labels} images; labels must be class indices 0, 1, 2, ... (with a class_names array "
                "to name the classes)")
        names, reason = [str(i) for i in range(n_classes)], None
    for split in ("train", "test"):
        labels[split] = class_indices(labels[split], len(names), f"{path}: y_{split}", reason)
    if not reason:  # classes numbered by the labels themselves, not named by the file
        _check_npz_classes(path, labels, names)
    x = arrays["x_train"]
    native = tuple(x.shape[1:3]) + ((x.shape[3],) if x.ndim == 4 else (1,))
    return RawDataset(
        RawPart(labels["train"], arrays["x_train"]),
        RawPart(labels["test"], arrays["x_test"]),
        names, native, str(path),
    )


def _check_npz_classes(path, labels, names):
    """Refuse test labels that no training image has, and classes without training images (as for
    image folders): a classifier cannot learn them, and one-based labels would add an empty class 0.
    For labels that number the classes themselves; a file's class_names may name classes it has no images of."""
    def listed(indices):
        return ", ".join(names[i] for i in indices[:8]) + (", ..." if len(indices) > 8 else "")

    extra = sorted(set(labels["test"].tolist()) - set(labels["train"].tolist()))
    if extra:
        raise DataError(f"{path}: y_test holds {_classes(extra)} that y_train lacks ({listed(extra)}); every "
                        f"test class needs training images (or name every class in a class_names array)")
    empty = np.flatnonzero(np.bincount(labels["train"], minlength=len(names)) == 0).tolist()
    if empty:
        hint = ("; labels start at 1 here, but class indices start at 0: save y - 1"
                if empty == [0] and labels["train"].min() == 1 else "")
        raise DataError(f"{path}: y_train has no images of {_classes(empty)} {listed(empty)}; every class needs "
                        f"training images (or name every class in a class_names array){hint}")


def _classes(indices):
    return "class" if len(indices) == 1 else "classes"


def _first_label(labels, bad):
    """Index and value of the first label for which the mask `bad` holds."""
    index = int(np.flatnonzero(bad)[0])
    return index, labels[index].item()


def whole_labels(labels, where):
    """Labels that are whole numbers at least 0, as int64; else a DataError naming `where` and a bad value."""
    y = np.asarray(labels).reshape(-1)
    if y.dtype.kind not in "biuf":
        raise DataError(f"{where} holds {y.dtype} values; labels must be integer class indices 0, 1, 2, ...")
    if y.dtype.kind == "f":
        bad = ~np.isfinite(y) | (y != np.floor(y))
        if bad.any():
            index, value = _first_label(y, bad)
            raise DataError(f"{where} holds label {value!r} (image {index}), which is not a whole number; "
                            "labels must be integer class indices 0, 1, 2, ...")
    if y.dtype.kind in "if" and (y < 0).any():
        index, value = _first_label(y, y < 0)
        raise DataError(f"{where} holds label {value!r} (image {index}), which is negative; "
                        "labels must be class indices 0, 1, 2, ...")
    if y.size and y.max() >= 2 ** 31:  # checked before the cast to int64, which would wrap larger values
        index, value = _first_label(y, y >= 2 ** 31)
        raise DataError(f"{where} holds label {value!r} (image {index}), which is too large for a class index; "
                        "labels must be class indices 0, 1, 2, ...")
    return y.astype(np.int64)


def class_indices(labels, n_classes, where, reason=None):
    """Labels as int64 class indices in [0, `n_classes`), or a DataError naming `where`, a bad value and
    `reason` (why there are `n_classes` classes)."""
    y = whole_labels(labels, where)
    if len(y) and int(y.max()) >= n_classes:
        index, value = _first_label(y, y >= n_classes)
        raise DataError(f"{where} holds label {value} (image {index}), but "
                        f"{reason or f'there are only {n_classes} classes'}; "
                        f"labels must be class indices 0 to {n_classes - 1}")
    return y


def image_files(folder):
    """Image files directly in `folder` (sorted), by suffix."""
    return sorted(p for p in Path(folder).iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


# The first bytes of the formats that TensorFlow's decode_image and Pillow both decode.
_SIGNATURES = ((b"\xff\xd8\xff", "JPEG"), (b"\x89PNG\r\n\x1a\n", "PNG"), (b"GIF87a", "GIF"), (b"GIF89a", "GIF"),
               (b"BM", "BMP"))


def _bmp_problem(head, f):
    """Why TensorFlow would misread a BMP file (`head`: its first 64 bytes, `f`: the open file), or None.

    TensorFlow's BMP decoder takes 24- and 32-bit pixels and 8-bit values as gray levels: it ignores the
    colour table, so an 8-bit BMP is read right only when its table is the gray ramp (as Pillow writes
    gray BMPs)."""
    if len(head) < 50:
        return "is a truncated BMP file (its header is incomplete)"
    header_size, = np.frombuffer(head[14:18], "<u4")
    bits, = np.frombuffer(head[28:30], "<u2")
    compression, colours = np.frombuffer(head[30:34], "<u4")[0], np.frombuffer(head[46:50], "<u4")[0]
    if header_size < 40:
        return "is an OS/2 BMP file, which TensorFlow cannot decode; save it as PNG"
    if bits not in (8, 24, 32) or compression not in (0, 3):  # 3: bit fields, uncompressed all the same
        return (f"is a {bits}-bit{'' if compression in (0, 3) else ' compressed'} BMP file, which "
                "TensorFlow cannot decode (it reads uncompressed 8-, 24- and 32-bit BMPs); save it as PNG")
    if bits == 8:
        colours = int(colours) or 256
        f.seek(14 + int(header_size))
        table = np.frombuffer(f.read(4 * colours), np.uint8)
        ramp = np.arange(colours, dtype=np.uint8)
        if len(table) != 4 * colours or not all(np.array_equal(table[c::4], ramp) for c in range(3)):
            return ("is an 8-bit BMP with a colour palette, which TensorFlow decodes as gray levels "
                    "(the palette's indices); save it as PNG or as a 24-bit BMP")
    return None


def check_image_files(paths):
    """Refuse image files that cannot be decoded, naming the first, before they reach the decoder
    (`Split.dataset` calls it once for the files it is about to decode).

    Files are decoded lazily, batch by batch, inside tf.data, where a broken one fails as a TensorFlow
    error that names no file. So each file's first bytes are read here (tens of microseconds a file,
    against decoding it in full): a file that is empty, unreadable or of no format that TensorFlow and
    Pillow both decode (JPEG, PNG, GIF, BMP), such as a text or HTML file named .png, is refused, as are
    BMPs that TensorFlow would decode wrongly. A file of a known format whose data are corrupt past
    its header is not found this way."""
    for path in paths:
        try:
            with open(path, "rb") as f:
                head = f.read(64)
                if not head:
                    problem = "is empty (0 bytes)"
                else:
                    kind = next((name for sig, name in _SIGNATURES if head.startswith(sig)), None)
                    if kind is None:
                        problem = f"is not a JPEG, PNG, GIF or BMP image (it begins with {head[:8]!r})"
                    else:
                        problem = _bmp_problem(head, f) if kind == "BMP" else None
        except OSError as e:
            raise DataError(f"cannot read image {path}: {e}") from e
        if problem:
            raise DataError(f"image {path} {problem}; replace it with a readable image or remove it")


def native_image_shape(path):
    """(H, W, C) of an image file as decoded: C is 1 for gray images, else 3."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(str(path)) as im:
            return (im.height, im.width, 1 if im.mode in ("L", "1", "I", "I;16", "F") else 3)
    except (OSError, UnidentifiedImageError) as e:
        raise DataError(f"cannot read image {path}: {e}") from e


def _class_folders(root):
    return sorted(p for p in Path(root).iterdir() if p.is_dir() and not p.name.startswith("."))


def _labelled_files(root, class_names):
    paths, labels = [], []
    for label, name in enumerate(class_names):
        files = image_files(Path(root) / name) if (Path(root) / name).is_dir() else []
        paths += [str(p) for p in files]
        labels += [label] * len(files)
    return np.array(paths), np.array(labels, dtype=np.int64)


def _labelled_part(root, class_names):
    paths, labels = _labelled_files(root, class_names)
    return RawPart(labels, paths=paths)


def _check_classes(root, class_root, class_names, train, test, has_split, test_fraction):
    """Refuse a folder dataset whose classes a classifier could not learn or would drop silently."""
    if has_split:
        extra = [p.name for p in _class_folders(root / "test") if p.name not in class_names and image_files(p)]
        if extra:
            raise DataError(f"image folder {root / 'test'} has classes that {root / 'train'} lacks: "
                            f"{', '.join(extra)}; every test class needs a sub-folder of training images")
    n_train = np.bincount(train.labels, minlength=len(class_names))
    n_all = n_train + (0 if has_split else np.bincount(test.labels, minlength=len(class_names)))
    empty = [name for name, count in zip(class_names, n_all) if count == 0]
    if empty:
        raise DataError(f"image folder {class_root} has no images in the class sub-folders {', '.join(empty)}; "
                        "every class needs training images: add images to them or remove them")
    held_out = [name for name, count in zip(class_names, n_train) if count == 0]
    if held_out:
        raise DataError(f"image folder {class_root} has no training images for the classes {', '.join(held_out)} "
                        f"after holding out {option('test_fraction')} {test_fraction} of each class; add images "
                        f"to them or choose a smaller {option('test_fraction')}")


def folder_has_split(root):
    """Whether an image folder holds its own train/ and test/ splits (else a test fraction is drawn)."""
    return (Path(root).expanduser() / "train").is_dir() and (Path(root).expanduser() / "test").is_dir()


def read_folder(path, test_fraction=0.2, seed=0):
    """One sub-folder per class, with train/ and test/ splits if present, else a stratified split."""
    root = Path(path).expanduser()
    if not root.is_dir():
        raise DataError(f"image folder {root} does not exist")
    has_split = folder_has_split(root)
    class_root = root / "train" if has_split else root
    class_names = [p.name for p in _class_folders(class_root)]
    if not class_names:
        raise DataError(f"image folder {class_root} has no class sub-folders (expected one folder per class)")
    if len(class_names) < 2:
        alone = class_names[0] in ("train", "test")
        hint = " (train/ and test/ are read as splits only when both exist)" if alone else ""
        raise DataError(f"image folder {class_root} has only one class sub-folder ({class_names[0]}){hint}; a "
                        "classifier needs at least two classes, one sub-folder of images per class")
    if has_split:
        train = _labelled_part(root / "train", class_names)
        test = _labelled_part(root / "test", class_names)
    else:
        paths, labels = _labelled_files(root, class_names)
        if not 0 < test_fraction < 1:
            raise DataError(f"{option('test_fraction')} must lie strictly between 0 and 1, got {test_fraction}")
        rng = np.random.default_rng(seed)
        is_test = np.zeros(len(labels), bool)
        for c in range(len(class_names)):
            members = rng.permutation(np.flatnonzero(labels == c))
            is_test[members[: int(round(len(members) * test_fraction))]] = True
        train = RawPart(labels[~is_test], paths=paths[~is_test])
        test = RawPart(labels[is_test], paths=paths[is_test])
    if len(train.labels) == 0 or len(test.labels) == 0:
        raise DataError(f"image folder {root} has no readable images in its train or test split")
    _check_classes(root, class_root, class_names, train, test, has_split, test_fraction)
    return RawDataset(train, test, class_names, native_image_shape(train.paths[0]), str(root))


def read_tiny_imagenet(data_dir=None):
    """TinyImageNet's standard layout: wnids.txt, train/<wnid>/images/, val/images/ + annotations."""
    folders = sources.explicit_folders("tiny_imagenet", data_dir) if data_dir else \
        [sources.keras_cache_dir() / "tiny-imagenet-200"]
    root = next((Path(f) for f in folders if (Path(f) / "wnids.txt").is_file()), None)
    if root is None:
        where = f"{option('data_dir')} {data_dir}" if data_dir else str(folders[0])
        raise DataError(f"no TinyImageNet found in {where} (expected wnids.txt, train/, val/); "
                        f"download tiny-imagenet-200 and pass {option('data_dir')}")
    wnids = [w.strip() for w in (root / "wnids.txt").read_text().split() if w.strip()]
    train_paths, train_labels = [], []
    for label, wnid in enumerate(wnids):
        folder = root / "train" / wnid / "images"
        files = image_files(folder) if folder.is_dir() else []
        train_paths += [str(p) for p in files]
        train_labels += [label] * len(files)
    annotations = root / "val" / "val_annotations.txt"
    if not annotations.is_file():
        raise DataError(f"{annotations} is missing")
    index = {w: i for i, w in enumerate(wnids)}
    test_paths, test_labels = [], []
    for line in annotations.read_text().splitlines():
        parts = line.split("\t")
        if len(parts) >= 2 and parts[1] in index:
            test_paths.append(str(root / "val" / "images" / parts[0]))
            test_labels.append(index[parts[1]])
    if not train_paths or not test_paths:
        raise DataError(f"TinyImageNet at {root} has no training or validation images")
    names = _wordnet_names(root, wnids)
    return RawDataset(
        RawPart(np.array(train_labels, np.int64), paths=np.array(train_paths)),
        RawPart(np.array(test_labels, np.int64), paths=np.array(test_paths)),
        names, (64, 64, 3), str(root),
    )


def _wordnet_names(root, wnids):
    words = root / "words.txt"
    if not words.is_file():
        return wnids
    table = dict(line.split("\t", 1) for line in words.read_text().splitlines() if "\t" in line)
    return [table.get(w, w).split(",")[0].strip() for w in wnids]
