"""GLASS on a StableDiffusion3Pipeline: `python examples/sd3.py`
(GPU, stabilityai/stable-diffusion-3.5-medium), or `--tiny` (offline, CPU).
See examples/common.py for what it runs."""

import sys

import torch
from common import main as run_example


def main(argv=None):
    return run_example(
        argv, "sd3", "StableDiffusion3Pipeline", "stabilityai/stable-diffusion-3.5-medium", torch.bfloat16
    )


if __name__ == "__main__":
    main(sys.argv[1:])
