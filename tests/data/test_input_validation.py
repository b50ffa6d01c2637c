"""Bad input data is refused when it is read, with one clear message, instead of failing later or giving
wrong numbers: labels, pixel values, empty arrays, broken image files and folder classes."""

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from cladec_cli.data.datasets import load_dataset
from cladec_cli.data.preprocess import to_unit_float
from cladec_cli.errors import DataError, for_cli
from conftest import synthetic_images, write_idx, write_idx_dataset
from image_files import write_image_folder


def write_arrays(path, x_train=None, y_train=None, x_test=None, y_test=None, **extra):
    """An npz: dataset of 8 synthetic 8x8 gray images per split (4 classes), with any array replaced."""
    x, y = synthetic_images(8, size=8)
    arrays = {"x_train": x, "y_train": y, "x_test": x, "y_test": y}
    given = {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}
    arrays.update({k: v for k, v in given.items() if v is not None}, **extra)
    np.savez(path, **arrays)
    return f"npz:{path}"


def refused(name, *words, **options):
    """The DataError that load_dataset raises for `name`: one line holding each of `words`."""
    with pytest.raises(DataError) as info:
        load_dataset(name, **options)
    message = str(info.value)
    for word in words:
        assert word in message, message
    assert "\n" not in message
    return info.value


def refused_when_read(name, *words, **options):
    """The DataError that reading the images of `name`'s splits raises (files are checked just before they
    are decoded, not when the dataset is listed): one line holding each of `words`."""
    data = load_dataset(name, **options)
    with pytest.raises(DataError) as info:
        for split in (data.train, data.test):
            split.dataset(8)
    message = str(info.value)
    for word in words:
        assert word in message, message
    assert "\n" not in message
    return info.value


# Labels ---------------------------------------------------------------------------------------------

def test_negative_npz_label(tmp_path):
    y = np.array([0, 1, 2, 3, 0, -1, 2, 3])
    refused(write_arrays(tmp_path / "neg.npz", y_test=y), str(tmp_path / "neg.npz"), "y_test", "-1",
            "image 5", "negative")


def test_npz_label_beyond_its_class_names(tmp_path):
    y = np.array([0, 1, 2, 3, 4, 1, 2, 3])
    names = np.array(["a", "b", "c", "d"])
    refused(write_arrays(tmp_path / "four.npz", y_train=y, class_names=names), "four.npz", "y_train",
            "label 4", "class_names array names 4 classes", "0 to 3")


def test_class_names_fix_the_number_of_npz_classes(tmp_path):
    """Labels 0 to 2 with four class names: four classes, named as the file says (not renumbered)."""
    y = np.arange(8) % 3
    data = load_dataset(write_arrays(tmp_path / "n.npz", y_train=y, y_test=y, class_names=np.array(list("abcd"))))
    assert data.class_names == ["a", "b", "c", "d"] and data.n_classes == 4


def test_npz_test_classes_without_training_images_are_refused(tmp_path):
    y = np.arange(8) % 4
    refused(write_arrays(tmp_path / "shifted.npz", y_test=y + 5), "shifted.npz",
            "y_test holds classes that y_train lacks (5, 6, 7, 8)", "every test class needs training images")
    refused(write_arrays(tmp_path / "gap.npz", y_train=np.where(y == 2, 3, y), y_test=np.where(y == 2, 3, y)),
            "gap.npz", "y_train has no images of class 2;")


def test_one_based_npz_labels_are_refused_with_a_hint(tmp_path):
    y = np.arange(8) % 4 + 1
    refused(write_arrays(tmp_path / "one.npz", y_train=y, y_test=y), "one.npz", "y_train has no images of class 0",
            "labels start at 1 here, but class indices start at 0: save y - 1")


def test_byte_string_npz_class_names_are_decoded(tmp_path):
    names = np.array([b"r", b"g", b"b", "\xc3\xa9".encode("latin-1")])  # the last: UTF-8 bytes of an e acute
    data = load_dataset(write_arrays(tmp_path / "b.npz", class_names=names))
    assert data.class_names == ["r", "g", "b", "\u00e9"]


def test_channels_first_npz_images_are_refused_with_the_transpose(tmp_path):
    x, _ = synthetic_images(8, size=8, channels=3)
    refused(write_arrays(tmp_path / "chw.npz", x_train=x.transpose(0, 3, 1, 2)), "chw.npz",
            "x_train has shape (8, 3, 8, 8), which looks channels-first", "x_train.transpose(0, 2, 3, 1)")
    two = np.repeat(synthetic_images(8, size=8)[0].reshape(8, 8, 8, 1), 2, axis=-1)
    refused(write_arrays(tmp_path / "two.npz", x_test=two), "two.npz", "x_test has 2 channels",
            "gray (1 channel), RGB (3) or RGBA (4)")


