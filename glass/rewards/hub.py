"""Text-image preference rewards with real loading code: CLIP score, PickScore, HPSv2, ImageReward.

Their weights come from the Hugging Face hub (or a local directory / file given as ``model`` /
``path``) and are loaded when the run is prepared, so a missing package or missing weights give one
clear error before anything runs. The prompt comes in as ``cond["prompt"]`` (a string or one per
image). Images are data-space tensors in [-1, 1], (N, C, H, W) with C = 1 or 3; the CLIP-family
preprocessing (bicubic resize, centre crop, normalisation) is done in torch, so CLIP score, PickScore
and HPSv2 are differentiable. ImageReward goes through its package's PIL pipeline and is not.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["RewardUnavailable", "CLIPScore", "PickScore", "HPSv2", "ImageReward"]

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


class RewardUnavailable(ValueError):
    """A reward's package or weights are not available here (one-line user error)."""


def _reason(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0][:160] if text else type(e).__name__


def _clip_pixels(x: Tensor, size: int = 224) -> Tensor:
    """[-1, 1] images -> CLIP input: 3 channels, shorter side resized to ``size``, centre crop,
    normalised. Differentiable."""
    x = ((x.float() + 1) / 2).clamp(0, 1)
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    h, w = x.shape[-2:]
    scale = size / min(h, w)
    x = F.interpolate(x, size=(max(size, round(h * scale)), max(size, round(w * scale))), mode="bicubic",
                      align_corners=False, antialias=True)  # fmt: skip
    top, left = (x.shape[-2] - size) // 2, (x.shape[-1] - size) // 2
    x = x[..., top : top + size, left : left + size]
    mean = torch.tensor(CLIP_MEAN, device=x.device)[:, None, None]
    std = torch.tensor(CLIP_STD, device=x.device)[:, None, None]
    return (x - mean) / std


def _embeds(out) -> Tensor:
    """transformers' ``get_*_features``: a tensor before v5, an output whose ``pooler_output`` holds the
    projected embeddings from v5 on."""
    return out if torch.is_tensor(out) else out.pooler_output


