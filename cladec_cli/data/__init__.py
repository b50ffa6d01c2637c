"""Datasets: reading, locating and preprocessing image data, and batch feeds for Keras.

Entry point: `cladec_cli.data.datasets.load_dataset`.
"""
