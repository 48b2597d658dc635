"""SiT (Ma et al. 2024, "Scalable Interpolant Transformers", arXiv 2401.08740) as a GLASS model.

SiT is a DiT backbone trained on the linear interpolant x_t = t x_1 + (1 - t) x_0 with x_1 the data
(SD-VAE latents of ImageNet-256) and x_0 the noise: exactly this project's convention (t = 0 noise,
t = 1 data), and the network predicts the velocity dx_t/dt = x_1 - x_0 from the raw t in [0, 1]
(no x1000), so it is ``prediction="velocity"`` on the ``linear`` schedule with no time flip.

:class:`SiTNet` is written here (no ``timm``) with the parameter names of the public checkpoints
(``SiT-XL-2-256x256.pt``: a plain state dict), so they load with ``load_state_dict``. Conditioning is
the class label (1000 classes; label 1000 is the null class used by classifier-free guidance).
The official sampler applies CFG to the first 3 of the 4 latent channels; ``cfg_channels=3``
reproduces that, the default (all channels) is the textbook CFG.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import Tensor, nn

from glass.checks import check_dtype
from glass.models.base import to_denoiser
from glass.models.latent import LatentModel, load_vae

__all__ = ["SiTNet", "SiT", "load_sit", "SIT_CONFIGS", "SIT_XL_2_URL"]

SIT_XL_2_URL = "https://www.dl.dropboxusercontent.com/scl/fi/as9oeomcbub47de5g4be2/SiT-XL-2-256.pt?rlkey=uxzxmpicu46coq3msb17b9ofa&dl=0"
SIT_CONFIGS = {  # depth, hidden size, heads (patch size in the name)
    "SiT-XL/2": (28, 1152, 16, 2), "SiT-L/2": (24, 1024, 16, 2), "SiT-B/2": (12, 768, 12, 2),
    "SiT-S/2": (12, 384, 6, 2), "SiT-XL/4": (28, 1152, 16, 4), "SiT-B/4": (12, 768, 12, 4),
}  # fmt: skip


def _sincos_2d(dim: int, side: int) -> Tensor:
    """Fixed 2-D sine-cosine position table (side*side, dim), patches in row-major order: the first
    half encodes the column, the second half the row, each as [sin, cos] of position x
    10000^(-k / (dim/4)) (the layout of the public checkpoints, which also store this table)."""

    def one(pos: Tensor, d: int) -> Tensor:
        omega = 1.0 / 10000 ** (torch.arange(d // 2, dtype=torch.float64) / (d / 2))
        out = pos.reshape(-1, 1).double() * omega
        return torch.cat([out.sin(), out.cos()], dim=1)

    rows, cols = torch.meshgrid(torch.arange(side), torch.arange(side), indexing="ij")
    return torch.cat([one(cols, dim // 2), one(rows, dim // 2)], dim=1).float()


def _time_features(t: Tensor, dim: int = 256, max_period: float = 10000.0) -> Tensor:
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[:, None] * freqs
    return torch.cat([args.cos(), args.sin()], dim=-1)


class _Attention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        out = nn.functional.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(b, n, d))


class _Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(dim, hidden), nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(nn.functional.gelu(self.fc1(x), approximate="tanh"))


def _modulate(x: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    return x * (1 + scale[:, None]) + shift[:, None]


class _Block(nn.Module):
    """Transformer block with adaLN-Zero conditioning on (time + class) embedding."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.attn = _Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.mlp = _Mlp(dim, int(dim * mlp_ratio))
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim))

    def forward(self, x: Tensor, c: Tensor) -> Tensor:
        s1, g1, a1, s2, g2, a2 = self.adaLN_modulation(c).chunk(6, dim=1)
        x = x + a1[:, None] * self.attn(_modulate(self.norm1(x), s1, g1))
        return x + a2[:, None] * self.mlp(_modulate(self.norm2(x), s2, g2))


class _Embed(nn.Module):
    def __init__(self, **modules):
        super().__init__()
        for k, v in modules.items():
            setattr(self, k, v)


