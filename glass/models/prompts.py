"""Prompt embeddings, encoded once per (model, prompt) and cached on disk.

Text encoders (T5-XXL, CLIP) are large and only needed once per prompt: the loaders encode the
prompt, save the tensors under ``<cache_dir>/prompts/<hash>.safetensors`` and free the encoders. A
damaged cache file is re-encoded, never trusted.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

from torch import Tensor

__all__ = ["PromptCache"]


class PromptCache:
    def __init__(self, cache_dir: str, model_id: str, kind: str, max_length: int | None = None, dtype=None):
        self.dir = Path(cache_dir) / "prompts"
        self.key = f"{kind}|{model_id}|{max_length}" + ("" if dtype is None else f"|{dtype}")

    def path(self, prompt: str) -> Path:
        digest = hashlib.sha256(f"{self.key}|{prompt}".encode()).hexdigest()[:20]
        return self.dir / f"{digest}.safetensors"

    def has(self, prompt: str) -> bool:
        return self.path(prompt).is_file()

    def load(self, prompt: str) -> dict[str, Tensor] | None:
        """The cached embeddings of ``prompt``, or None (missing or damaged: encode again)."""
        from safetensors.torch import load_file

        try:
            return load_file(str(self.path(prompt)))
        except Exception:  # noqa: BLE001 - a damaged file is encoded again
            return None

    def save(self, prompt: str, tensors: dict[str, Tensor]) -> None:
        import os

        from safetensors.torch import save_file

        path = self.path(prompt)
        tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # parallel workers may encode the same prompt
        save_file(tensors, str(tmp), metadata={"prompt": prompt[:500], "key": self.key})
        tmp.replace(path)

    def get(self, prompt: str, encode: Callable[[str], dict[str, Tensor]]) -> dict[str, Tensor]:
        """The cached embeddings, or ``encode(prompt)`` saved for next time."""
        tensors = self.load(prompt) if self.has(prompt) else None
        if tensors is None:
            tensors = {k: v.detach().cpu().contiguous() for k, v in encode(prompt).items()}
            self.save(prompt, tensors)
        return tensors
