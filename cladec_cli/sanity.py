"""Sanity checks for explanations (Adebayo et al. 2018): does an explanation change when the classifier
is randomised layer by layer from the top (it should: it is meant to explain this classifier), and does
it stay put under small input noise that leaves the prediction as it was (the paper's claim for
ClaDec)? Similarity is SSIM (scikit-image)."""

from dataclasses import dataclass, field

import keras
import numpy as np

from cladec_cli.cladec import frozen_encoder, stacked, train_decoder
from cladec_cli.cloning import clone_graph
from cladec_cli.errors import UsageError, option
from cladec_cli.explainer import Explainer
from cladec_cli.layers import every_layer, is_submodel
from cladec_cli.methods import METHODS, explain_all


def structural_similarity():
    """scikit-image's SSIM; a clear error when scikit-image is missing."""
    try:
        from skimage.metrics import structural_similarity as measure
    except ImportError:
        raise UsageError("sanity checks need scikit-image: pip install scikit-image (or cladec[sanity])") from None
    return measure


def ssim(a, b):
    """Structural similarity of two explanations (H x W maps or H x W x C pictures, values in [0, 1])."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    side = min(7, *(d if d % 2 else d - 1 for d in a.shape[:2]))
    return float(structural_similarity()(a, b, data_range=1.0, win_size=side, channel_axis=-1 if a.ndim == 3 else None))


def mean_ssim(first, second):
    return float(np.mean([ssim(a, b) for a, b in zip(first, second)]))


def stages(classifier):
    """The classifier's layers with weights, nested models' layers included (as `outer/inner`), grouped
    for cascading randomisation and listed from the top: each group is one layer with weights and the
    BatchNorm layers right after it."""
    groups = []
    for path, layer in every_layer(classifier):
        if is_submodel(layer) or not layer.weights:
            continue
        if isinstance(layer, keras.layers.BatchNormalization) and groups:
            groups[-1].append(path)
        else:
            groups.append([path])
    return list(reversed(groups))


def randomized(classifier, groups, seed=0):
    """A copy of `classifier` whose layers in `groups` (lists of layer paths, as `stages` gives them) have
    freshly initialised weights and whose other layers keep theirs."""
    keras.utils.set_random_seed(seed)
    copy = clone_graph(classifier)
    fresh = {path for group in groups for path in group}
    for (path, original), (_, layer) in zip(every_layer(classifier), every_layer(copy)):
        if not is_submodel(layer) and path not in fresh:
            layer.set_weights(original.get_weights())
    return copy


@dataclass
class SanityResult:
    """SSIM of each method's explanations to its unrandomised ones per cascade stage (stage 0: none
    randomised), and under input noise; how many images kept their prediction under the noise."""

    stages: list
    cascade: dict = field(default_factory=dict)
    noise: dict = field(default_factory=dict)
    noise_sigma: float = 0.0
    kept: int = 0
    images: int = 0


def explanations(explainer, names, images, classes):
    """{method: explanations} of ClaDec and of the attribution methods `names`."""
    return explain_all([METHODS[name](explainer) for name in ("cladec", *names)], images, classes)


def cascade(explainer, dataset, images, attribution_names, decoder_settings, work_dir, log=print, depth=None):
    """SSIM per method and stage. The classifier's layers are randomised from the top, one more group
    per stage; attribution maps are recomputed for the originally predicted classes, and ClaDec's
    decoder is retrained (`decoder_settings`, on `dataset`, with the alpha, loss and output layer the
    given decoder was trained with) for each classifier, stage 0 included, so that every stage's decoder
    had the same training. `depth` stops after that many stages (default: down to the first layer)."""
    classifier, layer = explainer.classifier, explainer.layer
    groups = stages(classifier)[:depth]
    classes = explainer.classify(images)
    per_stage = []
    for k in range(len(groups) + 1):
        model = randomized(classifier, groups[:k], seed=decoder_settings.seed + k) if k else classifier
        settings = decoder_settings.with_epochs(decoder_settings.epochs)
        settings.overwrite = True
        recorded = explainer.decoder_provenance
        # A classifier randomised on purpose is at chance on purpose: its record says untrained (no warning).
        record = {**(explainer.classifier_provenance or {}), "epochs": 0} if k else explainer.classifier_provenance
        decoder, _ = train_decoder(model, record, dataset, layer, recorded.get("alpha", 0.0),
                                   settings, stage_path(work_dir, k), rec_loss_name=recorded.get("rec_loss", "sse"),
                                   decoder_output=recorded.get("decoder_output", "sigmoid"))
        staged = Explainer(model, explainer.classifier_provenance,
                           stacked(frozen_encoder(model, layer, explainer.pixel_range), decoder, "cladec"),
                           explainer.decoder_provenance)
        per_stage.append(explanations(staged, attribution_names, images, classes))
        log(f"sanity: stage {k}: {'nothing' if k == 0 else ', '.join(groups[k - 1])} randomised")
    names = ["none", *(group[0] for group in groups)]
    return names, {m: [mean_ssim(per_stage[0][m], stage[m]) for stage in per_stage] for m in per_stage[0]}


def noise_stability(explainer, images, attribution_names, sigma=0.05, seed=0):
    """SSIM per method between the explanations of each image and of a noisy copy (Gaussian, standard
    deviation `sigma`, clipped to [0, 1]), over the images whose predicted class the noise left as it
    was; returns (SSIM per method, how many images that was)."""
    rng = np.random.default_rng(seed)
    noisy = np.clip(images + rng.normal(0, sigma, images.shape), 0, 1).astype(np.float32)
    classes = explainer.classify(images)
    kept = explainer.classify(noisy) == classes
    if not kept.any():
        raise UsageError(f"noise of standard deviation {sigma} changed every prediction; "
                         f"use a smaller {option('sigma')}")
    clean = explanations(explainer, attribution_names, images[kept], classes[kept])
    shaken = explanations(explainer, attribution_names, noisy[kept], classes[kept])
    return {m: mean_ssim(clean[m], shaken[m]) for m in clean}, int(kept.sum())


def stage_path(work_dir, k):
    """Where the decoder retrained at cascade stage `k` is saved."""
    return work_dir / f"cladec_stage{k}.h5"


def run_sanity(explainer, dataset, images, attribution_names, decoder_settings, work_dir, sigma=0.05, log=print,
               depth=None):
    """Both checks on `images` (test images): the noise stability, which needs no training, then the cascade."""
    structural_similarity()
    noise, kept = noise_stability(explainer, images, attribution_names, sigma, decoder_settings.seed)
    names, by_stage = cascade(explainer, dataset, images, attribution_names, decoder_settings, work_dir, log, depth)
    return SanityResult(names, by_stage, noise, sigma, kept, len(images))
