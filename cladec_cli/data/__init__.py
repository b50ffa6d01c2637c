"""Datasets: reading, locating and preprocessing image data, and tf.data pipelines.

Entry point: `cladec_cli.data.datasets.load_dataset`.
"""