class SiTNet(nn.Module):
    """The SiT / DiT backbone: patchify -> blocks with adaLN-Zero -> unpatchify; ``forward(x, t, y)``
    returns the velocity (the learned-sigma half of the output, if any, is dropped)."""

    def __init__(
        self,
        input_size: int = 32,
        patch_size: int = 2,
        in_channels: int = 4,
        hidden_size: int = 1152,
        depth: int = 28,
        num_heads: int = 16,
        mlp_ratio: float = 4.0,
        num_classes: int = 1000,
        learn_sigma: bool = True,
    ):
        super().__init__()
        if input_size % patch_size:
            raise ValueError(f"SiT input_size {input_size} is not a multiple of patch_size {patch_size}")
        self.in_channels, self.patch_size, self.num_classes = in_channels, patch_size, num_classes
        self.out_channels = 2 * in_channels if learn_sigma else in_channels
        self.side = input_size // patch_size
        self.x_embedder = _Embed(proj=nn.Conv2d(in_channels, hidden_size, patch_size, stride=patch_size))
        self.t_embedder = _Embed(mlp=nn.Sequential(nn.Linear(256, hidden_size), nn.SiLU(),
                                                   nn.Linear(hidden_size, hidden_size)))  # fmt: skip
        self.y_embedder = _Embed(embedding_table=nn.Embedding(num_classes + 1, hidden_size))
        self.pos_embed = nn.Parameter(_sincos_2d(hidden_size, self.side)[None], requires_grad=False)
        self.blocks = nn.ModuleList(_Block(hidden_size, num_heads, mlp_ratio) for _ in range(depth))
        self.final_layer = _Embed(
            norm_final=nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6),
            linear=nn.Linear(hidden_size, patch_size**2 * self.out_channels),
            adaLN_modulation=nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, 2 * hidden_size)),
        )

    def forward(self, x: Tensor, t: Tensor, y: Tensor) -> Tensor:
        h = self.x_embedder.proj(x).flatten(2).transpose(1, 2) + self.pos_embed
        c = self.t_embedder.mlp(_time_features(t).to(h.dtype)) + self.y_embedder.embedding_table(y)
        for block in self.blocks:
            h = block(h, c)
        f = self.final_layer
        shift, scale = f.adaLN_modulation(c).chunk(2, dim=1)
        h = f.linear(_modulate(f.norm_final(h), shift, scale))
        p, s, c_out = self.patch_size, self.side, self.out_channels
        out = h.reshape(-1, s, s, p, p, c_out).permute(0, 5, 1, 3, 2, 4).reshape(-1, c_out, s * p, s * p)
        return out[:, : self.in_channels]


class SiT(LatentModel):
    """SiT behind the denoiser interface: D_t(x) = x + (1 - t) u_t(x) (linear schedule, eq. 14),
    class-conditional with CFG on the velocity (affine in D, so the same as CFG on D)."""

    def __init__(
        self,
        net: SiTNet,
        vae=None,
        class_label: int = 207,
        cfg_scale: float = 1.0,
        cfg_channels: int | None = None,
        dtype: str = "float32",
        device: str = "cpu",
        chunk: int | None = None,
        scaling_factor: float = 0.18215,
    ):
        net = net.eval().requires_grad_(False)
        if not 0 <= class_label < net.num_classes:
            raise ValueError(f"model.class_label must be in [0, {net.num_classes}), got {class_label}")
        side = net.side * net.patch_size
        super().__init__(
            net, vae, (net.in_channels, side, side), "linear", dtype, device, cfg_scale, chunk,
            scaling_factor=scaling_factor,
        )  # fmt: skip
        self.class_label, self.cfg_channels = class_label, cfg_channels

    def _velocity(self, x: Tensor, t: Tensor, y: Tensor) -> Tensor:
        return self.net(x.to(self.dtype), t.to(torch.float32), y).double()

    def _x0(self, x: Tensor, t: Tensor, **cond) -> Tensor:
        y = cond.get("y")
        if y is None:
            y = torch.full((len(x),), self.class_label, dtype=torch.long, device=x.device)
        if self.cfg_scale == 1.0:
            u = self._velocity(x, t, y)
        else:
            null = torch.full_like(y, self.net.num_classes)
            both = self._velocity(torch.cat([x, x]), torch.cat([t, t]), torch.cat([y, null]))
            c, n = both.chunk(2)
            u = n + self.cfg_scale * (c - n)
            if self.cfg_channels is not None:  # the official sampler guides only the first channels
                u[:, self.cfg_channels :] = c[:, self.cfg_channels :]
        return to_denoiser(self.schedule, "velocity", u, x, t)

    def __repr__(self) -> str:
        return f"SiT({self.n_params():.1f}M params, class {self.class_label})"


