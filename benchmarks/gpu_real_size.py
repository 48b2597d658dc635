"""Real-size GPU numbers (issue 19, item 3): the FLUX.1-dev, SD3.5-medium and FLUX.2 [dev] (32.2 B)
transformers behind ``glass.from_pipe``, random weights with the real configurations built on the GPU in
bf16 (a call takes the same time whatever the weights), 1024 x 1024 images (128 x 128 latents).

- overhead: one GLASS transition of M = 8 against 8 bare denoiser calls of the same adapter, batch 1
  and 4 (interleaved repetitions, medians; target <= 1.01), with and without ``torch.compile``;
- fk: FK steering with 8 particles, K = 2 transitions of GLASS M = 2: particle-steps per second and
  peak GPU memory, with and without ``model.chunk``;
- syncs: host-device synchronisations of one transition per kernel (CUDA sync debugging).

The text encoders and the VAE are tiny: only their output widths are real (T5 4096, CLIP pooled 768
for FLUX; CLIP-L + CLIP-G 768 + 1280 and T5 4096 for SD3.5; three stacked Mistral-3 layers of 5120
for FLUX.2 [dev]), so the prompt is encoded in no time and
nothing is downloaded. ``--small`` runs the same code with tiny transformers on the CPU (what
``tests/test_benchmarks.py`` does). On an H200, estimated 6-7 minutes for FLUX and 3 for SD3.5 (not
yet run: no GPU was lent when this was written; FLUX.2 [dev] does 2.7 times FLUX's work a call, so try it
with ``--no-compile`` first); run one model per call to stay within ten minutes:

    python benchmarks/gpu_real_size.py --models flux     # then --models sd3, --models flux2 (merged)
    python benchmarks/gpu_real_size.py --small           # the CPU check

Writes ``bench-cuda-real.json`` and ``.md`` (``bench-real-small.*`` with ``--small``) with the device's
name.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench import _sync, interleaved  # noqa: E402  (the same timing as make bench)

import glass  # noqa: E402

# the real transformer configurations (diffusers config.json of black-forest-labs/FLUX.1-dev and
# stabilityai/stable-diffusion-3.5-medium)
FLUX = {"attention_head_dim": 128, "axes_dims_rope": (16, 56, 56), "guidance_embeds": True, "in_channels": 64,
        "joint_attention_dim": 4096, "num_attention_heads": 24, "num_layers": 19, "num_single_layers": 38,
        "patch_size": 1, "pooled_projection_dim": 768}  # fmt: skip
SD35M = {"attention_head_dim": 64, "caption_projection_dim": 1536, "dual_attention_layers": tuple(range(13)),
         "in_channels": 16, "joint_attention_dim": 4096, "num_attention_heads": 24, "num_layers": 24,
         "out_channels": 16, "patch_size": 2, "pooled_projection_dim": 2048, "pos_embed_max_size": 384,
         "qk_norm": "rms_norm", "sample_size": 128}  # fmt: skip
# the same layouts at toy size, for --small
FLUX_SMALL = {**FLUX, "attention_head_dim": 8, "axes_dims_rope": (2, 2, 4), "joint_attention_dim": 32,
              "num_attention_heads": 2, "num_layers": 1, "num_single_layers": 1, "pooled_projection_dim": 32}
# FLUX.2 [dev] (black-forest-labs/FLUX.2-dev: 32 B parameters, diffusers' Flux2Transformer2DModel defaults);
# text tokens are three Mistral-3 layers of width 5120 stacked, latents 32 channels patchified 2 x 2
FLUX2 = {"attention_head_dim": 128, "axes_dims_rope": (32, 32, 32, 32), "guidance_embeds": True,
         "in_channels": 128, "joint_attention_dim": 15360, "mlp_ratio": 3.0, "num_attention_heads": 48,
         "num_layers": 8, "num_single_layers": 48, "patch_size": 1,
         "timestep_guidance_channels": 256}  # fmt: skip
FLUX2_SMALL = {**FLUX2, "attention_head_dim": 16, "axes_dims_rope": (4, 4, 4, 4), "in_channels": 32,
               "joint_attention_dim": 48, "num_attention_heads": 2, "num_layers": 1, "num_single_layers": 1,
               "timestep_guidance_channels": 32}  # fmt: skip
SD35M_SMALL = {**SD35M, "attention_head_dim": 8, "caption_projection_dim": 16, "dual_attention_layers": (0,),
               "joint_attention_dim": 48, "num_attention_heads": 2, "num_layers": 2,
               "pooled_projection_dim": 40, "pos_embed_max_size": 16, "sample_size": 8}  # fmt: skip


def _clip(tok, hidden: int, projection: bool):
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    cfg = CLIPTextConfig(vocab_size=len(tok), hidden_size=hidden, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=4, max_position_embeddings=77, projection_dim=hidden,
                         bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                         pad_token_id=tok.pad_token_id)  # fmt: skip
    return (CLIPTextModelWithProjection if projection else CLIPTextModel)(cfg).eval()


def _t5(tok, d_model: int):
    from transformers import T5Config, T5EncoderModel

    cfg = T5Config(vocab_size=len(tok), d_model=d_model, d_kv=8, d_ff=64, num_layers=1, num_heads=4,
                   relative_attention_num_buckets=8, relative_attention_max_distance=32,
                   feed_forward_proj="gated-gelu", is_encoder_decoder=False, use_cache=False, pad_token_id=0,
                   eos_token_id=1, decoder_start_token_id=0)  # fmt: skip
    return T5EncoderModel(cfg).eval()


def _vae(**config):
    from diffusers import AutoencoderKL

    return AutoencoderKL(in_channels=3, out_channels=3, latent_channels=16, block_out_channels=(8, 8, 8, 8),
                         down_block_types=("DownEncoderBlock2D",) * 4,
                         up_block_types=("UpDecoderBlock2D",) * 4, layers_per_block=1, norm_num_groups=4,
                         sample_size=32, **config).eval()  # fmt: skip


def build_pipe(kind: str, small: bool, device: str = "cpu"):
    """A diffusers pipeline with the real (or, small, a toy) transformer, built directly on ``device``
    (FLUX.1-dev's 12 B parameters would take minutes to initialise on a CPU), and tiny encoders and VAE."""
    from diffusers import (
        FlowMatchEulerDiscreteScheduler,
        FluxPipeline,
        FluxTransformer2DModel,
        SD3Transformer2DModel,  # fmt: skip
        StableDiffusion3Pipeline,
    )

    from tests.tiny_pipes import clip_tokenizer, t5_tokenizer

    torch.manual_seed(0)
    if kind == "flux2":
        return _flux2_dev(small, device)
    if kind == "flux":
        cfg = FLUX_SMALL if small else FLUX
        tok, tok2 = clip_tokenizer(), t5_tokenizer()
        return FluxPipeline(
            scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0, use_dynamic_shifting=True, base_shift=0.5,
                                                      max_shift=1.15, base_image_seq_len=256,
                                                      max_image_seq_len=4096),  # fmt: skip
            vae=_vae(scaling_factor=0.3611, shift_factor=0.1159),
            text_encoder=_clip(tok, cfg["pooled_projection_dim"], False),
            tokenizer=tok, text_encoder_2=_t5(tok2, cfg["joint_attention_dim"]), tokenizer_2=tok2,
            transformer=_on(device, lambda: FluxTransformer2DModel(**cfg).eval()),
        )  # fmt: skip
    cfg = SD35M_SMALL if small else SD35M
    tok, tok2, tok3 = clip_tokenizer(), clip_tokenizer(pad_token="!"), t5_tokenizer()
    widths = (16, 24) if small else (768, 1280)  # CLIP-L, CLIP-G: concatenated they are the pooled width
    return StableDiffusion3Pipeline(
        transformer=_on(device, lambda: SD3Transformer2DModel(**cfg).eval()),
        scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
        vae=_vae(scaling_factor=1.5305, shift_factor=0.0609), text_encoder=_clip(tok, widths[0], True),
        tokenizer=tok, text_encoder_2=_clip(tok2, widths[1], True), tokenizer_2=tok2,
        text_encoder_3=_t5(tok3, cfg["joint_attention_dim"]), tokenizer_3=tok3,
    )  # fmt: skip


