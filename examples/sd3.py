"""GLASS on a StableDiffusion3Pipeline: `python examples/sd3.py`
(GPU, stabilityai/stable-diffusion-3.5-medium),
or `--tiny` (offline, CPU)."""

import sys

import torch
from common import parse, run, tiny


def main(argv=None):
    args = parse(argv, "sd3")
    if args.tiny:
        pipe, options = tiny("sd3")
    else:
        from diffusers import StableDiffusion3Pipeline

        pipe = StableDiffusion3Pipeline.from_pretrained(
            "stabilityai/stable-diffusion-3.5-medium", torch_dtype=torch.bfloat16
        ).to("cuda")
        options = {}
    return run(pipe, args, **options)


if __name__ == "__main__":
    main(sys.argv[1:])