def load_sit(
    path: str | None = None,
    arch: str = "SiT-XL/2",
    image_size: int = 256,
    vae: str | None = "stabilityai/sd-vae-ft-ema",
    class_label: int = 207,
    cfg_scale: float = 1.0,
    cfg_channels: int | None = None,
    dtype: str = "float32",
    device: str = "cpu",
    chunk: int | None = None,
    net: dict | None = None,
) -> SiT:
    """``model=sit``: a SiT checkpoint (local ``.pt``/``.safetensors`` state dict, or null for the
    official SiT-XL/2 256x256 weights, downloaded once into torch's hub cache) and the SD VAE (a hub
    id or local diffusers folder; null: no decoder, latents only). ``net`` overrides the
    architecture (e.g. a tiny SiT for tests: ``{input_size: 8, hidden_size: 32, depth: 2, ...}``)."""
    from glass.models.mnist import check_device

    check_device(device)
    check_dtype("dtype", dtype)
    if net is None:
        if arch not in SIT_CONFIGS:
            raise ValueError(f"unknown SiT architecture {arch!r}; choose from: {', '.join(SIT_CONFIGS)}")
        depth, hidden, heads, patch = SIT_CONFIGS[arch]
        net = dict(
            input_size=image_size // 8, patch_size=patch, hidden_size=hidden, depth=depth, num_heads=heads
        )
    with torch.inference_mode(False):
        state = _load_state(path)  # first: an offline failure never builds SiT-XL/2 (2.7 GB float32)
        model = SiTNet(**net)
        if state is not None:
            try:
                missing, unexpected = model.load_state_dict(state, strict=False)
            except RuntimeError as e:  # shape mismatches
                detail = str(e).strip().splitlines()[1].strip() if "\n" in str(e) else str(e)
                raise ValueError(f"the SiT checkpoint does not fit the architecture: {detail}") from None
            if missing or unexpected:
                raise ValueError(
                    f"the SiT checkpoint does not fit the architecture: missing {missing[:3]}, "
                    f"unexpected {unexpected[:3]}"
                )
    decoder = load_vae(vae, device, dtype) if vae else None
    return SiT(model, decoder, class_label, cfg_scale, cfg_channels, dtype, device, chunk)


def _load_state(path: str | None):
    if path == "random":  # random weights (tests, smoke runs)
        return None
    if path is None:
        import contextlib
        import io

        try:  # torch.hub announces the download (stdout or stderr); an offline failure should be one line
            with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
                state = torch.hub.load_state_dict_from_url(
                    SIT_XL_2_URL, map_location="cpu", file_name="SiT-XL-2-256.pt", progress=False
                )
        except Exception as e:  # noqa: BLE001 - offline, blocked, ...
            raise ValueError(
                f"cannot download the SiT-XL/2 checkpoint ({type(e).__name__}); "
                "pass model.path=/path/to/SiT-XL-2-256.pt"
            ) from None
    else:
        p = Path(path).expanduser()
        if not p.is_file():
            raise ValueError(f"SiT checkpoint {str(p)!r} not found")
        if p.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(p))
        else:
            state = torch.load(p, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "ema" in state:  # training checkpoints keep the EMA weights there
        state = state["ema"]
    return state