def test_a_file_that_is_no_npz_archive_is_refused_as_such(tmp_path):
    path = tmp_path / "notes.npz"
    path.write_text("x_train, y_train")
    refused(f"npz:{path}", "is not an .npz file (it begins with b'x_tr'", "numpy.savez")


def test_npz_labels_that_are_not_whole_numbers(tmp_path):
    y = np.array([0.0, 1.0, 2.0, 3.0, 0.5, 1.5, 2.0, 3.0])
    refused(write_arrays(tmp_path / "half.npz", y_train=y), "half.npz", "y_train", "0.5", "image 4",
            "not a whole number")
    nan = np.array([0.0, 1.0, np.nan, 3.0, 0.0, 1.0, 2.0, 3.0])
    refused(write_arrays(tmp_path / "nan.npz", y_train=nan), "nan.npz", "nan", "image 2")


def test_whole_float_npz_labels_are_class_indices(tmp_path):
    y = (np.arange(8) % 4).astype(np.float32)
    data = load_dataset(write_arrays(tmp_path / "f.npz", y_train=y, y_test=y))
    assert data.train.labels.dtype == np.int64
    np.testing.assert_array_equal(data.train.labels, np.arange(8) % 4)


def test_one_hot_npz_labels(tmp_path):
    """A one-hot N x K array was refused as 'N images but N*K labels'; now the message says what to do."""
    one_hot = np.eye(4, dtype=np.float32)[np.arange(8) % 4]
    refused(write_arrays(tmp_path / "hot.npz", y_train=one_hot), "hot.npz", "y_train", "(8, 4)",
            "one class index per image", "argmax(axis=1)")


def test_huge_npz_label_without_class_names(tmp_path):
    y = np.array([0, 1, 2, 3, 0, 1, 2, 10 ** 9])
    refused(write_arrays(tmp_path / "huge.npz", y_train=y), "huge.npz", "1000000000", "16 images")
    too_large = np.array([0, 1, 2, 3, 0, 1, 2, 3e30])
    refused(write_arrays(tmp_path / "wrap.npz", y_train=too_large), "wrap.npz", "too large")


def test_idx_label_beyond_ten_classes(tmp_path):
    folder = write_idx_dataset(tmp_path, n_train=20, n_test=10)
    labels = synthetic_images(10, size=28, n_classes=10, seed=1)[1]
    labels[7] = 12
    path = write_idx(folder / "t10k-labels-idx1-ubyte.gz", labels)
    refused("fashion_mnist", str(path), "label 12", "image 7", "fashion_mnist has 10 classes",
            data_dir=folder)


def test_mnist_npz_label_beyond_ten_classes(tmp_path):
    x, y = synthetic_images(12, size=28, n_classes=10)
    y[3] = 10
    np.savez(tmp_path / "mnist.npz", x_train=x[..., 0], y_train=y, x_test=x[..., 0], y_test=y)
    refused("mnist", "mnist.npz", "y_train", "label 10", "mnist has 10 classes", data_dir=tmp_path)


# Pixel values ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("low, high", [(0.0, 1000.0), (-0.5, 0.5), (-1.0, 1.0), (0.0, 255.5)])
def test_float_pixels_outside_both_ranges(tmp_path, low, high):
    x = np.linspace(low, high, 8 * 8 * 8, dtype=np.float32).reshape(8, 8, 8)
    error = refused(write_arrays(tmp_path / "px.npz", x_test=x), "px.npz", "x_test", f"{low:g} to {high:g}",
                    "[0, 1] or [0, 255]", "`pixel_range`")
    assert "set with --pixel-range" in for_cli(error)  # the option's name on the command line


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_pixels_that_are_not_finite(tmp_path, bad):
    x = np.full((8, 8, 8), 0.5, np.float32)
    x[3, 2, 1] = bad
    refused(write_arrays(tmp_path / "nf.npz", x_train=x), "nf.npz", "x_train", "not finite", "image 3",
            str(float(bad)))


def test_all_nan_pixels(tmp_path):
    refused(write_arrays(tmp_path / "allnan.npz", x_train=np.full((8, 8, 8), np.nan)), "allnan.npz", "not finite",
            "image 0")


