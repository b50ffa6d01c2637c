"""Learning curves: each epoch's test Rec. Loss beside the training loss, recorded while training."""

import keras

from cladec_cli.reconstruction import rec_loss_model, split_rec_losses


class TestRecLoss(keras.callbacks.Callback):
    """At the end of each epoch, the Rec. Loss on `split` of every image -> image model in `models`
    (models that share their weights with the ones being trained); `curves[i]` lists model i's
    values, `epochs` the 1-based epochs they belong to (a resumed run starts past 1)."""

    def __init__(self, models, split):
        super().__init__()
        self.models = {str(i): model for i, model in enumerate(models)}
        self.split = split
        # Built once: one pass over the split measures every model, with one compiled prediction.
        self.measuring = rec_loss_model(self.models, split.image_shape)
        self.epochs, self.curves = [], [[] for _ in self.models]

    def on_epoch_end(self, epoch, logs=None):
        self.epochs.append(epoch + 1)
        losses = split_rec_losses(self.models, self.split, measuring=self.measuring)
        for curve, loss in zip(self.curves, losses.values()):
            curve.append(loss)


def curve_record(tracker, index, train_losses):
    """What a model's provenance records of its curve: epochs, training-loop loss and test Rec. Loss."""
    return {"epochs": list(tracker.epochs), "train_loss": list(train_losses[-len(tracker.epochs):]),
            "test_rec_loss": tracker.curves[index]}
