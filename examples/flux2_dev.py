"""GLASS on a Flux2Pipeline: `python examples/flux2_dev.py` (GPU, black-forest-labs/FLUX.2-dev, model
by model: its 32B transformer and 24B Mistral-3 text encoder together exceed one GPU), or `--tiny`
(offline, CPU). See examples/common.py for what it runs."""

import sys

import torch
from common import main as run_example


def main(argv=None):
    return run_example(
        argv, "flux2_dev", "Flux2Pipeline", "black-forest-labs/FLUX.2-dev", torch.bfloat16, offload=True
    )


if __name__ == "__main__":
    main(sys.argv[1:])