def test_accepted_pixel_ranges_give_the_same_images(tmp_path):
    x, _ = synthetic_images(8, size=8)
    images = {}
    for name, array in {"uint8": x, "unit": x.astype(np.float64) / 255, "bytes": x.astype(np.float32),
                        "int": x.astype(np.int32)}.items():
        images[name] = load_dataset(write_arrays(tmp_path / f"{name}.npz", x_train=array), resize="nearest",
                                    image_shape=(8, 8, 1)).train.images
    for name in ("unit", "bytes", "int"):
        np.testing.assert_allclose(images[name], images["uint8"], atol=1e-6)


def test_one_scale_for_all_splits(tmp_path):
    # Floats in [0, 255] whose test images are all dark (no value above 1): read in the training images'
    # range, not as [0, 1] images of their own.
    x, _ = synthetic_images(8, size=8)
    dark = np.full((8, 8, 8), 0.5, np.float32)
    data = load_dataset(write_arrays(tmp_path / "d.npz", x_train=x.astype(np.float32), x_test=dark), resize="nearest",
                        image_shape=(8, 8, 1))
    np.testing.assert_allclose(data.test.images, 0.5 / 255, rtol=1e-6)
    np.testing.assert_allclose(data.train.images, x / 255.0, atol=1e-6)


def test_to_unit_float_refuses_what_it_would_misread():
    with pytest.raises(DataError, match=r"from 0 to 1000 .*\[0, 1\] or \[0, 255\]"):
        to_unit_float(np.linspace(0, 1000, 64).reshape(1, 8, 8))
    np.testing.assert_allclose(to_unit_float(np.full((1, 2, 2), 255.0)), 1.0)
    # Floats just above 1 overshoot [0, 1]; read as [0, 255] they would come out nearly black.
    with pytest.raises(DataError, match=r"just above 1.*clip them to \[0, 1\]"):
        to_unit_float(np.full((1, 2, 2), 1.0000001))
    np.testing.assert_allclose(to_unit_float(np.full((1, 2, 2), 1.0)), 1.0)
    np.testing.assert_allclose(to_unit_float(np.full((1, 2, 2), 2.5)), 2.5 / 255)


def test_image_array_of_strings(tmp_path):
    refused(write_arrays(tmp_path / "s.npz", x_train=np.full((8, 8, 8), "a")), "s.npz", "x_train", "numbers")


# Empty arrays ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("split", ["train", "test"])
def test_npz_without_images(tmp_path, split):
    arrays = {f"x_{split}": np.zeros((0, 8, 8), np.uint8), f"y_{split}": np.zeros(0, np.int64)}
    refused(write_arrays(tmp_path / "empty.npz", **arrays), "empty.npz", f"x_{split}", "no images")


# Broken image files ---------------------------------------------------------------------------------

def test_text_file_named_png(tmp_path):
    write_image_folder(tmp_path, n_per_class=4)
    broken = tmp_path / "dog" / "dog_0002.png"
    broken.write_text("this is not a picture")
    refused_when_read(f"folder:{tmp_path}", str(broken), "not a JPEG, PNG, GIF or BMP image", "b'this is '",
            test_fraction=0.25)


def test_empty_image_file(tmp_path):
    write_image_folder(tmp_path, n_per_class=4)
    (tmp_path / "eel" / "eel_0001.png").write_bytes(b"")
    refused_when_read(f"folder:{tmp_path}", "eel_0001.png", "is empty", test_fraction=0.25)


def test_tiny_imagenet_validation_image_that_is_missing(tmp_path):
    from image_files import write_tiny_imagenet

    root = write_tiny_imagenet(tmp_path, n_train=2, n_val=1)
    (root / "val" / "images" / "val_1.JPEG").unlink()
    refused_when_read("tiny_imagenet", "cannot read image", "val_1.JPEG", data_dir=root)


def test_broken_file_outside_the_limit_is_not_read(tmp_path):
    write_image_folder(tmp_path / "train", classes=("a", "b"), n_per_class=4)
    write_image_folder(tmp_path / "test", classes=("a", "b"), n_per_class=4)
    data = load_dataset(f"folder:{tmp_path}", limit=2)  # one image of each class per split
    unused = sorted(set(load_dataset(f"folder:{tmp_path}").train.paths) - set(data.train.paths))[-1]
    with open(unused, "wb") as f:
        f.write(b"GARBAGE!")
    limited = load_dataset(f"folder:{tmp_path}", limit=2)
    assert limited.train.paths.tolist() == data.train.paths.tolist()
    limited.train.dataset(8)  # reads only the files it decodes
    refused_when_read(f"folder:{tmp_path}", unused)


