"""Large-model adapters (FLUX, SD3, Stable Diffusion UNets, SiT) on tiny random-weight models built
from configs: the adapter's denoiser agrees with the model's own scheduler (one deterministic step
through our ODE equals the scheduler's step), time and sign conventions are right, and GLASS, FK
steering and guidance run end to end on each."""

import pytest
import torch

import glass
from glass.alignment import best_of_n, fk_steering
from glass.alignment.guidance import Guided
from glass.models.flux import Flux, image_ids, pack, unpack
from glass.models.sd import StableDiffusion, fractional_step
from glass.models.sd3 import SD3
from glass.models.sit import SiT, SiTNet
from glass.rewards.ink import Ink

diffusers = pytest.importorskip("diffusers")


@pytest.fixture(autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: thread start-up dominates otherwise
    yield
    torch.set_num_threads(n)


def tiny_vae(latent_channels: int):
    torch.manual_seed(0)
    return diffusers.AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=latent_channels, block_out_channels=(8, 16),
        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
        layers_per_block=1, norm_num_groups=4,
    ).eval()  # fmt: skip


def tiny_flux(guidance_embeds=True, vae=True):
    torch.manual_seed(0)
    net = diffusers.FluxTransformer2DModel(
        patch_size=1, in_channels=16, num_layers=1, num_single_layers=1, attention_head_dim=8,
        num_attention_heads=2, joint_attention_dim=32, pooled_projection_dim=16,
        guidance_embeds=guidance_embeds, axes_dims_rope=(2, 2, 4),
    ).eval()  # fmt: skip
    prompt = {"embeds": torch.randn(1, 5, 32), "pooled": torch.randn(1, 16)}
    negative = {"embeds": torch.randn(1, 5, 32), "pooled": torch.randn(1, 16)}
    return Flux(net, tiny_vae(4) if vae else None, prompt, negative, (4, 8, 8), 3.5, 1.0, "float32", "cpu")


def tiny_sd3(cfg=4.0):
    torch.manual_seed(0)
    net = diffusers.SD3Transformer2DModel(
        sample_size=8, patch_size=2, in_channels=4, num_layers=1, attention_head_dim=8, num_attention_heads=2,
        joint_attention_dim=32, caption_projection_dim=16, pooled_projection_dim=16, out_channels=4,
        pos_embed_max_size=8,
    ).eval()  # fmt: skip
    prompt = {"embeds": torch.randn(1, 7, 32), "pooled": torch.randn(1, 16)}
    negative = {"embeds": torch.randn(1, 7, 32), "pooled": torch.randn(1, 16)}
    return SD3(net, tiny_vae(4), prompt, negative, (4, 8, 8), cfg, "float32", "cpu")


def tiny_unet():
    torch.manual_seed(0)
    return diffusers.UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(16, 32),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32, attention_head_dim=8, norm_num_groups=8,
    ).eval()  # fmt: skip


def tiny_sd(prediction="epsilon", cfg=1.0):
    sched = diffusers.DDIMScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
        clip_sample=False, set_alpha_to_one=False, prediction_type=prediction,
    )  # fmt: skip
    prompt = {"embeds": torch.randn(1, 6, 32, generator=torch.Generator().manual_seed(1))}
    negative = {"embeds": torch.zeros(1, 6, 32)}
    model = StableDiffusion(tiny_unet(), tiny_vae(4), sched.alphas_cumprod, prediction, prompt, negative,
                            (4, 8, 8), cfg, "float32", "cpu")  # fmt: skip
    return model, sched


def tiny_sit(cfg=1.0):
    torch.manual_seed(0)
    net = SiTNet(
        input_size=8, patch_size=2, in_channels=4, hidden_size=32, depth=2, num_heads=2, num_classes=10
    )
    return SiT(net, tiny_vae(4), class_label=3, cfg_scale=cfg)


def test_flux_denoiser_matches_the_flow_match_euler_scheduler_step():
    """Our ODE Euler step in t = 1 - sigma equals FlowMatchEulerDiscreteScheduler.step on packed latents."""
    model = tiny_flux(vae=False)
    sched = diffusers.FlowMatchEulerDiscreteScheduler(shift=3.0)
    sched.set_timesteps(6)
    x = torch.randn(2, 4, 8, 8)
    i = 2
    sigma, sigma_next = float(sched.sigmas[i]), float(sched.sigmas[i + 1])
    v = model.velocity_net(x.double(), torch.full((2,), sigma, dtype=torch.float64), model.prompt)
    sched._step_index = i
    ref = sched.step(pack(v.float()), sched.timesteps[i], pack(x)).prev_sample
    ours = glass.ODE(1).transition(model, x.double(), 1 - sigma, 1 - sigma_next)
    assert torch.allclose(pack(ours.float()), ref, atol=1e-5)
    # the denoiser is x0: x_sigma = (1 - sigma) x0 + sigma eps with v = eps - x0
    d = model.denoise(x.double(), 1 - sigma)
    assert torch.allclose(d, x.double() - sigma * v, atol=1e-6)


