"""GLASS on a Flux2KleinPipeline: `python examples/flux2.py` (GPU, black-forest-labs/FLUX.2-klein-4B),
or `--tiny` (offline, CPU). See examples/common.py for what it runs."""

import sys

import torch
from common import main as run_example


def main(argv=None):
    return run_example(
        argv, "flux2", "Flux2KleinPipeline", "black-forest-labs/FLUX.2-klein-4B", torch.bfloat16
    )


if __name__ == "__main__":
    main(sys.argv[1:])
