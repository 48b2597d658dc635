"""GLASS on a StableDiffusionPipeline: `python examples/sd.py`
(GPU, stable-diffusion-v1-5/stable-diffusion-v1-5), or `--tiny` (offline, CPU).
See examples/common.py for what it runs."""

import sys

import torch
from common import main as run_example


def main(argv=None):
    return run_example(
        argv, "sd", "StableDiffusionPipeline", "stable-diffusion-v1-5/stable-diffusion-v1-5", torch.float16
    )


if __name__ == "__main__":
    main(sys.argv[1:])