def test_flux_packing_ids_guidance_and_true_cfg():
    x = torch.randn(3, 4, 8, 6)
    assert torch.equal(unpack(pack(x), 8, 6), x)
    ids = image_ids(8, 6)
    assert ids.shape == (12, 3) and ids[5].tolist() == [0, 1, 2]
    model = tiny_flux(vae=False)
    y = torch.randn(2, 4, 8, 8, dtype=torch.float64)
    base = model.denoise(y, 0.4)
    model.guidance_scale = 7.0  # distilled guidance is an input of the network
    assert not torch.allclose(model.denoise(y, 0.4), base)
    model.guidance_scale, model.cfg_scale = 3.5, 2.0
    pos = model.velocity_net(y, torch.full((2,), 0.6, dtype=torch.float64), model.prompt)
    neg = model.velocity_net(y, torch.full((2,), 0.6, dtype=torch.float64), model.negative)
    assert torch.allclose(model.denoise(y, 0.4), y - 0.6 * (neg + 2.0 * (pos - neg)), atol=1e-6)
    grid = model.grid(4)
    assert grid[0] == 0 and grid[-1] == 1 and bool((grid[1:] > grid[:-1]).all())


def test_sd3_denoiser_matches_its_scheduler_step_and_cfg_batches():
    model = tiny_sd3(cfg=4.0)
    sched = diffusers.FlowMatchEulerDiscreteScheduler(shift=3.0)
    sched.set_timesteps(5)
    x = torch.randn(2, 4, 8, 8)
    i = 1
    sigma, sigma_next = float(sched.sigmas[i]), float(sched.sigmas[i + 1])
    s = torch.full((2,), sigma, dtype=torch.float64)
    neg, pos = model.velocity_net(x.double(), s, [model.negative, model.prompt]).chunk(2)
    assert torch.allclose(pos, model.velocity_net(x.double(), s, [model.prompt]), atol=1e-5)
    v = neg + 4.0 * (pos - neg)
    sched._step_index = i
    ref = sched.step(v.float(), sched.timesteps[i], x).prev_sample
    assert torch.allclose(
        glass.ODE(1).transition(model, x.double(), 1 - sigma, 1 - sigma_next).float(), ref, atol=1e-5
    )
    assert model.nfe == 1  # one guided denoiser call = one NFE (two batched passes inside)


@pytest.mark.parametrize("prediction", ["epsilon", "v_prediction", "sample"])
def test_sd_unet_ddim_step_equals_the_scheduler(prediction):
    """At grid times t = abar_k, one ODE(ddim) step equals DDIMScheduler.step (eta = 0) for every
    prediction type; CFG off."""
    model, sched = tiny_sd(prediction)
    sched.set_timesteps(10)  # 900, 800, ..., 0
    k, k_prev = 600, 500
    x = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(3))
    out = model.net(
        x, torch.tensor([k, k]), encoder_hidden_states=model.prompt["embeds"].expand(2, -1, -1)
    ).sample
    ref = sched.step(out, k, x, eta=0.0).prev_sample
    abar = sched.alphas_cumprod.double()
    ours = glass.ODE(1, method="ddim").transition(model, x.double(), float(abar[k]), float(abar[k_prev]))
    assert torch.allclose(ours.float(), ref, atol=2e-5)


def test_sd_fractional_steps_and_grid():
    _, sched = tiny_sd()
    abar = sched.alphas_cumprod
    k = torch.tensor([0, 1, 250, 998, 999])
    assert torch.allclose(fractional_step(abar[k].double(), abar), k.double(), atol=1e-6)
    mid = (abar[10].double().log() + abar[11].double().log()) / 2
    assert float(fractional_step(mid.exp()[None], abar)) == pytest.approx(10.5, abs=1e-6)
    assert float(fractional_step(torch.tensor([1.0]), abar)) == 0.0  # beyond abar_0: the last step
    model, _ = tiny_sd()
    g = glass.samplers.base.time_grid(4, model)
    assert float(g[0]) == pytest.approx(float(abar[-1])) and float(g[-1]) == 1.0


