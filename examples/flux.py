"""GLASS on a FluxPipeline: `python examples/flux.py` (GPU, black-forest-labs/FLUX.1-dev),
or `--tiny` (offline, CPU). See examples/common.py for what it runs."""

import sys

import torch
from common import main as run_example


def main(argv=None):
    return run_example(
        argv, "flux", "FluxPipeline", "black-forest-labs/FLUX.1-dev", torch.bfloat16, guidance_scale=3.5
    )


if __name__ == "__main__":
    main(sys.argv[1:])
