"""GLASS on a FluxPipeline: `python examples/flux.py` (GPU, black-forest-labs/FLUX.1-dev),
or `--tiny` (offline, CPU)."""

import sys

import torch
from common import parse, run, tiny


def main(argv=None):
    args = parse(argv, "flux")
    if args.tiny:
        pipe, options = tiny("flux")
    else:
        from diffusers import FluxPipeline

        pipe = FluxPipeline.from_pretrained("black-forest-labs/FLUX.1-dev", torch_dtype=torch.bfloat16).to(
            "cuda"
        )
        options = {"guidance_scale": 3.5}
    return run(pipe, args, **options)


if __name__ == "__main__":
    main(sys.argv[1:])
