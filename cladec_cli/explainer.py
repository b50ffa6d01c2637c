"""A classifier with its ClaDec decoder and RefAE, checked to belong together."""

from dataclasses import dataclass
from functools import cached_property

import keras
import numpy as np

from cladec_cli import artifacts
from cladec_cli.classifier import load_classifier
from cladec_cli.cladec import frozen_encoder, stacked
from cladec_cli.data.names import same_dataset
from cladec_cli.errors import ArtifactError, DataError, option
from cladec_cli.layers import check_supported, resolve_layer
from cladec_cli.pixels import in_range
from cladec_cli.training import predict


def layer_convention(provenance):
    """The layer convention a decoder or RefAE was made under (files from before conventions: blocks)."""
    return provenance.get("layer_convention", "blocks")


def check_belongs(path, provenance, classifier_digest, classifier_path, layer_name=None, pixel_range=None):
    """Refuse a decoder or RefAE made for another classifier, another layer or another pixel range."""
    if provenance.get("classifier_digest") != classifier_digest:
        raise ArtifactError(f"{path} was trained for another classifier, not {classifier_path} "
                            "(their weights differ); train it again for this classifier")
    if layer_name is not None and provenance.get("layer_name") != layer_name:
        raise ArtifactError(f"{path} explains layer {provenance.get('layer_name')!r} but the decoder explains "
                            f"{layer_name!r}; use files made for the same layer")
    if pixel_range is not None and recorded_pixel_range(provenance) != pixel_range:
        raise ArtifactError(f"{path} was trained with pixel range {recorded_pixel_range(provenance)} but the "
                            f"decoder with {pixel_range}; use files made for the same pixel range")


# What a model file records about the images it was trained on.
DATA_FIELDS = ("dataset", "limit", "split_seed", "test_fraction", "resize")


def check_same_data(path, provenance, decoder_provenance):
    """Refuse a RefAE trained on other images than the decoder (another dataset, subset, split or resize):
    their reconstructions would not be comparable."""
    def same(key):
        mine, theirs = provenance[key], decoder_provenance[key]
        return same_dataset(mine, theirs) if key == "dataset" else mine == theirs

    differ = [f"{key} {provenance[key]} against {decoder_provenance[key]}" for key in DATA_FIELDS
              if key in provenance and key in decoder_provenance and not same(key)]
    if differ:
        raise ArtifactError(f"{path} was trained on other images than the decoder ({'; '.join(differ)}); "
                            "use files trained on the same data")


def recorded_pixel_range(provenance):
    """The pixel range a decoder or RefAE was trained with (files from before ranges existed: 0,1)."""
    return provenance.get("pixel_range", "0,1")


