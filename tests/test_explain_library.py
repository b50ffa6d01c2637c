"""Choosing the images to explain, and the prototype grid, through the library."""

import keras
import numpy as np
import pytest
from PIL import Image

from cladec_cli.errors import ArtifactError, UsageError
from cladec_cli.explain import images_to_explain, write_prototype_grid
from cladec_cli.explainer import load_explainer


@pytest.fixture(scope="module")
def explainer(trained):
    return load_explainer(trained["classifier"], trained["decoder"], trained["refae"])


def test_test_images_of_a_class_or_by_number(explainer, setup):
    _, _, data = setup
    images, labels, names = images_to_explain(explainer, data.test, data.class_names, class_name="top-right", count=3)
    assert images.shape == (3, 32, 32, 1) and labels.tolist() == [1, 1, 1]
    assert names == [f"test #{i}" for i in np.flatnonzero(data.test.labels == 1)[:3]]
    images, labels, names = images_to_explain(explainer, data.test, data.class_names, indices=[4, 0])
    np.testing.assert_array_equal(images, data.test.images[[4, 0]])
    assert names == ["test #4", "test #0"]


def test_own_files_the_first_count_of_them(explainer, tmp_path):
    for name, value in (("b.png", 10), ("a.png", 200), ("c.png", 90)):
        Image.fromarray(np.full((28, 28), value, np.uint8), "L").save(tmp_path / name)
    images, labels, names = images_to_explain(explainer, None, [], images_dir=tmp_path, count=2)
    assert names == ["a.png", "b.png"] and labels is None and images.shape == (2, 32, 32, 1)
    np.testing.assert_allclose(images[0], 200 / 255, atol=1e-6)
    with pytest.raises(UsageError, match="`images_dir` explains your own files; leave out `indices`"):
        images_to_explain(explainer, None, [], images_dir=tmp_path, indices=[0])


def test_prototype_grid_has_a_row_per_class(explainer, setup, tmp_path):
    _, _, data = setup
    size, classes = write_prototype_grid(tmp_path / "p.png", explainer, data.train, data.class_names)
    assert classes == data.class_names and Image.open(tmp_path / "p.png").size == size


def test_an_explainer_takes_the_classifier_as_a_model_in_memory(trained, setup):
    classifier, _, dataset = setup
    from_memory = load_explainer(classifier, trained["decoder"], trained["refae"])
    from_files = load_explainer(trained["classifier"], trained["decoder"], trained["refae"])
    images = dataset.test.arrays()[0][:4]
    for method in ("cladec", "refae"):
        np.testing.assert_array_equal(from_memory.reconstructions(images)[method],
                                      from_files.reconstructions(images)[method])
    assert from_memory.models_record()["classifier"]["path"] is None
    other = keras.models.clone_model(classifier)  # the same architecture, freshly initialised
    with pytest.raises(ArtifactError, match="trained for another classifier, not the model"):
        load_explainer(other, trained["decoder"])


def test_a_refae_of_the_same_folder_named_otherwise_is_the_same_data(tmp_path, monkeypatch):
    from cladec_cli.explainer import check_same_data

    (tmp_path / "images").mkdir()
    monkeypatch.chdir(tmp_path)
    decoder = {"dataset": f"folder:{tmp_path / 'images'}", "resize": "bilinear"}
    check_same_data("refae.h5", {"dataset": "folder:images", "resize": "bilinear"}, decoder)
    check_same_data("refae.h5", {"dataset": "folder:./images/", "resize": "bilinear"}, decoder)
    with pytest.raises(ArtifactError, match="dataset folder:other against"):
        check_same_data("refae.h5", {"dataset": "folder:other", "resize": "bilinear"}, decoder)
