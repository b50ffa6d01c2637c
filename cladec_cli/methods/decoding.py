"""ClaDec and RefAE as explanation methods: the layer's code decoded into a picture."""

from cladec_cli.methods.base import Method
from cladec_cli.training import predict


class ClaDec(Method):
    """The explained layer's activations decoded by the decoder trained for them."""

    name, title, kind, needs = "cladec", "ClaDec", "image", ("decoder",)

    def explain(self, images, classes=None):
        return predict(self.explainer.cladec, images)


class RefAE(Method):
    """The reference autoencoder's reconstruction (same architecture, trained for reconstruction only)."""

    name, title, kind, needs = "refae", "RefAE", "image", ("refae",)

    def available(self):
        return self.explainer.refae is not None

    def explain(self, images, classes=None):
        return predict(self.explainer.refae, images)
