"""Where dataset files live: explicit folders, Keras' cache, Debian's package, Keras' download."""

import contextlib
import os
import sys
from pathlib import Path

from cladec_cli.errors import DataError, option

IDX_NAMES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
DEBIAN_DIRS = {
    "fashion_mnist": Path("/usr/share/datasets/fashion-mnist"),
    "mnist": Path("/usr/share/datasets/mnist"),
}
DEBIAN_PACKAGES = {"fashion_mnist": "dataset-fashion-mnist", "mnist": "dataset-mnist"}
FOLDER_NAMES = {
    "fashion_mnist": ("fashion-mnist", "fashion_mnist"),
    "mnist": ("mnist",),
    "tiny_imagenet": ("tiny-imagenet-200", "tiny_imagenet"),
}


def keras_cache_dir():
    """Keras' dataset cache folder (`$KERAS_HOME/datasets`, by default `~/.keras/datasets`)."""
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return Path(home) / "datasets"


def find_idx_files(folder):
    """{'train': (images, labels), 'test': (...)} for IDX files in `folder` (.gz or raw), or None."""
    found = {}
    for split, names in IDX_NAMES.items():
        paths = []
        for name in names:
            options = [Path(folder) / f"{name}.gz", Path(folder) / name]
            hit = next((p for p in options if p.is_file()), None)
            if hit is None:
                return None
            paths.append(hit)
        found[split] = tuple(paths)
    return found


def explicit_folders(name, data_dir):
    """The folder itself and its dataset-named sub-folders; the folder must exist."""
    root = Path(data_dir).expanduser()
    if not root.is_dir():
        raise DataError(f"{option('data_dir')} {data_dir} does not exist or is not a folder")
    return [root] + [root / sub for sub in FOLDER_NAMES.get(name, ())]


def default_folders(name):
    """Folders searched when no --data-dir is given, in order."""
    cache = keras_cache_dir()
    folders = [cache / sub for sub in FOLDER_NAMES.get(name, ())]
    if name in DEBIAN_DIRS:
        folders.append(DEBIAN_DIRS[name])
    return folders


def how_to_get(name):
    """One sentence telling the user how to make `name` available offline."""
    if name in DEBIAN_PACKAGES:
        return (f"install it with `apt-get install {DEBIAN_PACKAGES[name]}` "
                f"or pass {option('data_dir')} with the IDX files")
    return f"pass {option('data_dir')} with the dataset's folder"


def keras_download(name):
    """Arrays from Keras' own downloader, or a DataError saying how to get the data offline."""
    import keras

    loader = {"fashion_mnist": keras.datasets.fashion_mnist, "mnist": keras.datasets.mnist}[name]
    try:
        # Keras prints its download progress on stdout, which belongs to --json.
        with contextlib.redirect_stdout(sys.stderr):
            return loader.load_data()
    except Exception as e:  # the downloader raises many kinds of network errors
        raise DataError(
            f"no {name} data found locally and the download failed ({type(e).__name__}); {how_to_get(name)}"
        ) from e
