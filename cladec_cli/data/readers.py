"""Readers that turn each supported dataset into raw train/test parts."""

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cladec_cli.data import sources
from cladec_cli.data.idx import read_idx_pair
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
                return _from_npz_file(npz, [str(i) for i in range(10)])
    for folder in folders:
        files = sources.find_idx_files(folder)
        if files:
            train = RawPart(*reversed(read_idx_pair(*files["train"])))
            test = RawPart(*reversed(read_idx_pair(*files["test"])))
            return _mnist_dataset(name, train, test, str(folder))
    if data_dir:
        raise DataError(
            f"{option('data_dir')} {data_dir} has no {name} files (expected train-images-idx3-ubyte[.gz], "
            f"train-labels-idx1-ubyte[.gz], t10k-images-idx3-ubyte[.gz], t10k-labels-idx1-ubyte[.gz])"
        )
    if not download:
        raise DataError(f"no {name} data found in {', '.join(map(str, folders))}; {sources.how_to_get(name)}")
    (xtr, ytr), (xte, yte) = sources.keras_download(name)
    return _mnist_dataset(name, RawPart(ytr.astype(np.int64), xtr), RawPart(yte.astype(np.int64), xte),
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


def _from_npz_file(path, class_names=None):
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [k for k in ("x_train", "y_train", "x_test", "y_test") if k not in data]
            if missing:
                raise DataError(f"{path} lacks the arrays {', '.join(missing)}")
            arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError) as e:
        raise DataError(f"cannot read {path} as an .npz file: {e}") from e
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"].reshape(-1)
        if len(x) != len(y):
            raise DataError(f"{path}: x_{split} has {len(x)} images but y_{split} has {len(y)} labels")
        if x.ndim not in (3, 4):
            raise DataError(f"{path}: x_{split} must be N x H x W or N x H x W x C, has shape {x.shape}")
    names = class_names or [str(n) for n in arrays.get("class_names", [])]
    n_classes = int(max(arrays["y_train"].max(), arrays["y_test"].max())) + 1
    names = names if len(names) == n_classes else [str(i) for i in range(n_classes)]
    x = arrays["x_train"]
    native = tuple(x.shape[1:3]) + ((x.shape[3],) if x.ndim == 4 else (1,))
    return RawDataset(
        RawPart(arrays["y_train"].reshape(-1).astype(np.int64), arrays["x_train"]),
        RawPart(arrays["y_test"].reshape(-1).astype(np.int64), arrays["x_test"]),
        names, native, str(path),
    )


def image_files(folder):
    """Image files directly in `folder` (sorted), by suffix."""
    return sorted(p for p in Path(folder).iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def native_image_shape(path):
    """(H, W, C) of an image file as decoded: C is 1 for gray images, else 3."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
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


def read_folder(path, test_fraction=0.2, seed=0):
    """One sub-folder per class, with train/ and test/ splits if present, else a stratified split."""
    root = Path(path).expanduser()
    if not root.is_dir():
        raise DataError(f"image folder {root} does not exist")
    has_split = (root / "train").is_dir() and (root / "test").is_dir()
    class_root = root / "train" if has_split else root
    class_names = [p.name for p in _class_folders(class_root)]
    if not class_names:
        raise DataError(f"image folder {class_root} has no class sub-folders (expected one folder per class)")
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