def bmp_folder(tmp_path, image):
    """A train/test folder of PNGs, with `image` (a Pillow image) saved as BMP among the training images."""
    write_image_folder(tmp_path / "train", classes=("a", "b"), n_per_class=3, channels=1)
    write_image_folder(tmp_path / "test", classes=("a", "b"), n_per_class=2, channels=1)
    image.save(tmp_path / "train" / "a" / "extra.bmp")
    return f"folder:{tmp_path}"


def test_bmp_that_tensorflow_cannot_decode(tmp_path):
    spec = bmp_folder(tmp_path, Image.fromarray(np.full((16, 16), 255, np.uint8)).convert("1"))
    refused_when_read(spec, "extra.bmp", "1-bit BMP", "save it as PNG")


def test_palette_bmp_that_tensorflow_would_read_as_gray(tmp_path):
    """TensorFlow ignores an 8-bit BMP's palette: a red image would come out a dark gray, silently."""
    rgb = np.zeros((16, 16, 3), np.uint8)
    rgb[..., 0] = 255
    refused_when_read(bmp_folder(tmp_path, Image.fromarray(rgb).convert("P")), "extra.bmp", "colour palette")


def test_gray_and_colour_bmps_are_read(tmp_path):
    gray = np.tile(np.arange(0, 256, 16, dtype=np.uint8), (16, 1))
    data = load_dataset(bmp_folder(tmp_path / "gray", Image.fromarray(gray)), image_shape=(16, 16, 1))
    index = [p.endswith("extra.bmp") for p in data.train.paths].index(True)
    np.testing.assert_allclose(data.train.arrays()[0][index, ..., 0], gray / 255.0, atol=1e-6)
    load_dataset(bmp_folder(tmp_path / "rgb", Image.fromarray(np.dstack([gray] * 3))))


# Folder classes -------------------------------------------------------------------------------------

def test_test_class_missing_from_train(tmp_path):
    write_image_folder(tmp_path / "train", classes=("cat", "dog"), n_per_class=3)
    write_image_folder(tmp_path / "test", classes=("cat", "dog", "eel"), n_per_class=2)
    refused(f"folder:{tmp_path}", str(tmp_path / "test"), "lacks: eel")


def test_folder_with_one_class(tmp_path):
    write_image_folder(tmp_path, classes=("only",), n_per_class=6)
    refused(f"folder:{tmp_path}", "only one class", "(only)", "at least two classes")
    write_image_folder(tmp_path / "split" / "train", classes=("a",), n_per_class=3)
    write_image_folder(tmp_path / "split" / "test", classes=("a",), n_per_class=3)
    refused(f"folder:{tmp_path / 'split'}", "only one class")
    write_image_folder(tmp_path / "half" / "train", classes=("a", "b"), n_per_class=3)  # no test/ beside it
    refused(f"folder:{tmp_path / 'half'}", "only one class sub-folder (train)", "only when both exist")


def test_class_folder_without_images(tmp_path):
    write_image_folder(tmp_path / "train", classes=("a", "b"), n_per_class=3)
    (tmp_path / "train" / "c").mkdir()
    write_image_folder(tmp_path / "test", classes=("a", "b", "c"), n_per_class=2)
    refused(f"folder:{tmp_path}", str(tmp_path / "train"), "no images in the class sub-folders c")


def test_class_held_out_whole(tmp_path):
    """One image of class b and test_fraction 0.6: the split puts it in the test images."""
    write_image_folder(tmp_path, classes=("a", "b"), n_per_class=5)
    for path in sorted((tmp_path / "b").iterdir())[1:]:
        path.unlink()
    refused(f"folder:{tmp_path}", "no training images for the classes b after holding out `test_fraction` 0.6",
            test_fraction=0.6)


# The command line -----------------------------------------------------------------------------------

def test_command_line_says_it_in_one_line(tmp_path):
    from cladec_cli.cli.main import cli

    spec = write_arrays(tmp_path / "neg.npz", y_train=np.array([0, 1, 2, 3, 0, -1, 2, 3]))
    result = CliRunner().invoke(cli, ["train-classifier", "--dataset", spec, "--epochs", "1",
                                      "--out", str(tmp_path / "c.h5")])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("cladec: error: ") and "neg.npz: y_train" in lines[0]
    assert not (tmp_path / "c.h5").exists()
