"""A classifier with its ClaDec decoder and RefAE, checked to belong together."""

from dataclasses import dataclass

from cladec_cli import artifacts
from cladec_cli.classifier import load_classifier
from cladec_cli.cladec import frozen_encoder, stacked
from cladec_cli.errors import ArtifactError
from cladec_cli.layers import resolve_layer
from cladec_cli.training import predict


def check_belongs(path, provenance, classifier_digest, classifier_path, layer_name=None):
    """Refuse a decoder or RefAE made for another classifier or another layer."""
    if provenance.get("classifier_digest") != classifier_digest:
        raise ArtifactError(f"{path} was trained for another classifier, not {classifier_path} "
                            "(their weights differ); train it again for this classifier")
    if layer_name is not None and provenance.get("layer_name") != layer_name:
        raise ArtifactError(f"{path} explains layer {provenance.get('layer_name')!r} but the decoder explains "
                            f"{layer_name!r}; use files made for the same layer")


@dataclass
class Explainer:
    """Everything needed to explain one layer: classifier, encoder + decoder (ClaDec), RefAE."""

    classifier: object
    classifier_provenance: dict
    cladec: object
    decoder_provenance: dict
    refae: object = None
    refae_provenance: dict = None

    @property
    def layer(self):
        return resolve_layer(self.classifier, self.decoder_provenance["layer_name"])

    @property
    def image_shape(self):
        return tuple(int(d) for d in self.classifier.inputs[0].shape[1:])

    def reconstructions(self, images, batch_size=256):
        """{'cladec': ..., 'refae': ...} reconstructions of an image array."""
        out = {"cladec": predict(self.cladec, images, batch_size)}
        if self.refae is not None:
            out["refae"] = predict(self.refae, images, batch_size)
        return out

    def classify(self, images, batch_size=512):
        """The classifier's predicted class per image."""
        return predict(self.classifier, images, batch_size).argmax(axis=1)


def load_explainer(classifier_path, decoder_path, refae_path=None, trust=False):
    """Load and cross-check a classifier, its ClaDec decoder and (optionally) its RefAE.

    `trust` allows model files with Lambda layers, which run code stored in the file.
    """
    classifier, classifier_prov = load_classifier(classifier_path, trust)
    decoder, decoder_prov = artifacts.load_model(decoder_path, kind="cladec_decoder", trust=trust)
    digest = artifacts.weights_digest(classifier)
    check_belongs(decoder_path, decoder_prov, digest, classifier_path)
    layer = resolve_layer(classifier, decoder_prov["layer_name"])
    cladec = stacked(frozen_encoder(classifier, layer), decoder, "cladec")
    refae, refae_prov = (None, None)
    if refae_path:
        refae, refae_prov = artifacts.load_model(refae_path, kind="refae", trust=trust)
        check_belongs(refae_path, refae_prov, digest, classifier_path, layer.name)
    return Explainer(classifier, classifier_prov, cladec, decoder_prov, refae, refae_prov)
