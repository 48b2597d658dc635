"""GLASS on a StableDiffusionPipeline: `python examples/sd.py`
(GPU, stable-diffusion-v1-5/stable-diffusion-v1-5),
or `--tiny` (offline, CPU)."""

import sys

import torch
from common import parse, run, tiny


def main(argv=None):
    args = parse(argv, "sd")
    if args.tiny:
        pipe, options = tiny("sd")
    else:
        from diffusers import StableDiffusionPipeline

        pipe = StableDiffusionPipeline.from_pretrained(
            "stable-diffusion-v1-5/stable-diffusion-v1-5", torch_dtype=torch.float16
        ).to("cuda")
        options = {}
    return run(pipe, args, **options)


if __name__ == "__main__":
    main(sys.argv[1:])
