"""Run the cladec CLI as if on a GPU, to exercise the GPU code path on a CPU (slowly: XLA:CPU runs a
chunk's rolled loop many times slower than a GPU would).

    CC=7.0 python benchmarks/as_if_on_a_gpu.py train-decoder --classifier c.h5 --layer -1,-2 ...

The device reports a GPU of compute capability $CC (default 9.0), so `auto` settings resolve as on such a
GPU: bfloat16 (float16 below 8.0), XLA on, determinism off, 64 steps per execution.
"""

import os
import sys

from cladec_cli import runtime


def main(argv):
    capability = float(os.environ.get("CC", "9.0"))
    runtime.current_device = lambda: runtime.Device("GPU", f"GPU:0 (pretended, compute capability {capability})",
                                                    capability)
    from cladec_cli.cli.main import cli

    cli(argv, prog_name="cladec")


if __name__ == "__main__":
    main(sys.argv[1:])