def test_sit_convention_and_cfg():
    """SiT: velocity in our own time direction, D = x + (1 - t) u; CFG against the null class; the
    official 3-channel CFG variant leaves the last channel conditional."""
    model = tiny_sit(cfg=1.0)
    x = torch.randn(2, 4, 8, 8, dtype=torch.float64)
    t = torch.full((2,), 0.3, dtype=torch.float64)
    y = torch.full((2,), 3)
    u = model.net(x.float(), t.float(), y).double()
    assert torch.allclose(model.denoise(x, 0.3), x + 0.7 * u, atol=1e-6)
    model.cfg_scale = 1.5
    un = model.net(x.float(), t.float(), torch.full((2,), 10)).double()
    assert torch.allclose(model.denoise(x, 0.3), x + 0.7 * (un + 1.5 * (u - un)), atol=1e-5)
    model.cfg_channels = 3
    d = model.denoise(x, 0.3)
    assert torch.allclose(d[:, 3], (x + 0.7 * u)[:, 3], atol=1e-5)
    keys = set(model.net.state_dict())
    assert {"pos_embed", "x_embedder.proj.weight", "blocks.1.attn.qkv.weight", "final_layer.linear.bias",
            "y_embedder.embedding_table.weight", "t_embedder.mlp.2.weight"} <= keys  # fmt: skip


def test_sit_loads_a_checkpoint_state_dict(tmp_path):
    from glass.models.sit import load_sit

    tiny = dict(
        input_size=8, patch_size=2, in_channels=4, hidden_size=32, depth=1, num_heads=2, num_classes=10
    )
    torch.manual_seed(5)
    src = SiTNet(**tiny)
    torch.save({"ema": src.state_dict()}, tmp_path / "ckpt.pt")
    model = load_sit(str(tmp_path / "ckpt.pt"), vae=None, class_label=2, net=tiny)
    x = torch.randn(2, 4, 8, 8, dtype=torch.float64)
    assert torch.allclose(model.net(x.float(), torch.full((2,), 0.5), torch.full((2,), 2)),
                          src(x.float(), torch.full((2,), 0.5), torch.full((2,), 2)))  # fmt: skip
    with pytest.raises(ValueError, match="does not fit"):
        load_sit(str(tmp_path / "ckpt.pt"), vae=None, net={**tiny, "hidden_size": 16})


MODELS = {
    "flux": lambda: tiny_flux(),
    "sd3": lambda: tiny_sd3(cfg=2.0),
    "sd": lambda: tiny_sd("v_prediction", cfg=2.0)[0],
    "sit": lambda: tiny_sit(cfg=1.5),
}


@pytest.mark.parametrize("name", list(MODELS))
def test_glass_fk_steering_and_guidance_end_to_end(name):
    model = MODELS[name]()
    reward = Ink()
    g = torch.Generator().manual_seed(0)
    x = glass.generate(model, glass.GLASS(2, rho=0.4), 2, 3, generator=g)
    assert x.shape == (3, 4, 8, 8) and torch.isfinite(x).all() and model.nfe == 4

    def r(z):
        return reward(model.decode(z))

    res = fk_steering(model, glass.GLASS(2), r, grid=2, particles=3, groups=2, lam=5.0, generator=g)
    best, rb = res.best()
    assert best.shape == (2, 4, 8, 8) and torch.isfinite(rb).all()
    _, rn, nfe = best_of_n(model, glass.GLASS(1), r, grid=2, n=2, groups=2, generator=g)
    assert nfe == 2 and torch.isfinite(rn).all()
    guided = Guided(model, reward, decode=model.decode, lam=0.4, t_lo=0.2, t_hi=0.7)
    y = glass.generate(guided, glass.GLASS(2), 2, 2, generator=g)
    assert torch.isfinite(y).all() and guided.grad_evals > 0


def _save_flux(root, tmp_path, prompt="a tiny cat"):
    from glass.models.prompts import PromptCache

    model = tiny_flux()
    model.net.save_pretrained(root / "transformer")
    model.vae.save_pretrained(root / "vae")
    # the prompt was encoded before (the cache is what a GPU user's first run leaves behind)
    PromptCache(str(tmp_path / "cache"), str(root), "flux", 512).get(
        prompt, lambda p: {"embeds": model.prompt["embeds"].cpu(), "pooled": model.prompt["pooled"].cpu()}
    )
    return model


