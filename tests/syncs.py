"""Host-device synchronisations counted without a GPU.

Tensors on the ``meta`` device play the accelerator: they have shapes and dtypes but no values, so
any read of a value on the host (``bool``, ``float``, ``.item()``, ``.tolist()``, ``.cpu()``,
``nonzero``...) is exactly what would synchronise a CUDA device. :class:`SyncAudit` records each such
read with the line of glass that made it, and answers it with a made-up host value so the code runs
on (values are meaningless: only the count and the places are checked). Host arithmetic on CPU
tensors and Python floats, which costs a GPU nothing, is not counted.
"""

from __future__ import annotations

import traceback

import torch
from torch.overrides import TorchFunctionMode

READS = {"__bool__", "__float__", "__int__", "__index__", "item", "tolist", "cpu", "numpy", "nonzero",
         "masked_select", "__format__", "__repr__"}  # fmt: skip


def _on_device(a) -> bool:
    return isinstance(a, torch.Tensor) and a.device.type == "meta"


def _where() -> str:
    frames = [f for f in traceback.extract_stack()[:-2] if "/glass/" in f.filename]
    if not frames:
        return "?"
    f = frames[-1]
    return f"{f.filename.rsplit('/glass/', 1)[-1]}:{f.name}"


class SyncAudit(TorchFunctionMode):
    """``with SyncAudit() as audit: ...``; then ``audit.reads`` lists (operation, "file:function")."""

    def __init__(self):
        super().__init__()
        self.reads: list[tuple[str, str]] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", "")
        if name in READS and any(_on_device(a) for a in args):
            self.reads.append((name, _where()))
            x = args[0]
            if name == "__bool__":
                return True
            if name in ("__float__", "item", "__format__", "__repr__"):
                return 0.5 if name in ("__float__", "item") else "0.5"
            if name in ("__int__", "__index__"):
                return 1
            if name == "tolist":
                return [0.5] * x.numel() if x.ndim else 0.5
            if name == "cpu":
                return torch.full(x.shape, 0.5, dtype=x.dtype)
            raise AssertionError(f"{name} on a device tensor at {_where()}")
        return func(*args, **(kwargs or {}))
