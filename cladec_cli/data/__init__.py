"""Datasets: reading, locating and preprocessing image data, and tf.data pipelines."""

from cladec_cli.data.datasets import Dataset, Split, load_dataset, DATASET_NAMES  # noqa: F401
