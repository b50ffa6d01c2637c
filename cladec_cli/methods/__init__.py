"""Explanation methods behind one interface (`base.Method`): ClaDec, RefAE and a ridge decoder decode a
layer into pictures; Grad-CAM, gradient saliency with SmoothGrad and occlusion attribute the prediction
to pixels. A new method is one new module registered in `METHODS`."""

from cladec_cli.errors import UsageError
from cladec_cli.methods.attribution import GradCAM, Occlusion, Saliency
from cladec_cli.methods.base import Method, explain_all, measured_methods, reconstructors
from cladec_cli.methods.decoding import ClaDec, RefAE
from cladec_cli.methods.ridge import Ridge

METHODS = {m.name: m for m in (ClaDec, RefAE, Ridge, GradCAM, Saliency, Occlusion)}
ATTRIBUTIONS = tuple(name for name, m in METHODS.items() if m.kind == "map")
DECODINGS = tuple(name for name, m in METHODS.items() if m.kind == "image")


def build(names, explainer, train=None):
    """The methods `names` for `explainer`, in order, each once; `train` is the training split for
    methods fitted on it (the ridge decoder). A method whose inputs are missing is refused."""
    if isinstance(names, str):
        raise UsageError(f"methods are given as a list of names, e.g. [{names!r}], not as the string {names!r}")
    methods = []
    for name in dict.fromkeys(names):
        if name not in METHODS:
            raise UsageError(f"unknown method {name!r}; choose from {', '.join(METHODS)}")
        cls = METHODS[name]
        method = cls(explainer, train=train) if cls.fitted_on_training else cls(explainer)
        if not method.available():
            raise UsageError(f"method {name} needs {' and '.join(cls.needs)}, which were not given")
        methods.append(method)
    return methods


def title(name):
    """A method's column header; names that are no method (the random baseline) stay as they are."""
    return METHODS[name].title if name in METHODS else name


def in_order(names):
    """`names`, each once, in the order of `METHODS` (ClaDec first)."""
    return [m for m in METHODS if m in set(names)]


__all__ = ["ATTRIBUTIONS", "DECODINGS", "METHODS", "Method", "build", "explain_all", "in_order", "measured_methods",
           "reconstructors", "title", "ClaDec", "RefAE", "Ridge", "GradCAM", "Saliency", "Occlusion"]
