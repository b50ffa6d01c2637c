"""Keras 2 HDF5 model files against Keras 3 and cladec: which load, and whether they predict as Keras 2 did.

Step 1, where TensorFlow and tf_keras (Keras 2) are installed (`pip install tensorflow-cpu==2.21.* tf_keras==2.21.*`):
    python benchmarks/keras2_files_survey.py write DIR
writes DIR/<name>.h5 for keras.applications' models and small models around one layer each, with four
random inputs and Keras 2's predictions (DIR/<name>.npz). Step 2, in cladec's environment:
    python benchmarks/keras2_files_survey.py compare DIR
prints, for each file, whether plain `keras.models.load_model` loads it, whether cladec's `load_model` does
(else its message), and the largest difference between cladec's model's predictions and Keras 2's.
"""

import glob
import os
import re
import sys


def write(folder):
    os.environ["TF_USE_LEGACY_KERAS"] = "1"
    import numpy as np
    import tf_keras as keras
    from tf_keras import layers as L

    cases = {
     "depthwise": lambda h: L.DepthwiseConv2D(3)(h),
     "separable": lambda h: L.SeparableConv2D(4, 3)(h),
     "conv2dT": lambda h: L.Conv2DTranspose(4, 3, strides=2)(h),
     "conv1d": lambda h: L.Conv1D(4, 3)(L.Reshape((28, 28))(h)),
     "leakyrelu": lambda h: L.LeakyReLU(0.2)(L.Conv2D(4, 3)(h)),
     "prelu": lambda h: L.PReLU()(L.Conv2D(4, 3)(h)),
     "relu_max": lambda h: L.ReLU(max_value=6.0)(L.Conv2D(4, 3)(h)),
     "elu": lambda h: L.ELU()(L.Conv2D(4, 3)(h)),
     "thresholdedrelu": lambda h: L.ThresholdedReLU(0.1)(L.Conv2D(4, 3)(h)),
     "upsampling": lambda h: L.UpSampling2D()(h),
     "zeropad": lambda h: L.ZeroPadding2D()(h),
     "cropping": lambda h: L.Cropping2D(1)(h),
     "avgpool": lambda h: L.AveragePooling2D()(h),
     "gmp_keep": lambda h: L.GlobalMaxPooling2D(keepdims=True)(h),
     "spatialdropout": lambda h: L.SpatialDropout2D(0.1)(h),
     "gaussnoise": lambda h: L.GaussianNoise(0.1)(h),
     "bn_renorm": lambda h: L.BatchNormalization(renorm=True)(h),
     "layernorm": lambda h: L.LayerNormalization()(h),
     "activity_reg": lambda h: L.Conv2D(4, 3, activity_regularizer="l2", kernel_regularizer="l2")(h),
     "maxnorm": lambda h: L.Conv2D(4, 3, kernel_constraint=keras.constraints.MaxNorm(2))(h),
     "lambda_free": lambda h: L.Conv2D(4, 3, activation=keras.activations.swish)(h),
     "multiply": lambda h: L.Multiply()([h, h]),
     "mha": lambda h: L.MultiHeadAttention(2, 4)(L.Reshape((28, 28))(h), L.Reshape((28, 28))(h)),
     "randomflip": lambda h: L.RandomFlip()(h),
     "resizing": lambda h: L.Resizing(32, 32)(h),
     "attention": lambda h: L.Attention()([L.Reshape((28, 28))(h), L.Reshape((28, 28))(h)]),
     "conv_lstm": lambda h: L.ConvLSTM2D(2, 3)(L.Reshape((4, 7, 28, 1))(h)),
     "locally": lambda h: L.LocallyConnected2D(2, 3)(h) if hasattr(L, "LocallyConnected2D") else h,
     "timedistributed": lambda h: L.TimeDistributed(L.Dense(3))(L.Reshape((28, 28))(h)),
     "bidir_lstm": lambda h: L.Bidirectional(L.LSTM(3))(L.Reshape((28, 28))(h)),
     "embedding_free_gru": lambda h: L.GRU(3)(L.Reshape((28, 28))(h)),
    }
    apps = {
     "mobilenet": lambda: keras.applications.MobileNet(input_shape=(32, 32, 3), weights=None, classes=10),
     "efficientnetb0": lambda: keras.applications.EfficientNetB0(input_shape=(32, 32, 3), weights=None, classes=10),
     "resnet50": lambda: keras.applications.ResNet50(input_shape=(32, 32, 3), weights=None, classes=10),
     "densenet121": lambda: keras.applications.DenseNet121(input_shape=(32, 32, 3), weights=None, classes=10),
     "vgg16": lambda: keras.applications.VGG16(input_shape=(32, 32, 3), weights=None, classes=10),
     "nasnetmobile": lambda: keras.applications.NASNetMobile(input_shape=(32, 32, 3), weights=None, classes=10),
     "mobilenetv3small": lambda: keras.applications.MobileNetV3Small(input_shape=(32, 32, 3), weights=None, classes=10),
     "xception": lambda: keras.applications.Xception(input_shape=(71, 71, 3), weights=None, classes=10),
     "convnext": lambda: keras.applications.ConvNeXtTiny(input_shape=(32, 32, 3), weights=None, classes=10),
    }

    os.makedirs(folder, exist_ok=True)
    models = {name: (lambda f=f: _single(keras, L, f)) for name, f in cases.items()} | apps
    for name, build in models.items():
        try:
            model = build()
            model.save(f"{folder}/{name}.h5")
            x = np.random.default_rng(0).random((4, *model.inputs[0].shape[1:]), dtype=np.float32)
            np.savez(f"{folder}/{name}.npz", x=x, y=model.predict(x, verbose=0))
        except Exception as e:  # a model Keras 2 cannot build or predict with is left out, and said so
            print(f"{name:20s} not written: {str(e).splitlines()[0][:100]}")


def _single(keras, L, step):
    inputs = L.Input((28, 28, 1))
    return keras.Model(inputs, L.Dense(10, activation="softmax")(L.Flatten()(step(inputs))))


def compare(folder):
    import keras
    import numpy as np

    from cladec_cli import artifacts

    for path in sorted(glob.glob(f"{folder}/*.h5")):
        name = os.path.basename(path)[:-3]
        try:
            keras.models.load_model(path, compile=False)
            plain = "loads"
        except Exception as e:
            found = re.search(r"Exception encountered: (.*)", str(e))
            plain = "refuses: " + (found.group(1) if found else str(e).splitlines()[0])[:70]
        try:
            model, _ = artifacts.load_model(path)
        except Exception as e:
            print(f"{name:20s} Keras 3 {plain} | cladec refuses: {str(e).split(': ', 1)[-1][:110]}")
            continue
        difference = "no Keras 2 predictions"
        if os.path.exists(f"{folder}/{name}.npz"):
            saved = np.load(f"{folder}/{name}.npz")
            difference = f"max |cladec - Keras 2| {np.abs(model.predict(saved['x'], verbose=0) - saved['y']).max():.1e}"
        print(f"{name:20s} Keras 3 {plain} | cladec loads, {difference}")


if __name__ == "__main__":
    {"write": write, "compare": compare}[sys.argv[1]](sys.argv[2])
