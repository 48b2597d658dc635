"""GLASS on a FluxKontextPipeline: `python examples/flux_kontext.py --image photo.png` (GPU,
black-forest-labs/FLUX.1-Kontext-dev, edits from the reference), or `--tiny` (offline, CPU). See
examples/common.py for what it runs."""

import sys

import torch
from common import main as run_example


def main(argv=None):
    return run_example(
        argv, "flux_kontext", "FluxKontextPipeline", "black-forest-labs/FLUX.1-Kontext-dev", torch.bfloat16
    )


if __name__ == "__main__":
    main(sys.argv[1:])
