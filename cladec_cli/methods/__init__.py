"""Explanation methods behind one interface (`base.Method`): ClaDec and RefAE decode a layer into
pictures; Grad-CAM, gradient saliency with SmoothGrad and occlusion attribute the prediction to pixels.
A new method is one new module registered in `METHODS`."""

from cladec_cli.methods.attribution import GradCAM, Occlusion, Saliency
from cladec_cli.methods.base import Method, explain_all
from cladec_cli.methods.decoding import ClaDec, RefAE

METHODS = {m.name: m for m in (ClaDec, RefAE, GradCAM, Saliency, Occlusion)}
ATTRIBUTIONS = tuple(name for name, m in METHODS.items() if m.kind == "map")

__all__ = ["ATTRIBUTIONS", "METHODS", "Method", "explain_all", "ClaDec", "RefAE", "GradCAM", "Saliency", "Occlusion"]
