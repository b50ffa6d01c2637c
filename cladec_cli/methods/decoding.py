"""ClaDec and RefAE as explanation methods: the layer's code decoded into a picture."""

from cladec_cli.cladec import frozen_encoder
from cladec_cli.methods.base import Method
from cladec_cli.pixels import in_range


class ClaDec(Method):
    """The explained layer's activations decoded by the decoder trained for them."""

    name, title, kind, needs = "cladec", "ClaDec", "image", ("a ClaDec decoder",)

    @property
    def reconstructor(self):
        return self.explainer.cladec

    def parts(self):
        """(encoder: [0, 1] images -> the layer's code, decoder: code -> picture)."""
        explainer = self.explainer
        return (frozen_encoder(explainer.classifier, explainer.layer, explainer.pixel_range),
                explainer.cladec.get_layer("decoder"))


class RefAE(Method):
    """The reference autoencoder's reconstruction (same architecture, trained for reconstruction only)."""

    name, title, kind, needs = "refae", "RefAE", "image", ("a RefAE",)

    def available(self):
        return self.explainer.refae is not None

    @property
    def reconstructor(self):
        return self.explainer.refae

    def parts(self):
        """(encoder: [0, 1] images -> the RefAE's own code, decoder: code -> picture)."""
        refae = self.explainer.refae
        return in_range(refae.get_layer("refae_encoder"), self.explainer.pixel_range), refae.get_layer("decoder")