def _require(module: str, who: str, install: str):
    """Import ``module`` or raise the one-line error naming what to install."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise RewardUnavailable(f"{who} needs {module}: pip install {install}") from None


def _prompts(cond: dict, n: int) -> list[str]:
    prompt = cond.get("prompt")
    if prompt is None:
        raise ValueError("this reward scores an image against a prompt: pass prompt=... (task.prompt)")
    prompts = [prompt] * n if isinstance(prompt, str) else list(prompt)
    if len(prompts) != n:
        raise ValueError(f"got {len(prompts)} prompts for {n} images")
    return prompts


class CLIPScore:
    """CLIP score: 100 * cos(image embedding, prompt embedding) (transformers ``CLIPModel``)."""

    differentiable = True
    scale = 100.0
    default_model = "openai/clip-vit-large-patch14"
    processor_model: str | None = None

    def __init__(self, model: str | None = None, device: str = "cpu"):
        self.model_id, self.device = model or self.default_model, device
        self._model = self._tokenizer = None

    def load(self):
        if self._model is not None:
            return self
        transformers = _require("transformers", type(self).__name__, "transformers")
        from glass.models.latent import quiet_hub

        try:
            with quiet_hub():
                self._load(transformers)
        except (OSError, ValueError) as e:
            raise RewardUnavailable(
                f"{type(self).__name__} weights {self.model_id!r} are not available ({_reason(e)}); download "
                f"them once with network access (huggingface-cli download {self.model_id}) or set "
                "reward.model to a local directory"
            ) from None
        return self

    def _load(self, transformers) -> None:
        model = transformers.CLIPModel.from_pretrained(self.model_id)
        self._model = model.eval().requires_grad_(False).to(self.device)
        self._tokenizer = transformers.AutoTokenizer.from_pretrained(self.processor_model or self.model_id)

    def _text(self, prompts: list[str]) -> Tensor:
        tok = self._tokenizer(prompts, padding=True, truncation=True, max_length=77, return_tensors="pt")
        return F.normalize(_embeds(self._model.get_text_features(**tok.to(self.device))), dim=-1)

    def image_features(self, x1: Tensor) -> Tensor:
        """Unit-norm CLIP image features of images in [-1, 1] (diversity is measured in this space)."""
        self.load()
        out = self._model.get_image_features(pixel_values=_clip_pixels(x1.to(self.device)))
        return F.normalize(_embeds(out), dim=-1)

    def __call__(self, x1: Tensor, **cond) -> Tensor:
        img = self.image_features(x1)
        txt = self._text(_prompts(cond, len(x1)))
        return (self.scale * (img * txt).sum(-1)).double()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.model_id!r})"


class PickScore(CLIPScore):
    """PickScore (Kirstain et al. 2023): a CLIP-H fine-tuned on Pick-a-Pic preferences; logit scale
    times the cosine similarity."""

    default_model = "yuvalkirstain/PickScore_v1"
    processor_model = "laion/CLIP-ViT-H-14-laion2B-s32B-b79K"

    def __call__(self, x1: Tensor, **cond) -> Tensor:
        self.load()
        self.scale = float(self._model.logit_scale.exp())
        return super().__call__(x1, **cond)


class HPSv2:
    """HPS v2.1 (Wu et al. 2023): open_clip ViT-H-14 with the HPS checkpoint; cosine similarity."""

    differentiable = True
    hub_file = ("xswu/HPSv2", "HPS_v2.1_compressed.pt")  # path null: this hub repository's file

    def __init__(self, path: str | None = None, device: str = "cpu"):
        self.path, self.device = path, device
        self._model = self._tokenizer = None

    def load(self):
        if self._model is not None:
            return self
        open_clip = _require("open_clip", "HPSv2", "open_clip_torch")
        try:
            path = self.path
            if path is None:
                from huggingface_hub import hf_hub_download

                path = hf_hub_download(*self.hub_file)
            model = open_clip.create_model("ViT-H-14", pretrained=None)
            state = torch.load(path, map_location="cpu", weights_only=False)
            model.load_state_dict(state.get("state_dict", state))
        except Exception as e:  # noqa: BLE001 - no network, missing or unreadable file: one user error
            raise RewardUnavailable(
                f"HPSv2 weights are not available ({_reason(e)}); download HPS_v2.1_compressed.pt from the "
                "xswu/HPSv2 hub repository once and set reward.path to it"
            ) from None
        self._model = model.eval().requires_grad_(False).to(self.device)
        self._tokenizer = open_clip.get_tokenizer("ViT-H-14")
        return self

    def __call__(self, x1: Tensor, **cond) -> Tensor:
        self.load()
        img = F.normalize(self._model.encode_image(_clip_pixels(x1.to(self.device))), dim=-1)
        txt = F.normalize(
            self._model.encode_text(self._tokenizer(_prompts(cond, len(x1))).to(self.device)), dim=-1
        )
        return (img * txt).sum(-1).double()

    def __repr__(self) -> str:
        return "HPSv2()"


class ImageReward:
    """ImageReward (Xu et al. 2023) through the ``image-reward`` package (BLIP-based; PIL input, so
    not differentiable)."""

    differentiable = False
    default_model = "ImageReward-v1.0"
    releases = {"ImageReward-v1.0": "ImageReward.pt"}  # image_reward.load's names: their file
    cache = "~/.cache/ImageReward"  # where image_reward.load keeps them (hf_hub_download's local_dir)

    def __init__(self, model: str | None = None, device: str = "cpu"):
        self.model_id, self.device = model or self.default_model, device
        self._model = None

    @classmethod
    def checkpoint(cls, model: str | None) -> Path:
        """The file ``image_reward.load(model)`` reads (None: the default release): a release's in the
        package's cache, else the path given."""
        model = model or cls.default_model
        return Path(cls.cache, cls.releases[model]).expanduser() if model in cls.releases else Path(model)

    def load(self):
        if self._model is not None:
            return self
        image_reward = _require("ImageReward", "ImageReward", "image-reward")
        try:
            self._model = image_reward.load(self.model_id, device=self.device)
        except Exception as e:  # noqa: BLE001 - no network or missing file: one user error
            raise RewardUnavailable(
                f"ImageReward weights {self.model_id!r} are not available ({_reason(e)}); download them once "
                "with network access or set reward.model to the local checkpoint path"
            ) from None
        return self

    def __call__(self, x1: Tensor, **cond) -> Tensor:
        from torchvision.transforms.functional import to_pil_image

        self.load()
        prompts = _prompts(cond, len(x1))
        pixels = ((x1.detach().float().cpu() + 1) / 2).clamp(0, 1)
        if pixels.shape[1] == 1:
            pixels = pixels.expand(-1, 3, -1, -1)
        scores = [float(self._model.score(p, [to_pil_image(img)])) for p, img in zip(prompts, pixels)]
        return torch.tensor(scores, dtype=torch.float64)

    def __repr__(self) -> str:
        return f"ImageReward({self.model_id!r})"
