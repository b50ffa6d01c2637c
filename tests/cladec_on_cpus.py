"""Run the cladec CLI with this machine's CPU split into N logical devices, as a distributed training
sees N GPUs: `python tests/cladec_on_cpus.py N COMMAND [OPTIONS]`."""

import sys

from cladec_cli.runtime import import_tensorflow_quietly

from cladec_cli.cli.main import main

import_tensorflow_quietly()
import tensorflow as tf  # noqa: E402

if __name__ == "__main__":
    count = int(sys.argv.pop(1))
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * count)
    main()
