"""The interface every explanation method has."""

import numpy as np

from cladec_cli.training import predict


class Method:
    """An explanation method for one explained layer of a classifier (an `Explainer`).

    `name` is its option value, `title` its column header; `kind` says what `explain` returns: 'image'
    (pictures like the input, in [0, 1]) or 'map' (one relevance value per pixel, in [0, 1]); `needs`
    names what must be trained for it (a decoder, a RefAE) beyond the classifier.
    """

    name = ""
    title = ""
    kind = "image"
    needs = ()
    fitted_on_training = False  # True: made with the training split, `cls(explainer, train=split)`

    def __init__(self, explainer):
        self.explainer = explainer

    def available(self):
        """Whether what the method needs was given (a RefAE file for RefAE, ...)."""
        return True

    @property
    def reconstructor(self):
        """For a method of kind 'image': the model taking [0, 1] images to their explanation pictures,
        which the paper's measures (Rec. Loss, Acc Eval) are computed on."""
        raise NotImplementedError(f"{self.name} gives maps, not pictures")

    def explain(self, images, classes=None):
        """Explanations of `images` (N x H x W x C in [0, 1]) for the classes `classes` (one per image):
        N pictures (N x H x W x C) or N maps (N x H x W), all in [0, 1]. A method of kind 'image'
        explains with its `reconstructor`."""
        return predict(self.reconstructor, images)


# Entries of a measure's {method: value} dictionary that are not methods.
NOT_METHODS = ("difference", "p_value", "p_paired")


def measured_methods(groups):
    """The method names among the keys of the measure dictionaries `groups`, in their first order."""
    return list(dict.fromkeys(m for group in groups for m in group if m not in NOT_METHODS))


def reconstructors(methods):
    """{method name: image -> picture model} of the available methods of kind 'image'."""
    return {m.name: m.reconstructor for m in methods if m.kind == "image" and m.available()}


def explain_all(methods, images, classes):
    """{method name: its explanations} for every available method."""
    return {m.name: np.asarray(m.explain(images, classes)) for m in methods if m.available()}


def normalized(maps):
    """Each map scaled to [0, 1] by its own maximum (all-zero maps stay zero)."""
    maps = np.asarray(maps, np.float32)
    peak = maps.reshape(len(maps), -1).max(axis=1).reshape(-1, *([1] * (maps.ndim - 1)))
    return np.where(peak > 0, maps / np.where(peak > 0, peak, 1), 0.0)