def test_flux_from_a_local_folder_through_the_cli(tmp_path):
    """model=flux from a local diffusers folder (tiny weights) with a cached prompt: FK steering with
    GLASS runs end to end on the CLI; the denoiser equals the in-memory model's."""
    import json

    from typer.testing import CliRunner

    from glass.cli import app
    from glass.config import compose, instantiate

    root = tmp_path / "tiny-flux"
    ref = _save_flux(root, tmp_path)
    common = [f"model.model_id={root}", "model.device=cpu", "model.dtype=float32", "model.height=16",
              "model.width=16", "model.prompt='a tiny cat'", f"out_dir={tmp_path}"]  # fmt: skip
    model = instantiate(compose(["model=flux", *common]).model, "model")
    assert model.shape == (4, 8, 8) and model.prompt_text == "a tiny cat"
    x = torch.randn(2, 4, 8, 8, dtype=torch.float64)
    assert torch.allclose(model.denoise(x, 0.3), ref.denoise(x, 0.3), atol=1e-6)
    res = CliRunner().invoke(
        app, ["run", "model=flux", *common, "task=fk_steering", "reward=ink", "sampler=glass",
              "sampler.steps=1", "task.particles=2", "task.groups=2", "task.transitions=2"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    (run,) = [p for p in tmp_path.glob("runs/*/*") if p.is_dir()]
    row = json.loads((run / "metrics.json").read_text())["rows"][0]
    assert row["nfe_per_sample"] == 2 * 2 and 0 <= row["reward"] <= 1
    assert (run / "samples.png").stat().st_size > 1000
    bad = CliRunner().invoke(app, ["run", "model=flux", *common, "task=posterior"])
    assert bad.exit_code == 2 and "no data set" in bad.stderr


def test_pretrained_configs_fail_offline_with_one_line(tmp_path, monkeypatch):
    """No network here: the real hub ids fail when the run is prepared, with one line and no output."""
    import huggingface_hub
    from typer.testing import CliRunner

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # fail fast, no retries
    from glass.cli import app

    for model in ("flux", "sd3", "sd", "sit"):
        res = CliRunner().invoke(
            app, ["run", f"model={model}", "model.device=cpu", "task=generate", f"out_dir={tmp_path}"]
        )
        assert res.exit_code == 2 and res.stderr.count("\n") == 1, (model, res.output)
        assert "cannot load" in res.stderr or "cannot download" in res.stderr
    assert not (tmp_path / "runs").exists()


def test_sd_from_a_local_folder_with_cached_prompts_and_attention_slicing(tmp_path):
    from glass.models.prompts import PromptCache
    from glass.models.sd import load_sd

    ref, sched = tiny_sd("v_prediction", cfg=3.0)
    root = tmp_path / "tiny-sd"
    ref.net.save_pretrained(root / "unet")
    ref.vae.save_pretrained(root / "vae")
    sched.save_pretrained(root / "scheduler")
    cache = PromptCache(str(tmp_path / "cache"), str(root), "sd")
    cache.get("a fox", lambda p: {"embeds": ref.prompt["embeds"].cpu()})
    cache.get("", lambda p: {"embeds": ref.negative["embeds"].cpu()})
    model = load_sd(
        str(root), prompt="a fox", negative_prompt="", height=16, width=16, cfg_scale=3.0, dtype="float32",
        device="cpu", cache_dir=str(tmp_path / "cache"), attention_slicing=True,
    )  # fmt: skip
    assert model.prediction == "v" and model.shape == (4, 8, 8) and model.prompt_text == "a fox"
    x = torch.randn(2, 4, 8, 8, dtype=torch.float64)
    assert torch.allclose(model.denoise(x, 0.4), ref.denoise(x, 0.4), atol=1e-5)


def test_sit_and_sd3_run_with_a_bfloat16_network():
    net = SiTNet(
        input_size=8, patch_size=2, in_channels=4, hidden_size=32, depth=1, num_heads=2, num_classes=10
    )
    model = SiT(net, None, class_label=1, dtype="bfloat16")
    x = torch.randn(2, 4, 8, 8, dtype=torch.float64)
    d = model.denoise(x, 0.5)
    assert d.dtype == torch.float64 and torch.isfinite(d).all()
    sd3 = tiny_sd3(cfg=2.0)
    sd3.net, sd3.dtype = sd3.net.to(torch.bfloat16), torch.bfloat16
    sd3.prompt = {k: v.to(torch.bfloat16) for k, v in sd3.prompt.items()}
    sd3.negative = {k: v.to(torch.bfloat16) for k, v in sd3.negative.items()}
    assert torch.isfinite(sd3.denoise(x, 0.3)).all()
