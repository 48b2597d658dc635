"""diffusers pipelines through ``glass.from_pipe``, on tiny random-weight pipelines of every supported
family built offline from configs (tests/tiny_pipes.py): our ODE on the pipeline's grid reproduces
the pipeline's own sampler, the pipe is bit-for-bit unchanged after every entry point, prompts are
per sample, rewards see images, outputs carry no graph, and GLASS / FK steering / best-of-N /
guidance / posterior sampling run end to end on each family. SiT (our own implementation) too."""

import copy
import hashlib
import json
import math
import shutil

import numpy as np
import pytest
import torch

import glass
from glass.alignment import best_of_n, fk_steering
from glass.alignment.guidance import Guided
from glass.models.sit import SiT, SiTNet
from glass.pipelines.flux import image_ids, pack, unpack
from glass.pipelines.sd import abar_at, fractional_step
from glass.rewards.ink import Ink
from tests.tiny_pipes import CALL_KWARGS, MAX_SEQUENCE_LENGTH, PIPES, SIZE, hub_cache

diffusers = pytest.importorskip("diffusers")
FAMILIES = list(PIPES)


@pytest.fixture(autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: thread start-up dominates otherwise
    yield
    torch.set_num_threads(n)


_PIPES = {}


def pipe_of(family):
    """One tiny pipeline per family for the whole module (glass never changes it: tested below)."""
    if family not in _PIPES:
        _PIPES[family] = PIPES[family]()
    return _PIPES[family]


def model_of(family, **kw):
    s = SIZE[family]
    return glass.from_pipe(
        pipe_of(family), height=s, width=s, max_sequence_length=MAX_SEQUENCE_LENGTH[family], **kw
    )


def ode_of(family):
    return glass.ODE(1, method="ddim") if family in ("sd", "sdxl") else glass.ODE(1)


def gap_to_the_pipeline(pipe, model, family, k, x, prompt="a cat") -> float:
    """max |glass's ODE - the pipeline's own sampler| / max |the pipeline's|: K steps on its grid from
    the latents ``x``."""
    s = SIZE[family]
    out = pipe(prompt=prompt, num_inference_steps=k, height=s, width=s, latents=model.pipeline_latents(x),
               output_type="latent", **CALL_KWARGS[family]).images  # fmt: skip
    ref = model.from_pipeline_output(out)
    ours = glass.generate(model, ode_of(family), k, x=x.double(), prompt=prompt)
    return float((ours - ref).abs().max() / ref.abs().max())


def tiny_vae(latent_channels: int):
    torch.manual_seed(0)
    return diffusers.AutoencoderKL(
        in_channels=3,
        out_channels=3,
        latent_channels=latent_channels,
        block_out_channels=(8, 16),
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        layers_per_block=1,
        norm_num_groups=4,
    ).eval()


def tiny_sit(cfg=1.0):
    torch.manual_seed(0)
    net = SiTNet(
        input_size=8, patch_size=2, in_channels=4, hidden_size=32, depth=2, num_heads=2, num_classes=10
    )
    return SiT(net, tiny_vae(4), class_label=3, cfg_scale=cfg)


PROMPTS = ["a photo of a cat", "a red car"]


@pytest.mark.parametrize("family", FAMILIES)
def test_ode_on_the_pipelines_grid_reproduces_the_pipeline(family):
    """glass.generate(model, ODE(1), K, x=latents, prompt=p) == pipe(p, K, latents=..., output_type="latent")
    to 1e-4 relative in float32, with the pipeline's default guidance (CFG on for SD3, SD, SDXL,
    FLUX.2) and one prompt per sample."""
    pipe, model = pipe_of(family), model_of(family)
    s, k = SIZE[family], 4
    x = torch.randn(2, *model.shape, generator=torch.Generator().manual_seed(1))
    out = pipe(
        prompt=PROMPTS,
        num_inference_steps=k,
        height=s,
        width=s,
        latents=model.pipeline_latents(x),
        output_type="latent",
        **CALL_KWARGS[family],
    ).images
    ref = model.from_pipeline_output(out)
    ours = glass.generate(model, ode_of(family), k, x=x.double(), prompt=PROMPTS)
    assert ours.shape == ref.shape == (2, *model.shape)
    assert float((ours - ref).abs().max() / ref.abs().max()) < 1e-4
    assert model.nfe == k  # one NFE per step, guided or not
    # and it is not a coincidence: another grid or another prompt is far off
    other = glass.generate(model, ode_of(family), k + 1, x=x.double(), prompt=PROMPTS)
    assert float((other - ref).abs().max() / ref.abs().max()) > 1e-3


def _snapshot(pipe) -> dict:
    """Everything glass must not change: per-parameter dtype, device, requires_grad and bytes;
    buffers; the scheduler's state."""
    state = {}
    for name, module in pipe.components.items():
        if isinstance(module, torch.nn.Module):
            h = hashlib.sha256()
            for pname, p in list(module.named_parameters()) + list(module.named_buffers()):
                h.update(f"{pname}{p.dtype}{p.device}{p.requires_grad}{p.grad is None}".encode())
                h.update(p.detach().cpu().reshape(-1).contiguous().view(torch.uint8).numpy().tobytes())
            state[name] = (h.hexdigest(), module.training)
    sched = pipe.scheduler
    state["scheduler"] = repr(
        {k: (v.tolist() if torch.is_tensor(v) else v) for k, v in vars(sched).items() if k != "config"}
    ) + json.dumps(dict(sched.config), default=str)
    return state


def _own_output(pipe, family):
    s = SIZE[family]
    return pipe(
        prompt="a dog",
        num_inference_steps=2,
        height=s,
        width=s,
        output_type="latent",
        generator=torch.Generator().manual_seed(3),
        **CALL_KWARGS[family],
    ).images


@pytest.mark.parametrize("family", FAMILIES)
def test_every_entry_point_leaves_the_pipe_unchanged_and_outputs_carry_no_graph(family):
    pipe = pipe_of(family)
    for p in pipe.transformer.parameters() if hasattr(pipe, "transformer") else pipe.unet.parameters():
        assert p.requires_grad  # as diffusers loads them: autograd would record the network calls
    own = _own_output(pipe, family)  # the pipe's own call sets its scheduler's state: snapshot after it
    before = _snapshot(pipe)
    model = model_of(family, prompt="a cat")
    g = torch.Generator().manual_seed(0)
    outs = [glass.generate(model, glass.GLASS(2, rho=0.4), 2, 2, generator=g)]
    outs.append(glass.GLASS(2).transition(model, outs[0], 0.3, 0.7))
    res = fk_steering(model, glass.GLASS(1), Ink(), grid=2, particles=2, groups=2, lam=3.0, generator=g)
    outs += [res.x, best_of_n(model, glass.SDE(1), Ink(), grid=2, n=2, groups=1, generator=g)[0]]
    outs.append(
        glass.generate(Guided(model, Ink(), lam=0.5, t_lo=0.05, t_hi=0.95), glass.GLASS(1), 2, 1, generator=g)
    )
    images = model.decode(outs[0])
    outs += [images, model.encode(images)]
    outs.append(glass.posterior(model, images, 0.5, glass.GLASS(2), n=2, generator=g))
    for out in outs:
        assert out.grad_fn is None and not out.requires_grad and torch.isfinite(out).all()
    assert _snapshot(pipe) == before
    assert torch.equal(_own_output(pipe, family), own)


def test_a_pipe_whose_network_is_changed_is_detected_by_the_snapshot():
    """The snapshot above can fail: a cast or a requires_grad change shows."""
    pipe = PIPES["sd"]()
    before = _snapshot(pipe)
    pipe.unet.requires_grad_(False)
    assert _snapshot(pipe) != before
    pipe = PIPES["sd"]()
    pipe.scheduler.set_timesteps(3)
    assert _snapshot(pipe) != before


@pytest.mark.parametrize("family", FAMILIES)
def test_prompts_per_sample_equal_single_prompt_runs(family):
    model = model_of(family)
    x = torch.randn(2, *model.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    both = glass.generate(model, glass.GLASS(2), 2, x=x, prompt=PROMPTS, generator=glass.noise.Streams(5, 2))
    one = [
        glass.generate(
            model, glass.GLASS(2), 2, x=x[i : i + 1], prompt=p, generator=glass.noise.Streams(5, 2)[i : i + 1]
        )
        for i, p in enumerate(PROMPTS)
    ]
    assert float((both - torch.cat(one)).abs().max() / both.abs().max()) < 1e-4  # float32 batching only
    swapped = glass.generate(
        model, glass.GLASS(2), 2, x=x, prompt=PROMPTS[::-1], generator=glass.noise.Streams(5, 2)
    )
    assert not torch.allclose(swapped, both, atol=1e-3)  # the prompt really conditions each sample


class Recorder:
    """A reward that records what it is given."""

    differentiable = True

    def __init__(self, wants_latents=False):
        self.wants_latents, self.seen = wants_latents, []

    def __call__(self, x, **cond):
        self.seen.append((tuple(x.shape), float(x.min()), float(x.max()), cond.get("prompt")))
        return x.double().flatten(1).mean(1)


@pytest.mark.parametrize("family", ["flux", "sd"])
def test_rewards_receive_decoded_images_with_their_prompts(family):
    model = model_of(family)
    s = SIZE[family]
    reward = Recorder()
    fk_steering(model, glass.GLASS(1), reward, grid=2, particles=2, groups=2, prompt=["a cat", "a dog"])
    for shape, lo, hi, prompts in reward.seen:
        assert shape == (4, 3, s, s) and -1 <= lo <= hi <= 1
        assert prompts == ["a cat", "a cat", "a dog", "a dog"]  # per group, repeated per particle
    best_of_n(model, glass.ODE(1), reward, grid=1, n=2, groups=1, prompt="a tree")
    assert reward.seen[-1][0] == (2, 3, s, s) and reward.seen[-1][3] == "a tree"
    latents = Recorder(wants_latents=True)
    best_of_n(model, glass.ODE(1), latents, grid=1, n=2, prompt="a tree")
    assert latents.seen[-1][0] == (2, *model.shape)


@pytest.mark.parametrize("family", FAMILIES)
def test_glass_fk_best_of_n_guidance_and_posterior_end_to_end(family):
    model = model_of(family, prompt="a cat")
    g = torch.Generator().manual_seed(0)
    x = glass.generate(model, glass.GLASS(2, rho=0.4), 2, 3, generator=g)
    assert x.shape == (3, *model.shape) and torch.isfinite(x).all() and model.nfe == 4
    res = fk_steering(
        model,
        glass.GLASS(2),
        Ink(),
        grid=2,
        particles=3,
        groups=2,
        lam=5.0,
        generator=g,
        prompt=["a dog", "a red car"],
    )
    best, rb = res.best()
    assert best.shape == (2, *model.shape) and torch.isfinite(rb).all() and res.nfe == 4
    _, rn, nfe = best_of_n(model, glass.GLASS(1), Ink(), grid=2, n=2, groups=2, generator=g)
    assert nfe == 2 and torch.isfinite(rn).all()
    guided = Guided(model, Ink(), lam=0.4, t_lo=0.2, t_hi=0.7)
    y = glass.generate(guided, glass.GLASS(2), 2, 2, generator=g)
    assert torch.isfinite(y).all() and guided.grad_evals > 0
    images = model.decode(x)
    s = SIZE[family]
    assert images.shape == (3, 3, s, s) and 0 <= float(images.min()) <= float(images.max()) <= 1
    post = glass.posterior(model, images, 0.6, glass.GLASS(2), n=2, generator=g, prompt=["a", "b", "c"])
    assert post.shape == (3, 2, 3, s, s) and torch.isfinite(post).all()
    # in chunks of rows (the prompts follow their images; per-sample streams draw the same noise)
    kw = dict(n=2, prompt=["a", "b", "c"])
    one = glass.posterior(model, images, 0.6, glass.GLASS(2), generator=glass.noise.Streams(3, 6), **kw)
    chunked = glass.posterior(model, images, 0.6, glass.GLASS(2), generator=glass.noise.Streams(3, 6),
                              chunk=4, **kw)  # fmt: skip
    assert torch.allclose(one, chunked, atol=1e-5)


@pytest.mark.parametrize("family", ["flux", "flux2", "sd3", "sd"])
def test_encode_inverts_decode_through_the_vae_scaling(family):
    """encode(decode(x)) goes through the VAE both ways; with a random VAE it is no identity, but
    the scaling / shift / batch-norm maps must be exact inverses of each other."""
    model = model_of(family)
    x = torch.randn(2, *model.shape, dtype=torch.float64)
    assert torch.allclose(model._from_vae(model._to_vae(x)), x, atol=1e-10)
    z = model.encode(model.decode(x))
    assert z.shape == x.shape and z.dtype == torch.float64


def test_the_straight_through_clamp_takes_overflowing_pixels():
    """An overflowing float16 VAE decodes inf: clamped to 0 / 1 with or without autograd, gradient 1
    (u + (clamp(u) - u).detach() gave NaN there)."""
    from glass.models.base import unit_images

    u = torch.tensor([-3.0, 0.5, 1.0, math.inf, -math.inf], dtype=torch.float64, requires_grad=True)
    out = unit_images(u)
    (grad,) = torch.autograd.grad(out.sum(), u)
    assert torch.equal(out.detach(), unit_images(u.detach())) and torch.equal(grad, torch.full_like(u, 0.5))
    assert torch.equal(out.detach(), torch.tensor([0.0, 0.75, 1.0, 1.0, 0.0], dtype=torch.float64))


@pytest.mark.parametrize("family", ["flux", "sd"])
def test_guidance_gradient_passes_the_decoders_clamp(family, monkeypatch):
    """Images are clamped to [0, 1], but a reward's gradient reaches a pixel that decodes beyond the
    range (straight-through): with the clamp's own gradient (0 there) guidance on a decoded image
    never pulled a saturated pixel back. The VAE's output is scaled x20 so that most pixels saturate."""
    model = model_of(family)
    vae = model.image_vae()
    real = vae.decode
    monkeypatch.setattr(vae, "decode", lambda z, return_dict=False: (real(z, return_dict=False)[0] * 20,))
    x = torch.randn(1, *model.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    w = torch.randn(1, 3, SIZE[family], SIZE[family], dtype=torch.float64,
                    generator=torch.Generator().manual_seed(1))  # fmt: skip
    x.requires_grad_(True)
    images = model.decode(x)
    (grad,) = torch.autograd.grad((images * w).sum(), x)
    x2 = x.detach().clone().requires_grad_(True)
    raw = vae.decode(model._to_vae(x2).to(vae.dtype), return_dict=False)[0].double()
    (ref,) = torch.autograd.grad((raw / 2 * w).sum(), x2)  # the unclamped map's gradient
    saturated = (images.detach() == 0) | (images.detach() == 1)
    assert saturated.float().mean() > 0.5 and images.min() >= 0 and images.max() <= 1
    assert torch.allclose(grad, ref, atol=1e-8 * float(ref.abs().max()))
    with torch.no_grad():
        assert torch.equal(model.decode(x), images.detach())  # without autograd: the same images


def test_generator_lists_callbacks_and_progress():
    model = model_of("sd3", prompt="a cat")
    gens = [torch.Generator().manual_seed(i) for i in (7, 8)]
    a = glass.generate(model, glass.GLASS(1), 2, 2, generator=gens)
    b = glass.generate(model, glass.GLASS(1), 2, 1, generator=[torch.Generator().manual_seed(8)])
    assert torch.allclose(a[1:], b, atol=1e-6)  # sample 1 depends on its own generator only
    # the first draw is diffusers' own: randn_tensor with a list draws each row from its generator, and
    # a float32 pipeline started from the same generators samples from exactly these latents
    from diffusers.utils.torch_utils import randn_tensor

    noise = randn_tensor(  # as a float32 pipeline draws its first latents
        (2, *model.shape), generator=[torch.Generator().manual_seed(i) for i in (7, 8)], dtype=torch.float32
    ).double()
    first = glass.noise.randn(
        (2, *model.shape), glass.noise.Generators([torch.Generator().manual_seed(i) for i in (7, 8)])
    )
    assert torch.equal(noise, first)
    seen = []

    def callback(i, t, x, denoised, **state):
        seen.append((i, t, denoised.shape))
        return torch.zeros_like(x) if i == 0 else None

    model.reset_nfe()
    c = glass.generate(model, glass.ODE(1), 2, 2, callback=callback, progress=True)
    assert [s[0] for s in seen] == [0, 1] and seen[1][1] == 1.0 and model.nfe == 2  # no extra NFE
    ref = glass.ODE(1).transition(
        model, torch.zeros(2, *model.shape, dtype=torch.float64), float(model.grid(2)[1]), 1.0
    )
    assert torch.allclose(c, ref)  # the replacement was used
    states = []
    fk_steering(
        model,
        glass.GLASS(1),
        Ink(),
        grid=3,
        particles=2,
        groups=1,
        callback=lambda i, t, x, d, **st: states.append(sorted(st)),
    )
    assert states == [["ancestors", "ess", "log_weights"]] * 3


def _img2img(family: str):
    """The img2img pipeline of the tiny SD's or SDXL's components (diffusers' from_pipe), which glass
    refuses; converted back as the refusal says, glass takes it."""
    import diffusers

    base = "StableDiffusion" + ("XL" if family == "sdxl" else "")
    img2img = getattr(diffusers, f"{base}Img2ImgPipeline").from_pipe(pipe_of(family))
    back = getattr(diffusers, f"{base}Pipeline").from_pipe(img2img)
    assert glass.from_pipe(back, height=SIZE[family], width=SIZE[family]).family == family
    return img2img


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda m: glass.from_pipe(object()), "does not support object; supported pipelines: FluxPipeline"),
        (lambda m: glass.from_pipe(object()), r"DDIMPipeline$"),  # not a pipeline: no conversion
        (lambda m: glass.from_pipe(_img2img("sd")), r"StableDiffusionImg2ImgPipeline; .*DDIMPipeline \(a "
         r"pipeline of a supported model for another task converts sharing its components: "
         r"StableDiffusionPipeline\.from_pipe\(pipe\), if its network is a text-to-image one\)$"),
        (lambda m: glass.from_pipe(_img2img("sdxl")), r"StableDiffusionXLPipeline\.from_pipe\(pipe\), if"),
        (lambda m: glass.from_pipe(pipe_of("sd"), dtype="bfloat16"), "never converts"),
        (lambda m: glass.from_pipe(pipe_of("sd"), dtype="int8"), "dtype must be one of"),
        (lambda m: glass.from_pipe(pipe_of("sd"), device="cuda"), "never moves"),
        (lambda m: glass.from_pipe(pipe_of("sd"), height=30), "height must be a multiple of 4"),
        (lambda m: glass.from_pipe(pipe_of("sd"), true_cfg_scale=2.0), "unknown options true_cfg_scale"),
        (lambda m: glass.from_pipe(pipe_of("sd"), max_sequence_length=99), "applies to FLUX, FLUX.2 and SD3"),
        (lambda m: glass.from_pipe(pipe_of("flux"), max_sequence_length=600), r"integer in \[1, 512\]"),
        (lambda m: glass.from_pipe(pipe_of("flux"), negative_prompt="blurry"), r"\(true_cfg_scale > 1\)"),
        (
            lambda m: glass.from_pipe(pipe_of("flux2_dev"), negative_prompt="blurry"),
            r"guidance \(none on FLUX.2 \[dev\], whose guidance is distilled into the network\); flux2_dev",
        ),
        (
            lambda m: glass.from_pipe(pipe_of("sd"), guidance_scale=1.0, negative_prompt="blurry"),
            r"used only with classifier-free guidance \(guidance_scale > 1\); sd runs none",
        ),
        (
            lambda m: glass.generate(glass.from_pipe(pipe_of("sd"), height=32, width=32, guidance_scale=1.0),
                                     glass.ODE(1), 1, 2, prompt="a", negative_prompt=["b", "c"]),
            "negative_prompt is used only with classifier-free guidance",
        ),  # fmt: skip
        (lambda m: glass.generate(m, glass.ODE(1), 1, 2), "prompt is required"),
        (lambda m: glass.generate(m, glass.ODE(1), 1, 2, prompt=["a"] * 3), "prompt has 3 entries for 2"),
        (
            lambda m: glass.generate(m, glass.ODE(1), 1, 2, prompt="a", seed=3),
            "does not take the conditioning seed",
        ),
        (
            lambda m: glass.generate(m, glass.ODE(1), 1, 2, prompt="a", generator=[torch.Generator()]),
            "list of 1 generators",
        ),
        (lambda m: glass.generate(m, glass.ODE(1), 1, 2, prompt="a", generator=3), "generator must be"),
        (lambda m: fk_steering(m, glass.ODE(1), Ink(), particles=0), "^particles must be an integer"),
    ],
)
def test_python_errors_are_one_clear_line_naming_the_argument(call, match):
    model = model_of("sd")
    with pytest.raises(ValueError, match=match):
        call(model)


