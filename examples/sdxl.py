"""GLASS on a StableDiffusionXLPipeline: `python examples/sdxl.py`
(GPU, stabilityai/stable-diffusion-xl-base-1.0), or `--tiny` (offline, CPU).
See examples/common.py for what it runs."""

import sys

import torch
from common import main as run_example


def main(argv=None):
    return run_example(
        argv, "sdxl", "StableDiffusionXLPipeline", "stabilityai/stable-diffusion-xl-base-1.0", torch.float16
    )


if __name__ == "__main__":
    main(sys.argv[1:])
