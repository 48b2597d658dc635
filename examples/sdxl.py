"""GLASS on a StableDiffusionXLPipeline: `python examples/sdxl.py`
(GPU, stabilityai/stable-diffusion-xl-base-1.0),
or `--tiny` (offline, CPU)."""

import sys

import torch
from common import parse, run, tiny


def main(argv=None):
    args = parse(argv, "sdxl")
    if args.tiny:
        pipe, options = tiny("sdxl")
    else:
        from diffusers import StableDiffusionXLPipeline

        pipe = StableDiffusionXLPipeline.from_pretrained(
            "stabilityai/stable-diffusion-xl-base-1.0", torch_dtype=torch.float16
        ).to("cuda")
        options = {}
    return run(pipe, args, **options)


if __name__ == "__main__":
    main(sys.argv[1:])
