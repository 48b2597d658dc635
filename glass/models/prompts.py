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
    def __init__(self, cache_dir: str, model_id: str, kind: str, max_length: int | None = None):
        self.dir = Path(cache_dir) / "prompts"
        self.key = f"{kind}|{model_id}|{max_length}"

    def path(self, prompt: str) -> Path:
        digest = hashlib.sha256(f"{self.key}|{prompt}".encode()).hexdigest()[:20]
        return self.dir / f"{digest}.safetensors"

    def get(self, prompt: str, encode: Callable[[str], dict[str, Tensor]]) -> dict[str, Tensor]:
        from safetensors.torch import load_file, save_file

        path = self.path(prompt)
        if path.is_file():
            try:
                return load_file(str(path))
            except Exception:  # noqa: BLE001 - a damaged file is encoded again
                pass
        tensors = {k: v.detach().cpu().contiguous() for k, v in encode(prompt).items()}
        self.dir.mkdir(parents=True, exist_ok=True)
        import os

        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # parallel workers may encode the same prompt
        save_file(tensors, str(tmp), metadata={"prompt": prompt[:500], "key": self.key})
        tmp.replace(path)
        return tensors
