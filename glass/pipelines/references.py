"""Reference images (``image=``): the editing conditioning of FLUX.2 and FLUX.1 Kontext.

Both append the references' VAE tokens, with their own position ids, to the generated image's tokens
in every network call and read the velocity back from the generated image's tokens only. The family
says how a reference is prepared and encoded (:meth:`ReferenceImages.encode_reference`); this mixin
holds what they share:

- ``image`` as a family option (``from_pipe(pipe, image=...)``, ``model.image``): every row's
  references, encoded once when the model is built;
- ``image=`` conditioning, one entry per row (a reference, a list of them, or None for the option's):
  each distinct entry encoded once and cached (a path by its name, an image by identity,
  the most recently used kept), and rows with different references run as separate network calls,
  one per run of consecutive rows sharing them (their token counts differ).
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import torch
from torch import Tensor

__all__ = ["ReferenceImages", "reference_images", "reference_key", "vae_device"]


def vae_device(vae):
    """Where the VAE runs: offloaded (accelerate's hooks), its execution device, not its parameters'."""
    try:
        from diffusers.utils.torch_utils import get_module_execution_device
    except ImportError:  # diffusers releases without it
        return vae.device
    return get_module_execution_device(vae)


def reference_images(value, decode: bool = True) -> list:
    """``image=``: None, a PIL image or a path, or a sequence of them -> a list of (name, PIL image); the
    name (the path, or ``image[i]``) is what an error about that image says. A path is read as RGB, or
    with ``decode=False`` only its header (size and format: the check before any weights load)."""
    from collections.abc import Sequence

    from PIL import Image

    if value is None:
        return []
    many = isinstance(value, Sequence) and not isinstance(value, str)
    items = list(value) if many else [value]
    if not items:
        raise ValueError("image is an empty list: pass None for text-to-image, or at least one image")
    images = []
    for i, item in enumerate(items):
        name = f"image[{i}]" if many else "image"
        if isinstance(item, Image.Image):
            images.append((name, item))
        elif isinstance(item, (str, Path)):
            images.append((f"image {item}", _read_image(Path(item).expanduser(), decode)))
        else:
            kind = type(item).__name__
            raise ValueError(f"{name} must be a PIL image or a path (or a list of them); got {kind}")
    return images


def _read_image(path: Path, decode: bool):
    from PIL import Image, ImageOps

    if not path.is_file():
        raise ValueError(f"image: no file at {path}")
    try:
        with Image.open(path) as im:  # upright as diffusers' load_image reads it (EXIF orientation)
            return ImageOps.exif_transpose(im).convert("RGB") if decode else im
    except Exception as e:  # PIL's UnidentifiedImageError, OSError, DecompressionBombError, ...
        raise ValueError(f"image: {path} is not an image PIL can read ({e})") from None


def reference_key(value):
    """A per-row ``image`` -> the key its encoding is cached under (a path by its name as given: no
    file-system call, it runs for every row of every network call; a PIL image by identity, which the
    cache keeps alive, so an identity is not reused while it is cached)."""
    if isinstance(value, (list, tuple)):
        return tuple(reference_key(v) for v in value)
    if isinstance(value, (str, Path)):
        return ("path", str(value))
    return ("object", id(value))


class ReferenceImages:
    """Mixin of the pipeline adapters that take reference images (see the module docstring). The
    family implements :meth:`encode_reference` and ``guided_velocity(x, sigma, prompts, negatives,
    refs)``, the guided velocity of rows sharing the references ``refs`` ((tokens, ids) or None)."""

    conditioning = ("prompt", "negative_prompt", "image")
    row_options = ("image",)
    sets_default_size: ClassVar[bool] = False  # the first reference's size is the default size
    _references: dict

    def encode_reference(self, value) -> tuple[Tensor, Tensor, tuple[int, int]]:
        """``image`` (not None) -> (tokens (1, N, D), position ids, the first image's (height, width) as
        prepared), on the VAE's device."""
        raise NotImplementedError

    def _prepare_options(self, pipe) -> None:
        """``image`` (the option), encoded now; with ``sets_default_size`` its size is the default."""
        self.ref_tokens = self.ref_ids = self._reference_size = None
        self._references = {}
        if self.option["image"] is not None:
            with torch.no_grad():
                self.ref_tokens, self.ref_ids, size = self.encode_reference(self.option["image"])
            if self.sets_default_size:
                self._reference_size = dict(zip(("height", "width"), size))

    def _size(self, pipe, value, name: str) -> int:
        if value is None and self._reference_size:  # the pipeline's default: the first reference's size
            return int(self._reference_size[name])
        return super()._size(pipe, value, name)

    def _check_options(self) -> None:
        super()._check_options()
        if self.ref_tokens is not None:  # on the network's device, in its dtype (the pipeline's cast)
            self.ref_tokens, self.ref_ids = self._on_network(self.ref_tokens, self.ref_ids)

    def _on_network(self, tokens: Tensor, ids: Tensor) -> tuple[Tensor, Tensor]:
        """Tokens in the network's dtype, float position ids too (FLUX.1's; FLUX.2's are integers)."""
        ids_dtype = self.dtype if ids.is_floating_point() else ids.dtype
        return tokens.to(self.device, self.dtype), ids.to(self.device, ids_dtype)

    def references(self, value, keep: int = 8, key=None) -> tuple[Tensor, Tensor] | None:
        """The (tokens, ids) a row's ``image`` gives, on the network's device: None -> the option's
        (None without one); a reference or a list of them -> their own, replacing the option's. Encoded
        once and cached (the ``keep`` most recently used at least), so a file edited during a run is
        not read again. ``key``: :func:`reference_key` of ``value``, when known."""
        if value is None:
            return None if self.ref_tokens is None else (self.ref_tokens, self.ref_ids)
        key = reference_key(value) if key is None else key
        if key not in self._references:
            with torch.no_grad():
                tokens, ids, _ = self.encode_reference(value)
            items = tuple(value) if isinstance(value, (list, tuple)) else (value,)  # alive: ids stay theirs
            self._references[key] = (*self._on_network(tokens, ids), items)
        self._references[key] = self._references.pop(key)  # the most recently used last
        while len(self._references) > max(8, keep):  # a prompt set's are used one prompt at a time
            self._references.pop(next(iter(self._references)))
        return self._references[key][:2]

    def _x0(self, x: Tensor, t: Tensor, prompts: list, negatives: list, image: list | None = None) -> Tensor:
        """One guided denoiser call, one network call per run of consecutive rows sharing references."""
        keys = [None if v is None else reference_key(v) for v in (image or [None] * len(x))]
        starts = [i for i in range(len(x)) if i == 0 or keys[i] != keys[i - 1]] + [len(x)]
        parts, distinct = [], len(set(keys))
        for a, b in zip(starts, starts[1:]):
            refs = self.references(None if image is None else image[a], keep=distinct, key=keys[a])
            v = self.guided_velocity(x[a:b], 1 - t[a:b], prompts[a:b], negatives[a:b], refs)
            parts.append(self.to_x0(v, x[a:b], t[a:b]))
        return parts[0] if len(parts) == 1 else torch.cat(parts)
