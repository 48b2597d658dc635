"""FID sanity in the classifier's features: 5,000 images of each set against the last 5,000 MNIST test
images. Training images are close, uniform noise is far, and the first 5,000 test images are further
than training images (MNIST's two halves of the test set come from different writer populations:
compare against random or interleaved subsets, never contiguous halves). Writes
experiments/results/fid_sanity.{md,json}.

    python experiments/fid_sanity.py
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from glass.data import load_mnist
from glass.metrics.fid import FID
from glass.models.mnist import to_data

OUT = Path(__file__).resolve().parents[1] / "experiments" / "results"
NOISE_SEED = 0


def main() -> dict:
    train, _ = load_mnist("train")
    test, _ = load_mnist("test")
    train, test = to_data(train), to_data(test)
    noise = torch.rand(5000, *test.shape[1:], generator=torch.Generator().manual_seed(NOISE_SEED)) * 2 - 1
    reference = test[5000:]
    fid = FID(features="mnist")
    sets = {"train[:5000]": train[:5000], "test[:5000]": test[:5000], "uniform noise": noise}
    rows = [{"samples": k, "fid": round(fid(x, reference=reference)["fid"], 1)} for k, x in sets.items()]
    out = {"reference": "test[5000:]", "n": 5000, "features": "mnist", "noise_seed": NOISE_SEED, "rows": rows}
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "fid_sanity.json").write_text(json.dumps(out, indent=1) + "\n")
    table = "\n".join(["| samples vs test[5000:] | FID |", "|---|---|"]
                      + [f"| {r['samples']} | {r['fid']:g} |" for r in rows])  # fmt: skip
    note = ("5,000 images each against the last 5,000 MNIST test images, FID in the shipped classifier's "
            f"features (uniform noise in [-1, 1], seed {NOISE_SEED}).")  # fmt: skip
    (OUT / "fid_sanity.md").write_text(table + "\n\n" + note + "\n")
    print(table)
    return out


if __name__ == "__main__":
    main()