def test_text_encoders_can_be_released_and_prompts_cached_on_disk(tmp_path):
    model = model_of("sd", prompt="a cat", cache_dir=str(tmp_path), release_text_encoders=True)
    assert model._text is None
    glass.generate(model, glass.ODE(1), 1, 1)  # the default prompt was encoded before the release
    with pytest.raises(ValueError, match="was not encoded before the text encoders were released"):
        glass.generate(model, glass.ODE(1), 1, 1, prompt="a dog")
    again = model_of("sd", prompt="a cat", cache_dir=str(tmp_path))
    again.release_text_encoders()
    x = torch.randn(1, *model.shape, dtype=torch.float64)
    assert torch.equal(again.denoise(x, 0.5), model.denoise(x, 0.5))  # read back from disk


def test_stochastic_flow_match_euler_step_is_glass_with_one_step_and_rho_zero():
    """diffusers' FlowMatchEulerDiscreteScheduler(stochastic_sampling=True), step by step on the same
    noise, equals GLASS with M = 1 and rho = 0 to float32 rounding, and not GLASS with rho_DDPM
    (experiments/stochastic_sampling.py, whose committed result the README quotes)."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))
    from stochastic_sampling import compare

    rows = compare("sd3") + compare("flux")
    assert max(r["rho0"] for r in rows) < 1e-6
    assert max(r["rho_ddpm"] for r in rows if r["sigma"] < 1 and r["sigma_next"] > 0) > 0.1
    committed = json.loads(
        (Path(__file__).resolve().parents[1] / "experiments/results/stochastic_sampling.json").read_text()
    )
    assert committed["max_rel_diff_rho0"] < 1e-6
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert f"to a relative {committed['max_rel_diff_rho0']:.1e}" in readme  # what the README says
    assert f"differs by up to {committed['max_rel_diff_rho_ddpm']:.2f}" in readme


def test_flux_packing_and_ids():
    x = torch.randn(3, 4, 8, 6)
    assert torch.equal(unpack(pack(x), 8, 6), x)
    ids = image_ids(8, 6)
    assert ids.shape == (12, 3) and ids[5].tolist() == [0, 1, 2]


def test_sd_fractional_steps_and_grid():
    model = model_of("sd")
    abar = model.scheduler.alphas_cumprod
    k = torch.tensor([0, 1, 250, 998, 999])
    assert torch.allclose(fractional_step(abar[k].double(), abar), k.double(), atol=1e-6)
    mid = (abar[10].double().log() + abar[11].double().log()) / 2
    assert float(fractional_step(mid.exp()[None], abar)) == pytest.approx(10.5, abs=1e-6)
    assert float(fractional_step(torch.tensor([1.0]), abar)) == 0.0  # beyond abar_0: the last step
    assert torch.allclose(abar_at(torch.tensor([10.5, 3.0]), abar)[0], mid.exp())
    g = glass.samplers.base.time_grid(4, model)
    # DDIM (SD 1.5's set_alpha_to_one=False): the last step ends at abar_0, as the pipeline does
    assert float(g[-1]) == pytest.approx(float(abar[0])) and bool((g[1:] > g[:-1]).all())


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
    assert {
        "pos_embed",
        "x_embedder.proj.weight",
        "blocks.1.attn.qkv.weight",
        "final_layer.linear.bias",
        "y_embedder.embedding_table.weight",
        "t_embedder.mlp.2.weight",
    } <= keys


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
    assert torch.allclose(
        model.net(x.float(), torch.full((2,), 0.5), torch.full((2,), 2)),
        src(x.float(), torch.full((2,), 0.5), torch.full((2,), 2)),
    )
    with pytest.raises(ValueError, match="does not fit"):
        load_sit(str(tmp_path / "ckpt.pt"), vae=None, net={**tiny, "hidden_size": 16})


def test_pretrained_configs_fail_offline_with_one_line(tmp_path, monkeypatch):
    """No network here: the real hub ids fail when the run is prepared, with one line and no output."""
    import huggingface_hub
    from typer.testing import CliRunner

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # fail fast, no retries
    from glass.cli import app

    for model in ("flux", "flux_kontext", "flux2", "flux2_dev", "sd3", "sd", "sdxl", "ddpm", "sit"):
        res = CliRunner().invoke(
            app, ["run", f"model={model}", "model.device=cpu", "task=generate", f"out_dir={tmp_path}"]
        )
        assert res.exit_code == 2 and res.stderr.count("\n") == 1, (model, res.output)
        assert "cannot load" in res.stderr or "cannot download" in res.stderr
        assert res.stdout == "", (model, res.stdout)  # torch.hub's "Downloading: ..." was printed there
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("family", ["flux", "flux2_dev", "sdxl"])
def test_cli_loads_a_local_pipeline_folder_through_from_pipe(family, tmp_path):
    """model=<family> from a local diffusers folder (a saved tiny pipeline): FK steering with GLASS runs
    end to end on the CLI, the model equals from_pipe on the in-memory pipe, and a second load with
    the prompts cached on disk does not load the text encoders at all."""
    from typer.testing import CliRunner

    from glass.cli import app
    from glass.config import compose, instantiate

    root = tmp_path / f"tiny-{family}"
    pipe_of(family).save_pretrained(root)
    s = SIZE[family]
    common = [
        f"model={family}",
        f"model.model_id={root}",
        "model.device=cpu",
        "model.dtype=float32",
        f"model.height={s}",
        f"model.width={s}",
        "model.prompt='a tiny cat'",
        f"out_dir={tmp_path}",
    ]
    if MAX_SEQUENCE_LENGTH[family]:
        common.append(f"model.max_sequence_length={MAX_SEQUENCE_LENGTH[family]}")
    model = instantiate(compose(common).model, "model")
    channels = {"sdxl": 4, "flux2_dev": 8}.get(family, 16)
    assert model.shape == (channels, 8, 8) and model.prompt_text == "a tiny cat"
    assert model._text is None  # released after encoding
    ref = model_of(family, prompt="a tiny cat")
    if family == "flux2_dev":  # the folder keeps no system message: it loads with FLUX.2's own
        from diffusers.pipelines.flux2.system_messages import SYSTEM_MESSAGE

        pipe = copy.copy(pipe_of(family))  # the same modules
        pipe.system_message = SYSTEM_MESSAGE
        ref = glass.from_pipe(pipe, height=s, width=s, max_sequence_length=MAX_SEQUENCE_LENGTH[family],
                              prompt="a tiny cat")  # fmt: skip
    x = torch.randn(2, *model.shape, dtype=torch.float64)
    assert torch.allclose(model.denoise(x, 0.3), ref.denoise(x, 0.3), rtol=1e-4, atol=1e-5)
    import diffusers.pipelines.pipeline_utils as pu

    loaded = []
    original = pu.DiffusionPipeline.from_pretrained.__func__

    def spy(cls, *a, **kw):
        loaded.append(sorted(k for k, v in kw.items() if v is None))
        return original(cls, *a, **kw)

    pu.DiffusionPipeline.from_pretrained = classmethod(spy)
    try:
        shared = instantiate(compose(common).model, "model")  # the first model is alive: its network
        assert loaded == [] and shared.net is model.net  # is shared, nothing is loaded again
        expected = model.denoise(x, 0.3)
        del model, shared
        import gc

        gc.collect()
        again = instantiate(compose(common).model, "model")
    finally:
        pu.DiffusionPipeline.from_pretrained = classmethod(original)
    assert "text_encoder" in loaded[0]  # every prompt cached: the encoders were not loaded
    assert torch.equal(again.denoise(x, 0.3), expected)
    res = CliRunner().invoke(
        app,
        [
            "run",
            *common,
            "task=fk_steering",
            "reward=ink",
            "sampler=glass",
            "sampler.steps=1",
            "task.particles=2",
            "task.groups=2",
            "task.transitions=2",
        ],
    )
    assert res.exit_code == 0, res.output
    (run,) = [p for p in tmp_path.glob("runs/*/*") if p.is_dir()]
    row = json.loads((run / "metrics.json").read_text())["rows"][0]
    assert row["nfe_per_sample"] == 2 * 2 and 0 <= row["reward"] <= 1
    assert (run / "samples.png").stat().st_size > 1000
    bad = CliRunner().invoke(app, ["run", *common, "task=posterior"])
    assert bad.exit_code == 2 and "no data set" in bad.stderr


@pytest.mark.parametrize("family", FAMILIES)
def test_the_examples_run_offline_on_tiny_pipes(family, tmp_path, monkeypatch):
    import importlib.util
    import sys
    from pathlib import Path

    examples = Path(__file__).resolve().parents[1] / "examples"
    monkeypatch.syspath_prepend(str(examples))
    spec = importlib.util.spec_from_file_location(f"example_{family}", examples / f"{family}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = module.main(["--tiny", "--steps", "2", "--out", str(tmp_path / "grid.png")])
    assert out.stat().st_size > 500
    if family in ("flux2_dev", "flux_kontext"):  # editing from a reference image with --image
        _reference(64, 64, 0).save(tmp_path / "ref.png")
        edited = module.main(["--tiny", "--steps", "2", "--image", str(tmp_path / "ref.png"), "--out",
                              str(tmp_path / "edited.png")])  # fmt: skip
        assert edited.read_bytes() != out.read_bytes()
    sys.modules.pop("common", None)


def test_injected_noise_is_checked_and_used_up():
    noise = glass.noise.Injected(torch.ones(2, 3))
    assert torch.equal(glass.noise.randn((2, 3), noise), torch.ones(2, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match="used up"):
        glass.noise.randn((2, 3), noise)
    with pytest.raises(ValueError, match="injected noise of shape"):
        glass.noise.randn((2, 4), glass.noise.Injected(torch.ones(2, 3)))


@pytest.mark.parametrize("family", ["flux", "sd3", "sd", "sdxl"])
def test_the_same_generator_list_gives_the_pipelines_own_samples(family):
    """No latents handed over: generate(..., generator=[g0, g1]) with the ODE on the pipeline's grid
    equals pipe(..., generator=[g0, g1]) (flow pipelines start at t = 0, pure noise; SD and SDXL at
    their scheduler's first step, with its init_noise_sigma: DDIM's N(0, I))."""
    pipe, model = pipe_of(family), model_of(family)
    s, k = SIZE[family], 3
    gens = [torch.Generator().manual_seed(i) for i in (3, 4)]
    out = pipe(prompt=PROMPTS, num_inference_steps=k, height=s, width=s, output_type="latent", generator=gens,
               **CALL_KWARGS[family]).images  # fmt: skip
    ref = model.from_pipeline_output(out)
    ours = glass.generate(model, ode_of(family), k, 2, prompt=PROMPTS,
                          generator=[torch.Generator().manual_seed(i) for i in (3, 4)])  # fmt: skip
    assert float((ours - ref).abs().max() / ref.abs().max()) < 1e-4


@pytest.mark.parametrize("scheduler, options, tol", [
    ("EulerDiscreteScheduler", {}, 1e-5),  # SDXL's: leading spacing, starts at N(0, sigma^2 + 1)
    ("EulerDiscreteScheduler", {"use_karras_sigmas": True}, 1e-5),
    ("EulerDiscreteScheduler", {"timestep_spacing": "trailing"}, 1e-5),
    ("EulerDiscreteScheduler", {"timestep_spacing": "linspace", "use_exponential_sigmas": True}, 1e-5),
    ("DDIMScheduler", {}, 1e-5),
    ("DPMSolverMultistepScheduler", {"solver_order": 1}, 1e-5),
    ("DPMSolverMultistepScheduler", {"solver_order": 1, "use_karras_sigmas": True}, 1e-3),
])  # fmt: skip
def test_sd_with_the_schedulers_users_pick_gives_the_pipelines_own_samples(scheduler, options, tol):
    """SD with a first-order scheduler its users pick, no latents handed over: the DDIM ODE on the
    pipeline's grid with the same generator list is the pipeline's own sampler. The grid is the
    scheduler's noise levels (Karras sigmas: it was the abar of the rounded timesteps, 0.3-0.6 % off)
    and the start its init_noise_sigma (N(0, I) at t0 > 0 with leading spacing or DDIM: it was
    N(0, 1 - abar_{t0}), 3 % off at 4 steps). DPM-Solver with Karras sigmas feeds the UNet rounded
    timesteps where glass feeds the fractional step of the noise level: 1e-3."""
    import diffusers

    base = pipe_of("sd")
    pipe = _with(base, scheduler=getattr(diffusers, scheduler).from_config(base.scheduler.config, **options))
    model = glass.from_pipe(pipe, height=32, width=32)
    out = pipe(prompt=PROMPTS, num_inference_steps=3, height=32, width=32, output_type="latent",
               generator=[torch.Generator().manual_seed(i) for i in (3, 4)]).images  # fmt: skip
    ref = model.from_pipeline_output(out)
    ours = glass.generate(model, glass.ODE(1, method="ddim"), 3, 2, prompt=PROMPTS,
                          generator=[torch.Generator().manual_seed(i) for i in (3, 4)])  # fmt: skip
    assert float((ours - ref).abs().max() / ref.abs().max()) < tol
    grid = model.grid(3)
    if float(grid[-1]) == 1.0:  # the same grid as a list, on a model that never made one: the same start
        fresh = glass.from_pipe(pipe, height=32, width=32)
        again = glass.generate(fresh, glass.ODE(1, method="ddim"), grid.tolist(), 2, prompt=PROMPTS,
                               generator=[torch.Generator().manual_seed(i) for i in (3, 4)])  # fmt: skip
        torch.testing.assert_close(again, ours)


@pytest.mark.parametrize("scheduler, options, k", [
    ("DPMSolverMultistepScheduler", {"use_karras_sigmas": True}, 50),
    ("UniPCMultistepScheduler", {"use_exponential_sigmas": True}, 25),
])  # fmt: skip
def test_schedulers_whose_rounded_timesteps_repeat_take_their_noise_levels(scheduler, options, k):
    """Karras or exponential sigmas rounded to integer timesteps repeat some at the step counts users
    run (DPM-Solver Karras from 45 steps, exponential from 19): the grid is the scheduler's distinct
    noise levels, so these are not refused (they were, with PNDM's message)."""
    import diffusers

    base = pipe_of("sd")
    pipe = _with(base, scheduler=getattr(diffusers, scheduler).from_config(base.scheduler.config, **options))
    own = copy.deepcopy(pipe.scheduler)
    own.set_timesteps(k)
    assert len(own.timesteps.unique()) < k  # the repeats
    grid = glass.from_pipe(pipe, height=32, width=32).grid(k)
    sigmas = own.sigmas.double()[:k]
    assert len(grid) == k + 1 and bool((grid[1:] > grid[:-1]).all())
    torch.testing.assert_close(grid[:k], 1 / (1 + sigmas**2))


def test_measurement_rewards_on_a_latent_model_score_decoded_pixels(tmp_path):
    """Inpainting in pixel space through the decoder: y comes from an image file of the decoder's
    size, FK steering and guidance run on the latents, the likelihood's gradient reaches the latents
    through the VAE; a file of another size, and the test-set source (no data set), are refused with
    one line when the reward is bound."""
    import numpy as np
    from PIL import Image

    from glass.rewards import Measurement
    from glass.rewards.base import resolve_reward

    model = model_of("sd3", prompt="a cat")
    s = SIZE["sd3"]
    img = (np.random.default_rng(0).random((s, s, 3)) * 255).astype(np.uint8)
    Image.fromarray(img).save(tmp_path / "photo.png")
    reward = resolve_reward(Measurement("inpaint", noise=0.2, source=str(tmp_path / "photo.png")), model)
    assert reward.op.shape == (3, s, s) and reward.y.shape == (3 * (s - s // 2) * s,)
    photo = torch.from_numpy(img).double().permute(2, 0, 1) / 255 * 2 - 1  # the file as (C, H, W)
    assert torch.equal(reward.original[0].double(), photo)
    g = torch.Generator().manual_seed(0)
    res = fk_steering(model, glass.GLASS(1), reward, grid=2, particles=2, groups=2, generator=g)
    assert torch.isfinite(res.rewards).all() and res.x.shape == (2, 2, *model.shape)
    with torch.no_grad():  # the rewards are the likelihood of the decoded pixels, not of the latents
        pixels = model.decode(res.x.flatten(0, 1)) * 2 - 1
        torch.testing.assert_close(res.rewards, reward(pixels).view(2, 2).to(res.rewards.dtype))
    x = torch.randn(2, *model.shape, dtype=torch.float64, generator=g)
    guided = Guided(model, reward, lam=0.1, t_lo=0.2, t_hi=0.9)
    grad = guided.reward_grad(x)
    assert grad.shape == x.shape and float(grad.abs().sum()) > 0 and torch.isfinite(grad).all()
    y = glass.generate(guided, glass.GLASS(1), 2, 2, generator=g)
    assert torch.isfinite(y).all() and guided.grad_evals > 0
    Image.fromarray(img[: s // 2]).save(tmp_path / "half.png")  # refused when bound, not at sampling
    with pytest.raises(ValueError, match=rf"half.png has shape \(3, {s // 2}, {s}\); .* decodes to images of "
                       rf"shape \(3, {s}, {s}\)"):  # fmt: skip
        resolve_reward(Measurement("inpaint", source=str(tmp_path / "half.png")), model)
    for source in ("test:0", "valid:0"):
        match = f"reward.source={source} observes the model's data set; .* has none"
        with pytest.raises(ValueError, match=match):
            resolve_reward(Measurement("inpaint", source=source), model)


def _with(pipe, **parts):
    """The same components with some replaced (a new pipeline object; ``pipe`` is not touched)."""
    return type(pipe)(**{**pipe.components, **parts})


def test_sd_schedulers_users_ship_pndm_zero_snr_and_distilled_unets():
    """SD 1.5's own scheduler (PNDM, skip_prk_steps) repeats a timestep for its warm-up: the outer grid
    takes the distinct steps (it raised: a grid must increase). A zero-terminal-SNR DDIM (abar = 0 at
    the last step, log abar = -inf) runs, and our DDIM ODE reproduces its pipeline (it gave NaN). A
    guidance-distilled UNet (time_cond_proj_dim, LCM) is refused with one line, and so are an LCM or TCD
    scheduler (a plain UNet with a fused consistency-distilled LoRA) and an inpainting UNet (extra input
    channels for the mask and the masked image)."""
    from diffusers import DDIMScheduler, PNDMScheduler

    from tests.tiny_pipes import tiny_sd_pipe

    sd15 = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")
    pndm = PNDMScheduler(**sd15, skip_prk_steps=True, steps_offset=1, set_alpha_to_one=False)
    model = glass.from_pipe(_with(pipe_of("sd"), scheduler=pndm), height=32, width=32)
    own = copy.deepcopy(pndm)
    own.set_timesteps(4)
    assert own.timesteps.tolist() == [751, 501, 501, 251, 1]  # the pipeline's: one repeated
    g = glass.samplers.base.time_grid(4, model)
    abar = model.alphas_cumprod
    end = torch.tensor([float(own.final_alpha_cumprod)], dtype=torch.float64)  # abar_0: no set_alpha_to_one
    assert torch.allclose(g, torch.cat([abar[[751, 501, 251, 1]], end]))
    assert bool(torch.isfinite(glass.generate(model, glass.ODE(1), 4, 1, prompt="a cat")).all())

    zsnr = DDIMScheduler(**sd15, rescale_betas_zero_snr=True, timestep_spacing="trailing", steps_offset=1,
                         clip_sample=False, set_alpha_to_one=False,
                         prediction_type="v_prediction")  # fmt: skip
    pipe = _with(tiny_sd_pipe("v_prediction"), scheduler=zsnr)
    model = glass.from_pipe(pipe, height=32, width=32)
    x = torch.randn(1, *model.shape, generator=torch.Generator().manual_seed(0))
    # 4 steps: 999, 749, 499, 249 (with trailing spacing and 3 steps, DDIM itself steps 666 -> 333 and
    # then evaluates the network at 332: a 1e-3 mismatch of the pipeline's own, not of the schedule)
    ref = pipe(prompt="a cat", num_inference_steps=4, height=32, width=32, latents=x,
               output_type="latent").images  # fmt: skip
    ours = glass.generate(model, glass.ODE(1, method="ddim"), 4, x=x.double(), prompt="a cat")
    assert float(model.alphas_cumprod[-1]) == 2.0**-24 and float(zsnr.alphas_cumprod[-1]) == 0.0
    assert float(glass.samplers.base.time_grid(4, model)[0]) == pytest.approx(2.0**-24, rel=1e-12)
    assert bool(torch.isfinite(ours).all())
    # 1.4e-4 relative: the first step starts at abar = 2^-24 (alpha 2.4e-4) where the pipeline's is 0
    assert float((ours - ref.double()).abs().max() / ref.abs().max()) < 2e-4

    prk = PNDMScheduler(**sd15, skip_prk_steps=False, steps_offset=1, set_alpha_to_one=False)
    half_steps = glass.from_pipe(_with(pipe_of("sd"), scheduler=prk), height=32, width=32)
    with pytest.raises(ValueError, match="^the scheduler PNDMScheduler gives 7 distinct timesteps for 4 "):
        glass.samplers.base.time_grid(4, half_steps)  # K = 4 would not hold: refused, not 7 steps
    cosine = DDIMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2")
    abar = glass.from_pipe(_with(pipe_of("sd"), scheduler=cosine), height=32, width=32).alphas_cumprod
    assert torch.equal(abar, cosine.alphas_cumprod.double())  # tiny but not 0: kept as it is

    lcm = tiny_sd_pipe()
    lcm.unet.register_to_config(time_cond_proj_dim=16)
    with pytest.raises(ValueError, match="^the unet has time_cond_proj_dim=16 .*not supported"):
        glass.from_pipe(lcm, height=32, width=32)
    from diffusers import LCMScheduler, TCDScheduler

    class MyLCM(LCMScheduler):  # a subclass is one too
        pass

    for distilled in (LCMScheduler, TCDScheduler, MyLCM):  # a fused LCM- or TCD-LoRA: a plain UNet config
        pipe = _with(pipe_of("sd"), scheduler=distilled.from_config(pipe_of("sd").scheduler.config))
        with pytest.raises(ValueError, match=f"^the scheduler {distilled.__name__} samples a consistency"):
            glass.from_pipe(pipe, height=32, width=32)
    inpainting = tiny_sd_pipe()  # SD inpainting's UNet: 4 latent + 4 masked-image + 1 mask channels
    inpainting.unet.register_to_config(in_channels=9)
    refused = "^the unet takes 9 input channels, 9 latent channels where the VAE's latents have 4 .*text-to"
    with pytest.raises(ValueError, match=refused):
        glass.from_pipe(inpainting, height=32, width=32)


def test_sdxl_decodes_as_its_pipeline_fp16_vae_upcast_and_latent_statistics():
    """SDXL's VAE: a float16 VAE with force_upcast (the stock one overflows in float16) decodes with a
    float32 copy, as the pipeline upcasts it, and the pipe's VAE stays float16; a VAE with
    latents_mean / latents_std (Playground v2.5) decodes the pipeline's latents to the pipeline's own
    images (was: scaling_factor alone), and encode inverts its scaling."""
    from tests.tiny_pipes import _vae, tiny_sdxl_pipe

    torch.manual_seed(1)
    vae = _vae(4, scaling_factor=0.5, latents_mean=[0.1, -0.2, 0.3, 0.0], latents_std=[2.0, 0.5, 1.0, 3.0])
    pipe = _with(tiny_sdxl_pipe(), vae=vae)
    model = glass.from_pipe(pipe, height=32, width=32)
    x = torch.randn(1, *model.shape, generator=torch.Generator().manual_seed(0))
    kw = dict(prompt="a cat", num_inference_steps=2, height=32, width=32, latents=x)
    latents = pipe(**kw, output_type="latent").images
    images = pipe(**kw, output_type="pt").images
    assert torch.allclose(model.decode(model.from_pipeline_output(latents)), images.double(), atol=1e-5)
    assert torch.allclose(model._from_vae(model._to_vae(x.double())), x.double(), atol=1e-12)
    assert not torch.allclose(model._to_vae(x.double()), x.double() / 0.5)  # the statistics are used

    half = tiny_sdxl_pipe()
    half.vae.to(torch.float16)
    before = _snapshot(half)
    model = glass.from_pipe(half, height=32, width=32)
    vae = model.image_vae()
    assert vae.dtype == torch.float32 and vae is not half.vae and model.image_vae() is vae  # made once
    x = torch.randn(2, *model.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    ref = (copy.deepcopy(half.vae).float().decode(x.float() / 0.13025).sample.double() / 2 + 0.5).clamp(0, 1)
    assert torch.allclose(model.decode(x), ref, atol=1e-6)
    assert model.encode(model.decode(x)).dtype == torch.float64
    assert _snapshot(half) == before and half.vae.dtype == torch.float16
    half.vae.register_to_config(force_upcast=False)
    assert glass.from_pipe(half, height=32, width=32).image_vae() is half.vae  # the pipeline's own, float16


def test_a_damaged_prompt_cache_file_is_encoded_again_and_dtypes_have_their_own_files(tmp_path):
    """A cache file that cannot be read is encoded again and rewritten (it raised AttributeError); the
    cache is keyed by the network's dtype, so embeddings saved by a float32 run are not read by a
    bfloat16 one."""
    from glass.models.prompts import PromptCache

    model = model_of("sd", prompt="a cat", cache_dir=str(tmp_path))
    x = torch.randn(1, *model.shape, dtype=torch.float64)
    want = model.denoise(x, 0.5)
    files = sorted((tmp_path / "prompts").glob("*.safetensors"))
    for f in files:
        f.write_bytes(b"not a safetensors file")
    again = model_of("sd", prompt="a cat", cache_dir=str(tmp_path))
    assert torch.equal(again.denoise(x, 0.5), want)
    assert all(f.read_bytes() != b"not a safetensors file" for f in files)  # rewritten
    key = PromptCache(str(tmp_path), "m", "sd", 77, torch.float32).path("a cat")
    assert key != PromptCache(str(tmp_path), "m", "sd", 77, torch.bfloat16).path("a cat")


@pytest.mark.parametrize("treatment", ["none", "clip_sample", "thresholding"])
def test_ddpm_pipeline_matches_its_scheduler_with_the_x0_prediction_clipped_as_it_clips(treatment):
    """DDPMPipeline (a pixel UNet2DModel) through from_pipe: one DDIM ODE step per interval is the
    pipeline's own DDIM sampler at eta = 0, also where the scheduler clips its x_0 prediction
    (``clip_sample``, the DDPMScheduler default, or dynamic ``thresholding``): the clipped prediction is
    the denoiser every kernel reads (DDIM's step with ``use_clipped_model_output``). A random UNet
    predicts x_0 far outside [-1, 1], so the clipping shows: without it the outputs differed by 1 in
    [0, 1] images."""
    from diffusers import DDIMScheduler

    from tests.tiny_pipes import tiny_ddpm_pipe

    options = {"none": {"clip_sample": False}, "clip_sample": {"clip_sample": True, "clip_sample_range": 1.5},
               "thresholding": {"thresholding": True, "dynamic_thresholding_ratio": 0.9,
                                "sample_max_value": 3.0}}[treatment]  # fmt: skip
    scheduler = DDIMScheduler(num_train_timesteps=1000, **options)
    pipe = tiny_ddpm_pipe(scheduler)
    model = glass.from_pipe(pipe)
    assert model.shape == (3, 8, 8) and model.family == "ddpm"
    x = torch.randn(2, *model.shape, generator=torch.Generator().manual_seed(0))
    own = copy.deepcopy(scheduler)
    own.set_timesteps(4)
    ref = x.clone()
    with torch.no_grad():
        for t in own.timesteps:
            out = pipe.unet(ref, t).sample
            ref = own.step(out, t, ref, eta=0.0, use_clipped_model_output=True).prev_sample
    ours = glass.generate(model, glass.ODE(1, method="ddim"), 4, x=x.double())
    assert float((ours - ref.double()).abs().max() / ref.abs().max()) < 1e-5
    unclipped = glass.from_pipe(tiny_ddpm_pipe(DDIMScheduler(num_train_timesteps=1000, clip_sample=False)))
    far = float((glass.generate(unclipped, glass.ODE(1, method="ddim"), 4, x=x.double()) - ours).abs().max())
    assert (far < 1e-9) == (treatment == "none")
    if treatment == "none":  # the pipeline itself (decoded to [0, 1]) from the same initial noise
        img = pipe(batch_size=2, generator=torch.Generator().manual_seed(0), num_inference_steps=4,
                   output_type="np").images  # fmt: skip
        assert float((model.decode(ours) - torch.as_tensor(img).permute(0, 3, 1, 2)).abs().max()) < 1e-5


@pytest.mark.parametrize("clip", [False, True])
def test_ddim_pipeline_own_samples_are_the_ddim_ode(clip):
    """DDIMPipeline (the same UNet, its scheduler made a DDIMScheduler): its own samples from a generator
    list are glass's DDIM ODE from the same list, with the scheduler clipping the x_0 prediction or not,
    where the pipeline steps with the clipped model output; its default (None) with a clipping scheduler
    mixes the clipped x_0 with the unclipped noise, which is not glass's (the docstring says so)."""
    from diffusers import DDIMPipeline, DDPMScheduler

    from tests.tiny_pipes import tiny_ddpm_pipe

    base = tiny_ddpm_pipe(DDPMScheduler(num_train_timesteps=1000, clip_sample=clip))
    pipe = DDIMPipeline(unet=base.unet, scheduler=base.scheduler)
    model = glass.from_pipe(pipe)
    assert model.family == "ddpm" and type(pipe.scheduler).__name__ == "DDIMScheduler"
    gens = lambda: [torch.Generator().manual_seed(i) for i in (5, 6)]  # noqa: E731
    own = {u: pipe(batch_size=2, generator=gens(), num_inference_steps=4, eta=0.0, output_type="np",
                   use_clipped_model_output=u).images for u in (True, None)}  # fmt: skip
    ours = model.decode(glass.generate(model, glass.ODE(1, method="ddim"), 4, 2, generator=gens()))
    gap = {u: float((ours - torch.as_tensor(img).permute(0, 3, 1, 2)).abs().max()) for u, img in own.items()}
    assert gap[True] < 1e-5
    assert (gap[None] < 1e-5) == (not clip), gap  # the random UNet's x_0 is far outside [-1, 1]


def test_ddpm_pipeline_default_ancestral_sampler_is_the_ddpm_kernel_on_its_noise():
    """DDPMPipeline as shipped (DDPMScheduler's defaults, clip_sample=True): its own ancestral sampler
    and glass's DDPM kernel (GLASS M = 1 at rho_DDPM) on the same noise agree to float32 rounding; a
    scheduler made from that config by another class (PNDM: no clip_sample in its step) does not clip."""
    from diffusers import DDPMScheduler, PNDMScheduler

    from glass.noise import Injected
    from tests.tiny_pipes import tiny_ddpm_pipe

    pipe = tiny_ddpm_pipe()
    model = glass.from_pipe(pipe)
    assert pipe.scheduler.config.clip_sample and model.clip_range == 1.0
    g = torch.Generator().manual_seed(0)  # the pipeline's draws: the initial noise, then one per step
    x = torch.randn(2, *model.shape, generator=g)
    noise = [torch.randn(2, *model.shape, generator=g).double() for _ in range(3)]
    img = pipe(batch_size=2, generator=torch.Generator().manual_seed(0), num_inference_steps=4,
               output_type="np").images  # fmt: skip
    last = torch.zeros(2, *model.shape, dtype=torch.float64)  # the step into t = 1 draws, with sbar = 0
    ours = glass.generate(model, glass.DDPM(1), 4, x=x.double(), generator=Injected(*noise, last))
    assert float((model.decode(ours) - torch.as_tensor(img).permute(0, 3, 1, 2)).abs().max()) < 1e-5
    pndm = PNDMScheduler.from_config(DDPMScheduler(num_train_timesteps=1000, thresholding=True).config)
    carried = glass.from_pipe(tiny_ddpm_pipe(pndm))
    assert pndm.config.get("thresholding") and carried.clip_range is None and carried.threshold is None


def test_prompts_are_encoded_one_at_a_time_so_batches_cannot_change_an_embedding():
    """A prompt's embedding must not depend on which prompts share its encoder batch (a shard starting
    at prompt 138 batches differently from one process; on a GPU a batched matmul may round per batch
    size): each encoder call gets one prompt."""
    model = model_of("sd")
    calls, encode = [], model._encode
    model._encode = lambda texts: (calls.append(list(texts)), encode(texts))[1]
    model.encode_prompts([f"prompt {i}" for i in range(5)])
    assert calls == [[f"prompt {i}"] for i in range(5)]


@pytest.mark.parametrize("family", ["flux", "flux2", "flux2_dev"])
def test_flux_transformers_see_the_pipelines_timestep_in_bfloat16(family):
    """The pipelines round t = 1000 sigma to the network's dtype and then divide by 1000; rounding
    sigma itself gave, in bfloat16, a timestep one bfloat16 step (about 0.004) off at most grid times
    (every one but the first at 4 and 7 steps), so glass's ODE was not the pipeline's sampler there.
    The guidance input is the pipeline's too (FLUX.1-dev and FLUX.2 [dev]: the scale, in float32;
    FLUX.2 klein: none)."""
    pipe, s = PIPES[family]().to(torch.bfloat16), SIZE[family]
    model = glass.from_pipe(pipe, height=s, width=s, max_sequence_length=MAX_SEQUENCE_LENGTH[family])
    seen, guidance = [], []

    def record(module, args, kw):
        seen.append(kw["timestep"].float().clone())
        g = kw.get("guidance")
        guidance.append(None if g is None else (g.dtype, tuple(g.float().unique().tolist())))

    pipe.transformer.register_forward_pre_hook(record, with_kwargs=True)
    for k in (4, 7):
        x = torch.randn(1, *model.shape, generator=torch.Generator().manual_seed(k))
        seen.clear(), guidance.clear()
        pipe(prompt="a cat", num_inference_steps=k, height=s, width=s, latents=model.pipeline_latents(x),
             output_type="latent", **CALL_KWARGS[family])  # fmt: skip
        ref, ref_guidance = torch.cat(seen).unique(), list(guidance)
        seen.clear(), guidance.clear()
        glass.generate(model, glass.ODE(1), k, x=x.double(), prompt="a cat")
        assert len(ref) == k and torch.equal(torch.cat(seen).unique(), ref)
        assert guidance == ref_guidance and (guidance[0] is None) == (family == "flux2")


def test_a_layerwise_cast_network_runs_in_its_compute_dtype():
    """A transformer stored in float8 and computing in float32 (diffusers' enable_layerwise_casting):
    glass reads the dtype as diffusers does (the compute dtype; its first parameter is float8, which
    glass cast the inputs to and crashed) and reproduces the pipeline's own sampler."""
    pipe, s, k = PIPES["flux"](), SIZE["flux"], 3
    pipe.transformer.enable_layerwise_casting(storage_dtype=torch.float8_e4m3fn, compute_dtype=torch.float32)
    model = glass.from_pipe(pipe, height=s, width=s, max_sequence_length=MAX_SEQUENCE_LENGTH["flux"])
    assert model.dtype == torch.float32
    x = torch.randn(1, *model.shape, generator=torch.Generator().manual_seed(1))
    assert gap_to_the_pipeline(pipe, model, "flux", k, x) < 1e-4


def test_schedulers_that_do_not_index_training_steps_are_refused():
    """An SDXL-style UNet whose scheduler feeds it continuous timesteps (0.25 log sigma, CosXL) or EDM
    sigmas (Playground v2.5) is refused in one line: glass read those values as step indices (a grid
    near the data, silently) or failed with an AttributeError."""
    from diffusers import EDMEulerScheduler, EulerDiscreteScheduler, StableDiffusionPipeline

    base = pipe_of("sd")
    cont = EulerDiscreteScheduler.from_config(base.scheduler.config, timestep_type="continuous",
                                              prediction_type="v_prediction")  # fmt: skip
    for sched in (cont, EDMEulerScheduler()):
        pipe = StableDiffusionPipeline(**{**base.components, "scheduler": sched})
        with pytest.raises(ValueError, match=f"the scheduler {type(sched).__name__} does not feed the unet "
                           "training-step indices .*: not supported"):  # fmt: skip
            glass.from_pipe(pipe, height=32, width=32)


@pytest.fixture
def tiny_hub(tmp_path, monkeypatch):
    """An offline hub cache of ``tiny/sd`` (read through huggingface_hub's own constants): commit 1
    tagged v1, commit 2 with other UNet weights (main), commit 3 = commit 2 with a model card.
    Returns (the repository's cache folder, the three commits)."""
    import huggingface_hub.constants

    pipe, c = copy.deepcopy(pipe_of("sd")), ("1" * 40, "2" * 40, "3" * 40)
    pipe.save_pretrained(tmp_path / "one")
    with torch.no_grad():
        for p in pipe.unet.parameters():
            p.add_(0.1)
    pipe.save_pretrained(tmp_path / "two")
    shutil.copytree(tmp_path / "two", tmp_path / "three")
    (tmp_path / "three" / "README.md").write_text("a model card\n")
    folders = dict(zip(c, [tmp_path / n for n in ("one", "two", "three")]))
    repo = hub_cache(tmp_path / "hub", "tiny/sd", folders, {"main": c[1], "v1": c[0]})
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    return repo, c


def test_a_hub_revision_loads_its_own_snapshot_and_keys_its_prompts_and_jobs(tiny_hub, tmp_path):
    """model.revision loads the hub snapshot it names, as diffusers' from_pretrained (a hub cache made
    here, read offline: commit 1 tagged v1, commit 2 with other UNet weights, commit 3 = 2 with a
    README). A hub id names no weights by itself: the prompt cache and a sweep job's record are keyed
    by the snapshot's model files (a branch that moved on to other weights reruns the job, one that
    changed only its README does not), and the text encoders come from the network's own snapshot
    even after the branch moved. revision on a local folder, which diffusers would ignore, is refused."""
    from glass.config import compose
    from glass.models.latent import hub_snapshot
    from glass.pipelines.load import load_pipeline
    from glass.promptrun import run_key
    from glass.weights import stale_weights, weights_digest

    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a cat\n")
    repo, c = tiny_hub
    kw = {"device": "cpu", "dtype": "float32", "height": 32, "width": 32, "cache_dir": str(tmp_path / "c")}
    main, v1, pinned = (load_pipeline("sd", "tiny/sd", revision=r, **kw) for r in (None, "v1", c[0]))
    assert (main.snapshot, v1.snapshot, pinned.snapshot) == (c[1], c[0], c[0])
    x = torch.randn(2, *main.shape, dtype=torch.float64)
    assert torch.equal(v1.denoise(x, 0.5), pinned.denoise(x, 0.5))
    assert not torch.allclose(main.denoise(x, 0.5), v1.denoise(x, 0.5))
    assert main._disk.key != v1._disk.key and v1._disk.key == pinned._disk.key
    assert load_pipeline("sd", "tiny/sd", revision=c[2], **kw)._disk.key == main._disk.key  # README only
    assert [hub_snapshot("tiny/sd", r) for r in (None, "v1", "v2")] == [repo / "snapshots" / c[1],
                                                                        repo / "snapshots" / c[0], None]

    cfg = compose(["model=sd", "model.model_id=tiny/sd"])
    prompt_set = compose(["model=sd", "model.model_id=tiny/sd", "task=generate", f"task.prompts={prompts}"])
    digest, key = weights_digest(cfg), run_key(prompt_set)  # a prompt-set run's records carry its key
    assert list(digest) == ["hub:tiny/sd@main"]
    (tmp_path / "job").mkdir()
    (tmp_path / "job" / "job.json").write_text(json.dumps({"weights": digest}))
    (repo / "refs" / "main").write_text(c[2])  # main moved on to a new model card
    assert stale_weights(tmp_path / "job", weights_digest(cfg)) == [] and run_key(prompt_set) == key
    (repo / "refs" / "main").write_text(c[0])  # and to other weights
    assert stale_weights(tmp_path / "job", weights_digest(cfg)) == ["hub:tiny/sd@main"]
    assert run_key(prompt_set) != key  # a resumed prompt set computes its prompts again
    text = main.text_loader()  # the prompts main encodes later: with the encoders of its own snapshot
    assert f"snapshots/{c[1]}/" in text.text_encoder.config._name_or_path.replace("\\", "/")
    with pytest.raises(ValueError, match="not to the local folder"):
        load_pipeline("sd", str(repo / "snapshots" / c[0]), revision="v1", **kw)
    with pytest.raises(ValueError, match="hub branch, tag or commit"):
        load_pipeline("sd", "tiny/sd", revision="", **kw)
    with pytest.raises(ValueError, match="read as a number: quote it"):
        load_pipeline("sd", "tiny/sd", revision=1.0, **kw)


def test_a_pipe_without_some_text_encoders_has_prompt_embeddings_of_its_own(tmp_path):
    """diffusers' recipe StableDiffusion3Pipeline.from_pretrained(id, text_encoder_3=None) puts zeros
    where T5's embedding goes: its prompt cache must not serve (or take) the full pipeline's. A pipe
    without any text encoder (glass's own loader, which loads them later) keeps the full key."""
    full = copy.copy(pipe_of("sd3"))
    no_t5 = copy.copy(full)
    no_t5.text_encoder_3 = None
    none = copy.copy(full)
    none.text_encoder = none.text_encoder_2 = none.text_encoder_3 = None
    keys = [glass.from_pipe(p, height=32, width=32, max_sequence_length=16, cache_dir=str(tmp_path))._disk.key
            for p in (full, no_t5, none)]  # fmt: skip
    assert keys[0] != keys[1] and "without text_encoder_3" in keys[1] and keys[2] == keys[0]


def test_a_local_pipeline_folder_saved_anew_is_other_weights(tmp_path):
    """model.model_id=<folder>: the folder's name says nothing of its weights. A pipeline saved anew
    into it (fine-tuned in place) changes the prompt cache's key and the sweep's weights digest, so
    neither old embeddings nor old finished jobs are taken for the new weights."""
    from glass.config import compose
    from glass.pipelines.load import load_pipeline
    from glass.promptrun import run_key
    from glass.weights import weights_digest

    folder = tmp_path / "my-sd"
    pipe = copy.deepcopy(pipe_of("sd"))
    pipe.save_pretrained(folder)
    kw = {"device": "cpu", "dtype": "float32", "height": 32, "width": 32, "cache_dir": str(tmp_path / "c")}
    cfg = compose(["model=sd", f"model.model_id={folder}"])
    (tmp_path / "p.txt").write_text("a cat\n")
    prompt_set = compose(["model=sd", f"model.model_id={folder}", "task=generate",
                          f"task.prompts={tmp_path / 'p.txt'}"])
    shards = run_key(prompt_set)
    before, key = weights_digest(cfg), load_pipeline("sd", str(folder), **kw)._disk.key
    assert list(before) == [str(folder.resolve())] and load_pipeline("sd", str(folder), **kw)._disk.key == key
    with torch.no_grad():
        next(pipe.text_encoder.parameters()).add_(1.0)
    pipe.save_pretrained(folder)
    assert weights_digest(cfg) != before and load_pipeline("sd", str(folder), **kw)._disk.key != key
    assert run_key(prompt_set) == shards  # file times differ between nodes' copies: shards stay one run


def test_a_finished_prompt_set_is_computed_again_once_its_hub_weights_change(tiny_hub, tmp_path):
    """A prompt-set run over a hub id, finished, then the branch moves on to other weights: the same
    command computes it again (the finished run, named by the config alone, was returned as it was)
    and sets the old one aside as <run>.stale; a branch that moved on to a new model card only keeps
    the finished run."""
    from typer.testing import CliRunner

    from glass.cli import app

    repo, c = tiny_hub
    (tmp_path / "p.txt").write_text("a cat\n")
    out = tmp_path / "out"
    args = ["run", "model=sd", "model.model_id=tiny/sd", "model.device=cpu", "model.dtype=float32",
            "model.height=32", "model.width=32", f"out_dir={out}", f"task.prompts={tmp_path / 'p.txt'}",
            "task=generate", "sampler=glass", "sampler.steps=1", "task.transitions=2",
            "metric=none"]  # fmt: skip
    runs = []
    for main in (c[1], c[2], c[0]):  # first run; a new model card; other weights
        (repo / "refs" / "main").write_text(main)
        res = CliRunner().invoke(app, args)
        assert res.exit_code == 0, res.output
        (run,) = [p for p in (out / "promptsets").iterdir() if p.suffix == "" and not p.name.startswith(".")]
        runs.append((res.stderr, (run / "metrics.json").read_text()))
    assert "is finished" in runs[1][0] and runs[1][1] == runs[0][1]
    assert "computed with other weights" in runs[2][0] and runs[2][1] != runs[0][1]
    (stale,) = (out / "promptsets").glob("*.stale")
    assert (stale / "metrics.json").read_text() == runs[0][1]


@pytest.mark.parametrize("scheduler", ["DDIMScheduler", "PNDMScheduler"])
@pytest.mark.parametrize("options, k, own", [
    ({}, 3, True),  # SD's leading spacing, K not dividing T: 667, 334, 1 (steps_offset=1), then final
    ({"timestep_spacing": "trailing"}, 4, True),  # 1000 // 4 = 250: 999, 749, 499, 249, then final
    ({"timestep_spacing": "trailing"}, 3, False),  # 999, 666, 332: it steps 666 -> 333
    ({"timestep_spacing": "linspace", "set_alpha_to_one": True}, 3, False),  # 999, 500, 0: 999 -> 666
])  # fmt: skip
def test_a_scheduler_stepping_off_its_timesteps_is_named(scheduler, options, k, own):
    """DDIM and PNDM step from timestep t to t - T // K, not to their next timestep: where that is the
    next one, glass's grid is the pipeline's own steps (DDIM: its own samples, no warning); where it is
    not (trailing with K not dividing T, linspace), glass steps between the timesteps and one warning
    says so, and the DDIM ODE is then not the pipeline's sampler (the warning is not a false alarm)."""
    import warnings

    import diffusers

    base = pipe_of("sd")
    options = {**options, "skip_prk_steps": True} if scheduler == "PNDMScheduler" else options
    pipe = _with(base, scheduler=getattr(diffusers, scheduler).from_config(base.scheduler.config, **options))
    model = glass.from_pipe(pipe, height=32, width=32)
    gens = lambda: [torch.Generator().manual_seed(i) for i in (3, 4)]  # noqa: E731
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ours = glass.generate(model, glass.ODE(1, method="ddim"), k, 2, prompt=PROMPTS, generator=gens())
    said = [str(w.message) for w in caught if "steps from timestep t to t -" in str(w.message)]
    assert len(said) == (0 if own else 1), said
    if not own:
        assert f"timestep_spacing={options.get('timestep_spacing')!r}" in said[0] and scheduler in said[0]
    if scheduler == "DDIMScheduler":
        out = pipe(prompt=PROMPTS, num_inference_steps=k, height=32, width=32, output_type="latent",
                   generator=gens()).images  # fmt: skip
        ref = model.from_pipeline_output(out)
        gap = float((ours - ref).abs().max() / ref.abs().max())
        assert gap < 1e-5 if own else gap > 1e-4


@pytest.mark.parametrize("scheduler", ["DDIMScheduler", "PNDMScheduler"])
@pytest.mark.parametrize("options, k, fix", [
    ({"timestep_spacing": "linspace"}, 4,
     "set_alpha_to_one=True, or timestep_spacing='leading' or 'trailing'"),
    ({"timestep_spacing": "trailing"}, 1000, "set_alpha_to_one=True"),  # 999, 998, ..., 0
])  # fmt: skip
def test_a_spacing_ending_at_its_final_noise_level_is_refused(scheduler, options, k, fix):
    """A spacing that ends at timestep 0, whose abar the final step repeats (final alpha_cumprod =
    abar_0 without set_alpha_to_one): one line naming the options that fix it (not the spacing the
    user already has), not a grid error."""
    import diffusers

    base = pipe_of("sd")
    options = {**options, "skip_prk_steps": True} if scheduler == "PNDMScheduler" else options
    sched = getattr(diffusers, scheduler).from_config(base.scheduler.config, **options)
    model = glass.from_pipe(_with(base, scheduler=sched), height=32, width=32)
    with pytest.raises(ValueError, match=rf"ends at timestep 0 at {k} steps") as refused:
        model.grid(k)
    assert str(refused.value).endswith(f"use {fix}")


def test_flux2_klein_sees_no_guidance_input_even_where_its_network_has_an_embedder():
    """Flux2KleinPipeline passes ``guidance=None`` whatever the checkpoint's config says; a klein network
    with a guidance embedder (``guidance_embeds=True``, the model class's default) is run the same way
    (was: the scale fed in, another denoiser than the pipeline's)."""
    from tests.tiny_pipes import _flux2_transformer

    pipe, s, k = PIPES["flux2"](), SIZE["flux2"], 3
    torch.manual_seed(0)
    pipe.transformer = _flux2_transformer(guidance_embeds=True)
    model = glass.from_pipe(pipe, height=s, width=s, max_sequence_length=MAX_SEQUENCE_LENGTH["flux2"])
    x = torch.randn(1, *model.shape, generator=torch.Generator().manual_seed(0))
    assert gap_to_the_pipeline(pipe, model, "flux2", k, x) < 1e-4


def test_flux2_dev_prompt_cache_is_keyed_by_the_system_message(tmp_path):
    """FLUX.2 [dev] wraps each prompt in ``pipe.system_message`` (an attribute, not config): embeddings
    cached under one message are not read back under another (was: the same cache key)."""
    pipe = pipe_of("flux2_dev")
    kw = {"height": 32, "width": 32, "max_sequence_length": MAX_SEQUENCE_LENGTH["flux2_dev"],
          "cache_dir": str(tmp_path)}  # fmt: skip
    first = glass.from_pipe(pipe, **kw)
    cached = first.embeddings(["a cat"])["embeds"]
    other = copy.copy(pipe)  # the same modules
    other.system_message = "Paint it."
    second = glass.from_pipe(other, **kw)
    assert second._disk.key != first._disk.key and not second._disk.has("a cat")
    assert not torch.allclose(second.embeddings(["a cat"])["embeds"], cached)
    assert glass.from_pipe(pipe, **kw)._disk.has("a cat")  # the first message's entry is still read


@pytest.mark.parametrize("family", FAMILIES)
def test_heun_runs_on_every_pipeline_through_the_models_velocity(family):
    """The ODE's Heun step calls ``model.velocity(x, t, **cond)``, u from the denoiser (eq. 14): every
    adapter keeps that method (FLUX's network velocity once shadowed it, and Heun failed on FLUX.1
    and FLUX.2); a Heun run costs two NFE a step, one on a step that ends at t = 1 (the flows' grids)."""
    model = model_of(family)
    cond = {"prompt": "a cat"} if model.conditioning else {}
    x = torch.randn(2, *model.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    t = torch.full((2,), 0.4, dtype=torch.float64)
    want = model.schedule.x0_to_velocity(model.denoise(x, t, **cond), x, t)
    assert torch.allclose(model.velocity(x, t, **cond), want, rtol=1e-6, atol=1e-8)
    model.reset_nfe()
    out = glass.generate(model, glass.ODE(3, method="heun"), 1, x=x, **cond)
    ends_at_data = float(model.grid(3)[-1]) >= 1  # SD / SDXL's grids stop short of t = 1
    assert out.shape == x.shape and bool(torch.isfinite(out).all())
    assert model.reset_nfe() == 2 * 3 - ends_at_data


def _reference(h: int, w: int, seed: int):
    from PIL import Image

    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))


@pytest.mark.parametrize("family", ["flux2", "flux2_dev"])
def test_flux2_reference_images_reproduce_the_pipelines_editing(family):
    """``image=`` (one reference, or two: FLUX.2's multi-reference conditioning) gives the denoiser the
    pipeline's: glass's ODE from given latents equals ``pipe(image=..., latents=...)``, and it is another
    denoiser than the text-only one (the references' tokens are seen)."""
    pipe, s, k = pipe_of(family), SIZE[family], 3
    n = MAX_SEQUENCE_LENGTH[family]
    x = torch.randn(2, *model_of(family).shape, generator=torch.Generator().manual_seed(1))
    images = _reference(80, 72, 0), _reference(64, 64, 1)
    for image in (images[0], list(images)):
        model = glass.from_pipe(pipe, height=s, width=s, max_sequence_length=n, image=image)
        out = pipe(image=image, prompt=["a cat"] * 2, num_inference_steps=k, height=s, width=s,
                   latents=model.pipeline_latents(x), output_type="latent",
                   max_sequence_length=n).images  # fmt: skip
        ref = model.from_pipeline_output(out)
        ours = glass.generate(model, ode_of(family), k, x=x.double(), prompt="a cat")
        assert float((ours - ref).abs().max() / ref.abs().max()) < 1e-4
    assert model.ref_tokens.shape[1] == (80 // 8) * (72 // 8) + (64 // 8) ** 2  # 2x2 patches of /4 latents
    assert gap_to_the_pipeline(pipe, model, family, k, x) > 1e-3  # the text-only pipeline differs


def test_flux2_reference_images_set_the_default_size_and_bad_ones_are_named(tmp_path):
    """No height / width: the first reference's size cropped to a multiple of 2 x the VAE's factor, as
    the pipeline does; a path is read with PIL; what cannot be a reference is one line naming ``image``."""
    pipe = pipe_of("flux2_dev")
    n = MAX_SEQUENCE_LENGTH["flux2_dev"]
    path = tmp_path / "ref.png"
    _reference(83, 70, 0).save(path)
    model = glass.from_pipe(pipe, max_sequence_length=n, image=str(path))
    assert (model.height, model.width) == (80, 64) and model.shape[1:] == (20, 16)
    (tmp_path / "notes.txt").write_text("not an image")
    for image, message in (
        (str(tmp_path / "missing.png"), "image: no file at"),
        (str(tmp_path / "notes.txt"), "is not an image PIL can read"),
        (_reference(32, 80, 0), "image: Image too small: 80×32"),
        ([_reference(64, 64, 0), _reference(32, 80, 0)], r"image\[1\]: Image too small: 80×32"),
        ([], "image is an empty list: pass None for text-to-image"),
        (3, r"image must be a PIL image or a path \(or a list of them\); got int"),
    ):
        with pytest.raises(ValueError, match=message):
            glass.from_pipe(pipe, height=32, width=32, max_sequence_length=n, image=image)
    with pytest.raises(ValueError, match="unknown options image for flux "):
        glass.from_pipe(pipe_of("flux"), image=_reference(64, 64, 0))


@pytest.mark.parametrize("family", ["flux2", "flux2_dev"])
def test_flux2_references_given_per_row_are_each_rows_own(family, tmp_path):
    """``image=`` conditioning, one entry per row: each row is denoised as a model built with that
    row's references (a path, a PIL image or a list), a None row with ``model.image``'s; a single value
    is every row's. Errors name ``image``; a family without references refuses the key."""
    pipe, s, n = pipe_of(family), SIZE[family], MAX_SEQUENCE_LENGTH[family]
    a, b = _reference(80, 72, 0), _reference(64, 64, 1)
    a.save(tmp_path / "a.png")
    kw = {"height": s, "width": s, "max_sequence_length": n, "prompt": "a cat"}
    plain, with_b = glass.from_pipe(pipe, **kw), glass.from_pipe(pipe, image=b, **kw)
    x = torch.randn(4, *plain.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    t = torch.tensor([0.2, 0.3, 0.4, 0.5], dtype=torch.float64)
    rows = [str(tmp_path / "a.png"), [a, b], None, b]
    singles = [glass.from_pipe(pipe, image=str(tmp_path / "a.png"), **kw),
               glass.from_pipe(pipe, image=[a, b], **kw), with_b, with_b]  # fmt: skip
    want = torch.cat([m.denoise(x[i : i + 1], t[i : i + 1]) for i, m in enumerate(singles)])
    got = with_b.denoise(x, t, image=rows)
    assert torch.allclose(got, want, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(got[2:3], plain.denoise(x[2:3], t[2:3]), rtol=1e-3, atol=1e-3)  # refs seen
    assert torch.allclose(plain.denoise(x, t, image=b), with_b.denoise(x, t), rtol=1e-5, atol=1e-6)
    plain.chunk = 1  # rows split across chunks keep their own references
    assert torch.allclose(plain.denoise(x, t, image=[None, None, b, b]),
                          torch.cat([plain.denoise(x[:2], t[:2]), with_b.denoise(x[2:], t[2:])]),
                          rtol=1e-5, atol=1e-6)  # fmt: skip
    for image, message in (
        ([a, b], "image has 2 entries for a batch of 4"),
        (str(tmp_path / "missing.png"), "image: no file at"),
        ([None, _reference(32, 80, 0), None, None], "image: Image too small: 80×32"),
    ):
        with pytest.raises(ValueError, match=message):
            plain.denoise(x, t, image=image)
    with pytest.raises(ValueError, match="FluxModel does not take the conditioning image"):
        model_of("flux").denoise(torch.zeros(1, *model_of("flux").shape), 0.3, prompt="a", image=a)


def test_flux_kontext_reference_reproduces_the_pipelines_editing(tmp_path):
    """FLUX.1 Kontext: ``image=`` gives the denoiser of ``pipe(image=...)`` (glass's ODE from given
    latents equals the pipeline's, reference tokens seen); per row as FLUX.2's; ``auto_resize`` picks
    the preferred Kontext resolution nearest the reference's aspect ratio; a list is refused."""
    from diffusers.pipelines.flux.pipeline_flux_kontext import PREFERRED_KONTEXT_RESOLUTIONS

    from glass.pipelines.flux_kontext import prepare_kontext_reference

    pipe, s, k, n = pipe_of("flux_kontext"), SIZE["flux_kontext"], 3, MAX_SEQUENCE_LENGTH["flux_kontext"]
    image = _reference(80, 72, 0)
    image.save(tmp_path / "a.png")
    kw = {"height": s, "width": s, "max_sequence_length": n, "auto_resize": False}
    model = glass.from_pipe(pipe, image=image, **kw)
    x = torch.randn(2, *model.shape, generator=torch.Generator().manual_seed(1))
    out = pipe(image=image, prompt=["a cat"] * 2, num_inference_steps=k, height=s, width=s, max_area=s * s,
               latents=model.pipeline_latents(x), output_type="latent", max_sequence_length=n,
               _auto_resize=False).images  # fmt: skip
    ref = model.from_pipeline_output(out)
    ours = glass.generate(model, glass.ODE(1), k, x=x.double(), prompt="a cat")
    assert float((ours - ref).abs().max() / ref.abs().max()) < 1e-4
    assert model.ref_tokens.shape[1] == (80 // 8) * (72 // 8)  # 2x2 patches of /4 latents, cropped to 8
    assert gap_to_the_pipeline(pipe, model, "flux_kontext", k, x) > 1e-3  # the text-only pipeline differs
    plain = glass.from_pipe(pipe, **kw)
    y = torch.randn(3, *model.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    t = torch.tensor([0.2, 0.3, 0.4], dtype=torch.float64)
    rows = plain.denoise(y, t, prompt="a cat", image=[str(tmp_path / "a.png"), None, image])
    singles = [model, plain, model]
    want = torch.cat([m.denoise(y[i : i + 1], t[i : i + 1], prompt="a cat") for i, m in enumerate(singles)])
    assert torch.allclose(rows, want, rtol=1e-5, atol=1e-6)
    pixels = prepare_kontext_reference(pipe.image_processor, pipe.vae_scale_factor, _reference(300, 900, 0))
    h, w = pixels.shape[-2:]
    nearest = min(abs(900 / 300 - a / b) for a, b in PREFERRED_KONTEXT_RESOLUTIONS)
    assert (w, h) in PREFERRED_KONTEXT_RESOLUTIONS and abs(900 / 300 - w / h) == nearest
    one = glass.from_pipe(pipe, image=[image], **kw)  # a list of one
    assert torch.equal(one.ref_tokens, model.ref_tokens)
    with pytest.raises(ValueError, match="FLUX.1 Kontext edits from one reference image, got a list of 2"):
        glass.from_pipe(pipe, image=[image, image], **kw)
    with pytest.raises(ValueError, match="image: 40×6 is smaller than 8 pixels a side"):
        glass.from_pipe(pipe, image=_reference(6, 40, 0), **kw)
    with pytest.raises(ValueError, match="auto_resize must be true or false, got 'no'"):
        glass.from_pipe(pipe, image=image, **{**kw, "auto_resize": "no"})


def test_cli_flux_kontext_loads_with_its_reference(tmp_path):
    """model=flux_kontext from a local folder with ``model.image`` (and ``model.auto_resize=false``): the
    model from_pipe gives with the same file; a list of references is one line before any weights load."""
    from glass.config import UserError, compose, instantiate

    root, n, s = tmp_path / "tiny-kontext", MAX_SEQUENCE_LENGTH["flux_kontext"], SIZE["flux_kontext"]
    pipe_of("flux_kontext").save_pretrained(root)
    _reference(64, 72, 0).save(tmp_path / "a.png")
    common = ["model=flux_kontext", f"model.model_id={root}", "model.device=cpu", "model.dtype=float32",
              f"model.height={s}", f"model.width={s}", f"model.max_sequence_length={n}",
              "model.auto_resize=false", f"out_dir={tmp_path}"]  # fmt: skip
    model = instantiate(compose([*common, f"model.image={tmp_path / 'a.png'}"]).model, "model")
    ref = glass.from_pipe(pipe_of("flux_kontext"), height=s, width=s, max_sequence_length=n,
                          auto_resize=False,
                          prompt=model.prompt_text, image=str(tmp_path / "a.png"))  # fmt: skip
    x = torch.randn(2, *model.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(model.denoise(x, 0.3), ref.denoise(x, 0.3), rtol=1e-4, atol=1e-5)
    two = f"model.image=[{tmp_path / 'a.png'},{tmp_path / 'a.png'}]"
    with pytest.raises(UserError, match="model.image: FLUX.1 Kontext edits from one reference image"):
        instantiate(compose([*common, two]).model, "model")


def test_cli_flux2_dev_edits_from_reference_image_files(tmp_path):
    """model=flux2_dev with ``model.image=[a.png,b.png]`` and no size: the model from_pipe gives with the
    same files (size from the first), and the sweeps' weights digest keys each file by its content."""
    from diffusers.pipelines.flux2.system_messages import SYSTEM_MESSAGE

    from glass.config import compose, instantiate
    from glass.weights import weights_digest

    root, n = tmp_path / "tiny-flux2_dev", MAX_SEQUENCE_LENGTH["flux2_dev"]
    pipe_of("flux2_dev").save_pretrained(root)
    paths = [tmp_path / "a.png", tmp_path / "b.png"]
    _reference(64, 80, 0).save(paths[0])
    _reference(64, 64, 1).save(paths[1])
    cfg = compose(["model=flux2_dev", f"model.model_id={root}", "model.device=cpu", "model.dtype=float32",
                   "model.height=null", "model.width=null", "model.cpu_offload=false",
                   f"model.max_sequence_length={n}", f"model.image=[{paths[0]},{paths[1]}]",
                   f"out_dir={tmp_path}"])  # fmt: skip
    model = instantiate(cfg.model, "model")
    assert (model.height, model.width) == (64, 80) and model.ref_tokens is not None
    pipe = copy.copy(pipe_of("flux2_dev"))  # the folder keeps no system message: FLUX.2's own
    pipe.system_message = SYSTEM_MESSAGE
    images = [str(p) for p in paths]
    ref = glass.from_pipe(pipe, max_sequence_length=n, prompt=model.prompt_text, image=images)
    x = torch.randn(2, *model.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(model.denoise(x, 0.3), ref.denoise(x, 0.3), rtol=1e-4, atol=1e-5)
    from glass.promptrun import run_key

    digest, key = weights_digest(cfg), run_key(cfg)
    keys = [f"image:{p.resolve()}" for p in paths]
    assert all(k in digest for k in keys)
    _reference(64, 80, 2).save(paths[0])  # edited in place: another digest, the job runs again
    assert weights_digest(cfg)[keys[0]] != digest[keys[0]] and weights_digest(cfg)[keys[1]] == digest[keys[1]]
    assert run_key(cfg) != key  # and a resumed prompt set computes its prompts again