def _flux2_dev(small: bool, device: str):
    """Flux2Pipeline (FLUX.2 [dev]) with the real (or a toy) transformer, a narrow Mistral-3 whose three
    stacked layers give the real text width, and a narrow VAE with the real 32 latent channels."""
    from diffusers import Flux2Pipeline, Flux2Transformer2DModel

    from tests.tiny_pipes import _flux2_vae_and_scheduler, mistral3_encoder, mistral_processor

    cfg = FLUX2_SMALL if small else FLUX2
    processor = mistral_processor()
    vae, scheduler = _flux2_vae_and_scheduler(cfg["in_channels"] // 4, (8, 8, 8, 8))
    text_encoder = mistral3_encoder(processor, cfg["joint_attention_dim"] // 3)
    pipe = Flux2Pipeline(
        scheduler=scheduler, vae=vae, text_encoder=text_encoder, tokenizer=processor,
        transformer=_on(device, lambda: Flux2Transformer2DModel(**cfg).eval()),
    )  # fmt: skip
    pipe.system_message = "Draw it."  # a short system prompt: the encoder's cost is not the point
    return pipe


def _on(device: str, build):
    """Build on ``device`` in bf16 off the CPU (FLUX.2 [dev]'s 32 B parameters in fp32 would not fit an
    H100, and barely an H200)."""
    dtype = torch.get_default_dtype()
    torch.set_default_dtype(torch.float32 if torch.device(device).type == "cpu" else torch.bfloat16)
    try:
        with torch.device(device):
            return build()
    finally:
        torch.set_default_dtype(dtype)


class LatentEnergy:
    """A cheap reward on the latents themselves (no decoding): FK steering's cost is the sampler's."""

    wants_latents = True
    differentiable = False

    def __call__(self, x, **cond):
        return -x.float().pow(2).mean(dim=tuple(range(1, x.ndim)))


@torch.inference_mode()
def overhead(model, batch: int, reps: int, device) -> dict:
    g = torch.Generator(device=device).manual_seed(0)
    x = torch.randn((batch, *model.shape), generator=g, device=device, dtype=torch.float64)
    kernel, steps = glass.GLASS(8, rho=0.4), 8
    times = torch.linspace(0.3, 0.6, steps + 1, dtype=torch.float64)[:-1]

    def bare():
        for i in range(steps):
            model.denoise(x, float(times[i]))

    med = interleaved({"bare": bare, "glass": lambda: kernel.transition(model, x, 0.3, 0.6, generator=g)},
                      reps, device)  # fmt: skip
    ratio = med["glass"] / med["bare"]
    return {"batch": batch, "bare_s": med["bare"], "glass_s": med["glass"], "ratio": ratio}


def fk(model, particles: int, device) -> dict:
    if torch.device(device).type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    kernel, grid = glass.GLASS(2, rho=0.4), 2
    run = lambda: glass.fk_steering(model, kernel, LatentEnergy(), grid, particles,  # noqa: E731
                                    generator=torch.Generator(device=device).manual_seed(0))  # fmt: skip
    run()  # warm-up
    _sync(device)
    start = time.perf_counter()
    run()
    _sync(device)
    spent = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated() / 2**30 if torch.device(device).type == "cuda" else None
    rate = particles * grid * 2 / spent  # particle-steps: particles x transitions x M
    return {"particles": particles, "chunk": model.chunk, "particle_steps_per_s": rate, "seconds": spent,
            "peak_gib": peak}  # fmt: skip


def sync_count(model, device) -> dict | None:
    """Host-device synchronisations of one transition (0.3 -> 0.6) of each kernel (CUDA sync
    debugging); issue 19 item 2 asks for one (the end-of-transition NaN check)."""
    import warnings

    if torch.device(device).type != "cuda":
        return None
    x = torch.randn((1, *model.shape), device=device, dtype=torch.float64)
    counts = {}
    for kernel in (glass.GLASS(8), glass.SDE(8), glass.ODE(8), glass.DDPM(8)):
        with torch.inference_mode():
            kernel.transition(model, x, 0.3, 0.6)
            torch.cuda.synchronize()
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                torch.cuda.set_sync_debug_mode("warn")
                try:
                    kernel.transition(model, x, 0.3, 0.6)
                finally:
                    torch.cuda.set_sync_debug_mode(0)
        counts[kernel.label] = sum("synchroniz" in str(w.message) for w in caught)
    return counts


def measure(kind: str, small: bool, device: str, reps: int, compile: bool = True) -> dict:
    dtype = torch.float32 if small else torch.bfloat16
    size = 64 if small else 1024
    pipe = build_pipe(kind, small, device).to(device=device, dtype=dtype)
    out = {"model": kind, "dtype": str(dtype).removeprefix("torch."), "image": size,
           "transformer_params_b": sum(p.numel() for p in pipe.transformer.parameters()) / 1e9}  # fmt: skip
    print(f"{kind}: {out['transformer_params_b']:.2f} B parameters", flush=True)
    for compiled in (False, True) if compile else (False,):
        model = glass.from_pipe(pipe, height=size, width=size, prompt="a red bicycle")
        if compiled:
            model = model.compile()
        rows = [overhead(model, b, reps, device) for b in (1, 4)]
        out["compiled" if compiled else "eager"] = rows
        print(kind, "compiled" if compiled else "eager", rows, flush=True)
    opts = {"height": size, "width": size, "prompt": "a red bicycle"}
    out["fk"] = [fk(glass.from_pipe(pipe, **opts, chunk=c), 8, device) for c in (None, 2)]
    out["syncs"] = sync_count(glass.from_pipe(pipe, **opts), device)
    print(kind, out["fk"], "syncs", out["syncs"], flush=True)
    del pipe, model  # the compiled model holds the transformer, and dynamo's cache may too
    torch._dynamo.reset()
    import gc

    gc.collect()
    if torch.device(device).type == "cuda":
        torch.cuda.empty_cache()
    return out


def markdown(res: dict) -> str:
    lines = ["# Real-size GPU numbers (issue 19 item 3)", "",
             f"{res['date']}; device {res['device']}; torch {res['torch']}; random weights with the real "
             "configurations; tiny text encoders and VAE.", ""]  # fmt: skip
    lines += ["| model | dtype | compile | batch | 8 bare denoiser calls (s) | GLASS M=8 (s) | ratio |",
              "|---|---|---|---|---|---|---|"]  # fmt: skip
    for m in res["models"]:
        for mode in ("eager", "compiled"):
            for r in m.get(mode, []):
                lines.append(f"| {m['model']} ({m['transformer_params_b']:.2f} B) | {m['dtype']} | {mode} | "
                             f"{r['batch']} | {r['bare_s']:.4f} | {r['glass_s']:.4f} | {r['ratio']:.3f} |")
    lines += ["", "FK steering, 8 particles, K = 2 transitions of GLASS M = 2 (one prompt):", "",
              "| model | chunk | particle-steps/s | peak GPU memory (GiB) |",
              "|---|---|---|---|"]  # fmt: skip
    for m in res["models"]:
        for r in m["fk"]:
            peak = f"{r['peak_gib']:.1f}" if r["peak_gib"] is not None else "-"
            rate = r["particle_steps_per_s"]
            lines.append(f"| {m['model']} | {r['chunk'] or 'all'} | {rate:.2f} | {peak} |")
    syncs = "; ".join(f"{m['model']}: " + ", ".join(f"{k} {n}" for k, n in m["syncs"].items())
                      for m in res["models"] if m["syncs"])  # fmt: skip
    if syncs:
        lines += ["", f"Host-device synchronisations in one transition 0.3 -> 0.6, per kernel: {syncs}."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--small", action="store_true", help="toy transformers on the CPU (what the test runs)")
    ap.add_argument("--device", default=None, help="default: cuda, or cpu with --small")
    ap.add_argument("--models", default="flux,sd3")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--no-compile", action="store_true", help="skip the torch.compile rows")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = ap.parse_args(argv)
    device = args.device or ("cpu" if args.small else "cuda")
    from glass.models.mnist import check_device

    check_device(device)
    name = torch.cuda.get_device_name(0) if device.startswith("cuda") else "cpu"
    res = {"date": datetime.now().isoformat(timespec="seconds"), "torch": torch.__version__, "device": name,
           "models": []}  # fmt: skip
    for kind in args.models.split(","):
        res["models"].append(measure(kind, args.small, device, args.reps, not args.no_compile))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = "bench-real-small" if args.small else "bench-cuda-real"
    if (out / f"{stem}.json").is_file():  # one model per call: keep the others' last results
        done = {m["model"] for m in res["models"]}
        old = json.loads((out / f"{stem}.json").read_text()).get("models", [])
        res["models"] = [m for m in old if m["model"] not in done] + res["models"]
    (out / f"{stem}.json").write_text(json.dumps(res, indent=2))
    (out / f"{stem}.md").write_text(markdown(res))
    print(markdown(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