@dataclass
class Explainer:
    """Everything needed to explain one layer: classifier, encoder + decoder (ClaDec), RefAE.

    All of them take [0, 1] images; the classifier sees them in `pixel_range`, the range the
    decoder was trained with.
    """

    classifier: object
    classifier_provenance: dict
    cladec: object
    decoder_provenance: dict
    refae: object = None
    refae_provenance: dict = None
    paths: dict = None

    def models_record(self):
        """Which model files (path, when loaded from one, and weights digest) the explainer holds."""
        paths = self.paths or {}
        parts = {"classifier": self.decoder_provenance.get("classifier_digest"),
                 "decoder": self.decoder_provenance.get("digest")}
        if self.refae is not None:
            parts["refae"] = (self.refae_provenance or {}).get("digest")
        return {part: {"path": paths.get(part), "digest": digest} for part, digest in parts.items()}

    @property
    def pixel_range(self):
        return recorded_pixel_range(self.decoder_provenance)

    @property
    def _data_is_the_decoders(self):
        # The decoder trained on the classifier's data (and split) unless the classifier records none (one
        # of your own) or the decoder records another dataset.
        decoder_dataset = self.decoder_provenance.get("dataset")
        return not self.classifier_provenance.get("dataset") or (
            decoder_dataset is not None and not same_dataset(decoder_dataset, self.classifier_provenance["dataset"]))

    @property
    def data_provenance(self):
        """The record of the images the decoder was trained on: the classifier's when it trained on the
        classifier's dataset, else its own."""
        return self.decoder_provenance if self._data_is_the_decoders else self.classifier_provenance

    @property
    def data_source(self):
        """Whose record `data_provenance` is, as messages name it."""
        return "the decoder" if self._data_is_the_decoders else "the classifier"

    @property
    def resize(self):
        """How images are fitted to the model's input: as the images of `data_provenance` were."""
        return self.data_provenance.get("resize") or "bilinear"

    @cached_property
    def scaled_classifier(self):
        """The classifier taking [0, 1] images (rescaled to its pixel range)."""
        return in_range(self.classifier, self.pixel_range)

    @property
    def layer(self):
        provenance = self.decoder_provenance
        return resolve_layer(self.classifier, provenance["layer_name"], layer_convention(provenance))

    @property
    def image_shape(self):
        return tuple(int(d) for d in self.classifier.inputs[0].shape[1:])

    @property
    def reconstructors(self):
        """{'cladec': model, 'refae': model}: image -> reconstruction models (RefAE when loaded)."""
        return {"cladec": self.cladec, **({"refae": self.refae} if self.refae is not None else {})}

    def check_images(self, images, in_range=True):
        """Refuse `images` that are not an array of [0, 1] floats of the classifier's input shape (n x H x W
        x C): explanations of other images would be wrong or fail deep inside the models. Without
        `in_range`, values outside [0, 1] pass."""
        images = np.asarray(images)
        want = "x".join(map(str, self.image_shape))
        if images.ndim != 4 or tuple(images.shape[1:]) != self.image_shape:
            raise DataError(f"{option('images')} must be an array of n images of {want}, got shape {images.shape}")
        if not np.issubdtype(images.dtype, np.floating):
            raise DataError(f"{option('images')} must be floats in [0, 1], got {images.dtype} (divide 0..255 "
                            "pixels by 255)")
        # Resizing and gray conversion may round a white pixel to just above 1.
        if in_range and images.size and not (images.min() >= -1e-5 and images.max() <= 1 + 1e-5):
            raise DataError(f"{option('images')} must lie in [0, 1], got values from {images.min():g} to "
                            f"{images.max():g}")

    def reconstructions(self, images, batch_size=256):
        """{'cladec': ..., 'refae': ...} reconstructions of an array of [0, 1] images (`check_images`)."""
        self.check_images(images)
        return {method: predict(model, images, batch_size) for method, model in self.reconstructors.items()}

    def classify(self, images, batch_size=512):
        """The classifier's predicted class per image of an array of the classifier's input shape, [0, 1]
        floats; values beyond are taken as they are, as a ReLU decoder's reconstructions may have them."""
        self.check_images(images, in_range=False)
        return predict(self.scaled_classifier, images, batch_size).argmax(axis=1)


def load_explainer(classifier_path, decoder_path, refae_path=None, trust=False):
    """Load and cross-check a classifier, its ClaDec decoder and (optionally) its RefAE; returns an
    `Explainer`. The classifier is a model file, or a Keras model in memory (as the training functions
    take it: one of your own, without a record).

    `trust` allows model files with Lambda layers, which run code stored in the file.
    """
    if isinstance(classifier_path, keras.Model):
        classifier, classifier_prov = classifier_path, {}
        check_supported(classifier)
        classifier_path = f"the model {classifier.name!r}"  # as messages name it; it has no file
        path_of_classifier = None
    else:
        classifier, classifier_prov = load_classifier(classifier_path, trust)
        path_of_classifier = str(classifier_path)
    decoder, decoder_prov = artifacts.load_model(decoder_path, kind="cladec_decoder", trust=trust)
    digest = artifacts.weights_digest(classifier)
    check_belongs(decoder_path, decoder_prov, digest, classifier_path)
    layer = resolve_layer(classifier, decoder_prov["layer_name"], layer_convention(decoder_prov))
    pixel_range = recorded_pixel_range(decoder_prov)
    cladec = stacked(frozen_encoder(classifier, layer, pixel_range), decoder, "cladec")
    refae, refae_prov = (None, None)
    if refae_path:
        refae, refae_prov = artifacts.load_model(refae_path, kind="refae", trust=trust)
        check_belongs(refae_path, refae_prov, digest, classifier_path, layer.name, pixel_range)
        check_same_data(refae_path, refae_prov, decoder_prov)
    paths = {"classifier": path_of_classifier, "decoder": str(decoder_path),
             "refae": str(refae_path) if refae_path else None}
    return Explainer(classifier, classifier_prov, cladec, decoder_prov, refae, refae_prov, paths)
