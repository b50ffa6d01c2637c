"""Where the classifier's epoch goes: cladec's `fit_classifier` (its tf.data feed, with the cosine schedule
or a constant learning rate) against plain `fit` (on arrays or on cladec's feed, constant or cosine), taking
turns, on 10,000 Fashion-MNIST training images, batch 128, 4 epochs a run; steady epochs (after the first).

    python benchmarks/classifier_epoch_ab.py [ROUNDS] [OUT.json]
"""
import dataclasses
import json
import sys

import keras

from cladec_cli import benchmark as b
from cladec_cli import runtime
from cladec_cli.architectures import build_classifier
from cladec_cli.classifier import classification_loss, fit_classifier
from cladec_cli.training import TrainSettings

rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 4
base = TrainSettings(epochs=4, batch_size=128, lr=2e-3, seed=0, resume=False, tensorboard=None, verbose=0)
data = b.script_dataset(limit=10000)
b.start(base)
x, y = data.train.arrays()
steps = -(-len(y) // 128)


def cladec(schedule):
    def run():
        s = dataclasses.replace(base, lr_schedule=schedule, extra_callbacks=[t := b.EpochTimer()])
        runtime.seed_everything(0)
        fit_classifier(build_classifier(data.image_shape, data.n_classes), data.train, s)
        return t
    return run


def plain(schedule, feed):
    def run():
        runtime.seed_everything(0)
        m = build_classifier(data.image_shape, data.n_classes)
        lr = keras.optimizers.schedules.CosineDecay(2e-3, 4 * steps) if schedule == "cosine" else 2e-3
        m.compile(optimizer=keras.optimizers.Adam(lr), loss=classification_loss(m), jit_compile=False)
        t = b.EpochTimer()
        if feed == "arrays":
            m.fit(x, y, batch_size=128, epochs=4, verbose=0, callbacks=[t])
        else:
            d = data.train.dataset(128, shuffle=True, seed=0).tf_dataset()
            m.fit(d, epochs=4, verbose=0, callbacks=[t], shuffle=False)
        return t
    return run


arms = {"cladec cosine": cladec("cosine"), "cladec constant": cladec("constant"),
        "plain constant arrays": plain("constant", "arrays"), "plain cosine arrays": plain("cosine", "arrays"),
        "plain constant tf_dataset": plain("constant", "tf_dataset")}
times = {k: [] for k in arms}
cpu = {k: [] for k in arms}
for r in range(rounds):
    for k, run in arms.items():
        t = run()
        times[k] += t.epoch_seconds()[1:]
        cpu[k] += t.epoch_seconds(clock=1)[1:]
for k in arms:
    w, c = sorted(times[k]), sorted(cpu[k])
    print(f"{k:28s} wall min {w[0]:.3f} median {w[len(w)//2]:.3f}  cpu min {c[0]:.3f} median {c[len(c)//2]:.3f}")
json.dump({"wall": times, "cpu": cpu}, open(sys.argv[2] if len(sys.argv) > 2 else "classifier-epoch-ab.json", "w"), indent=1)
