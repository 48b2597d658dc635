"""GLASS on a Flux2KleinPipeline: `python examples/flux2.py` (GPU, black-forest-labs/FLUX.2-klein-4B),
or `--tiny` (offline, CPU)."""

import sys

import torch
from common import parse, run, tiny


def main(argv=None):
    args = parse(argv, "flux2")
    if args.tiny:
        pipe, options = tiny("flux2")
    else:
        from diffusers import Flux2KleinPipeline

        pipe = Flux2KleinPipeline.from_pretrained(
            "black-forest-labs/FLUX.2-klein-4B", torch_dtype=torch.bfloat16
        ).to("cuda")
        options = {}
    return run(pipe, args, **options)


if __name__ == "__main__":
    main(sys.argv[1:])
