"""Flow-matching training of the MNIST velocity model (linear / CondOT path, eq. 2).

Loss: E_{t ~ U(0,1), z, eps} || u_theta(t z + (1 - t) eps, t) - (z - eps) ||^2. EMA of the weights,
AdamW with linear warm-up and, with ``decay_steps``, a linear decay over the last ``decay_steps`` of
``max_steps`` to lr / decay_steps at the last step (warm-up, constant, decay), gradient clipping.
Training stops at ``max_steps`` or after ``max_minutes`` of wall time, whichever comes first, and always
resumes from ``<run_dir>/last.pt`` when ``resume`` is true. ``export`` writes the EMA weights
(safetensors) and a manifest. ``device`` (``auto``: a CUDA GPU when there is one) changes only speed and
float rounding: batches and noise are drawn on the CPU from one generator, so a run resumes on another
device.
``precision=bf16`` runs the network under bfloat16 autocast (faster; its outputs are rounded to
bfloat16), while weights, optimiser and EMA stay float32.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from glass.checks import check_int
from glass.data import load_mnist
from glass.files import write_text_atomic
from glass.models.mnist import DEFAULT_UNET, TIME_SCALE, check_device, flow_unet, to_data
from glass.train.common import (
    Progress,
    Trainer,
    atomic_save,
    check_resume_config,
    ema_update,
    export_weights,
    load_resume,
    save_losses,
)

__all__ = ["FlowTrainer", "save_sample_grid", "make_prior"]

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16}  # trainer.precision -> autocast dtype (None: off)
LOSS_READ = 50  # steps between reads of the losses back from the device (a read waits for the GPU)


def make_prior(spec: dict):
    """The training prior from its config: ``{name: gaussian}`` or ``{name: lowfreq, factor, a}``."""
    from glass.priors import Gaussian, LowFrequency

    name = spec.get("name", "gaussian")
    if name == "gaussian":
        return Gaussian()
    if name == "lowfreq":
        return LowFrequency(int(spec.get("factor", 4)), float(spec.get("a", 0.5)))
    raise ValueError(f"unknown prior {name!r}; choose from: gaussian, lowfreq")


@torch.inference_mode()
def save_sample_grid(net, path: Path, title: str, n: int = 64, seed: int = 0) -> Path:
    """Draw n samples with the deterministic ODE (5 transitions x 8 Euler steps) and save a grid."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from glass.models.mnist import MnistFlow, to_pixels
    from glass.samplers import ODE, generate

    model = MnistFlow(net)
    x = generate(model, ODE(8), 5, n=n, generator=torch.Generator().manual_seed(seed))
    grid = to_pixels(x.float()).reshape(n // 8, 8, 28, 28).permute(0, 2, 1, 3).reshape(n // 8 * 28, -1)
    fig, ax = plt.subplots(figsize=(6, 6))
    ax.imshow(grid.numpy(), cmap="gray", vmin=0, vmax=1)
    ax.set(title=title, xticks=[], yticks=[])
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


class FlowTrainer(Trainer):
    name = "flow"

    def __init__(
        self,
        unet: dict | None = None,
        batch_size: int = 64,
        lr: float = 2e-3,
        warmup_steps: int = 200,
        max_steps: int = 20000,
        max_minutes: float = 85.0,
        ema_decay: float = 0.999,
        checkpoint_every: int = 250,
        resume: bool = True,
        export: str | None = "glass/assets/mnist_flow",
        threads: int | None = None,
        samples: int = 64,
        init: str | None = None,
        prior: dict | None = None,
        device: str = "auto",
        precision: str = "fp32",
        decay_steps: int = 0,
    ):
        for key, v in {
            "batch_size": batch_size,
            "max_steps": max_steps,
            "checkpoint_every": checkpoint_every,
        }.items():
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"trainer.{key} must be an integer >= 1, got {v!r}")
        if not (isinstance(max_minutes, (int, float)) and max_minutes > 0):
            raise ValueError(f"trainer.max_minutes must be > 0, got {max_minutes!r}")
        if isinstance(samples, bool) or not isinstance(samples, int) or samples < 0 or samples % 8:
            raise ValueError(f"trainer.samples must be a multiple of 8 (0: no sample grid), got {samples!r}")
        check_int("trainer.decay_steps", decay_steps, 0, max_steps)
        check_int("trainer.warmup_steps", warmup_steps, 0)
        self.check_common(resume, threads, lr, ema_decay, export)
        if init is not None and not (isinstance(init, str) and init):
            raise ValueError(f"trainer.init must be a checkpoint path (or null), got {init!r}")
        if precision not in PRECISIONS:
            raise ValueError(f"trainer.precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
        if device != "auto":
            check_device(device, "trainer.device")
        self.device, self.precision, self.decay_steps = device, precision, decay_steps
        self.samples, self.init = samples, init
        self.prior = {k: v for k, v in (prior or {"name": "gaussian"}).items() if k != "suffix"}
        self._prior = make_prior(self.prior)
        self.unet = {**DEFAULT_UNET, **(unet or {})}
        self.batch_size, self.lr, self.warmup_steps = batch_size, float(lr), warmup_steps
        self.max_steps, self.max_minutes, self.ema_decay = max_steps, float(max_minutes), ema_decay
        self.checkpoint_every, self.resume, self.export, self.threads = (
            checkpoint_every,
            resume,
            export,
            threads,
        )

    RESUME_KEYS = ("unet", "batch_size", "lr", "warmup_steps", "decay_steps", "ema_decay", "prior", "init")

    def config(self) -> dict:
        return {k: v for k, v in vars(self).items() if not k.startswith("_")}

    def __call__(
        self, run_dir: Path, seed: int = 0, data_root: str | None = None, download: bool = True, console=None
    ) -> dict:
        ckpt = self._start(run_dir)
        images, _ = load_mnist("train", data_root, download)
        data = to_data(images)
        auto = "cuda" if torch.cuda.is_available() else "cpu"
        device = torch.device(auto if self.device == "auto" else self.device)
        torch.manual_seed(seed)
        net = flow_unet(**self.unet).to(device)
        ema = flow_unet(**self.unet).to(device)
        ema.load_state_dict(net.state_dict())
        ema.requires_grad_(False)
        opt = torch.optim.AdamW(net.parameters(), lr=self.lr, weight_decay=0.0)
        gen = torch.Generator().manual_seed(seed)
        step, losses, elapsed, prior_steps = 0, [], 0.0, 0
        if self.init and not (self.resume and ckpt.is_file()):  # warm start from exported weights
            from glass.models.mnist import load_checkpoint, repo_path

            weights, manifest = load_checkpoint(repo_path(self.init), "glass train flow")  # as export
            if manifest["architecture"] != self.unet:
                raise ValueError(f"trainer.init {self.init!r} has another architecture than trainer.unet")
            net.load_state_dict(weights)
            ema.load_state_dict(weights)
            prior_steps = int(manifest.get("total_steps", manifest.get("steps", 0)))
        stored = None  # the resumed checkpoint's settings
        if self.resume and ckpt.is_file():
            state = load_resume(ckpt, ("net", "ema", "opt", "gen", "step", "losses", "elapsed"))
            check_resume_config(state.get("config"), self.run_config(seed), self.RESUME_KEYS, ckpt)
            stored = state.get("config") or {}
            stored_max = stored.get("max_steps", self.max_steps)
            if self.decay_steps and stored_max != self.max_steps:  # the decay is placed by max_steps
                raise ValueError(
                    f"{ckpt} decays its learning rate over the last {self.decay_steps} of "
                    f"max_steps={stored_max}; resumed with max_steps={self.max_steps} the schedule would "
                    "jump: pass trainer.resume=false to start over, or keep max_steps"
                )
            net.load_state_dict(state["net"])
            ema.load_state_dict(state["ema"])
            opt.load_state_dict(state["opt"])
            gen.set_state(state["gen"])
            step, losses, elapsed = state["step"], state["losses"], state["elapsed"]
            prior_steps = int(state.get("prior_steps", 0))
            if "rng" in state:
                torch.set_rng_state(state["rng"])

        def move(x):  # batches are drawn on the CPU (one generator on every device); to a GPU without a
            # wait: a copy from pageable memory would wait for the GPU's queue to drain at every step
            return x.pin_memory().to(device, non_blocking=True) if device.type == "cuda" else x

        pending = []  # losses not read back yet (on the device): one transfer per LOSS_READ steps

        def drain_losses():
            if pending:
                losses.extend(torch.stack(pending).tolist())
                pending.clear()

        def save():
            drain_losses()
            state = {"net": net.state_dict(), "ema": ema.state_dict(), "opt": opt.state_dict()}
            state |= {"gen": gen.get_state(), "rng": torch.get_rng_state(), "step": step, "losses": losses}
            state |= {"elapsed": elapsed, "prior_steps": prior_steps}
            atomic_save({**state, "config": self.run_config(seed)}, ckpt)
            steps = f"steps {prior_steps + 1:,}–{prior_steps + step:,}" if prior_steps else f"{step:,} steps"
            source = f" (continued from {Path(self.init).stem})" if self.init and prior_steps else ""
            title = f"flow matching, {steps}{source}"
            save_losses(losses, run_dir, title, first_step=prior_steps)

        self.check_not_finished(ckpt, step, self.max_steps, elapsed, stored)
        start = time.perf_counter() - elapsed
        budget = self.max_minutes * 60
        net.train()
        with Progress(console) as bar:
            advance = bar.task("training flow", self.max_steps, step)
            while step < self.max_steps and time.perf_counter() - start < budget:
                idx = torch.randint(0, data.shape[0], (self.batch_size,), generator=gen)
                z = data[idx]
                eps = self._prior.pair(z, gen)  # x0: N(0, I), or coupled with z (low-frequency prior)
                t = torch.rand(self.batch_size, generator=gen)
                tb = t.view(-1, 1, 1, 1)
                x_t, target, t = (move(v) for v in (tb * z + (1 - tb) * eps, z - eps, t))
                loss = self.train_step(net, opt, x_t, t, target, step)
                ema_update(ema, net, step, self.ema_decay)
                step += 1
                pending.append(loss.detach())
                if len(pending) >= LOSS_READ or step == 1:  # loss.item() each step would wait for the GPU
                    drain_losses()
                elapsed = time.perf_counter() - start
                advance(f"training flow  loss {sum(losses[-100:]) / len(losses[-100:]):.4f}")
                if step % self.checkpoint_every == 0:
                    save()
        save()
        ema = ema.cpu()
        result = {"steps": step, "total_steps": prior_steps + step, "minutes": round(elapsed / 60, 2),
                  "final_loss": sum(losses[-500:]) / max(1, len(losses[-500:]))}  # fmt: skip
        if self.prior["name"] == "gaussian" and self.samples:
            title = f"EMA model after {step} steps: ODE, 5 x 8 Euler steps"
            save_sample_grid(ema, run_dir / "samples.png", title, n=self.samples)
        if self.export:
            result["export"] = str(self._export(ema, result, seed))
        write_text_atomic(run_dir / "result.json", json.dumps(result, indent=2))
        return result

    def train_step(self, net, opt, x_t, t, target, step: int) -> torch.Tensor:
        """One optimiser step of the flow-matching loss on a batch on the network's device (step
        ``step``'s learning rate, ``precision``'s autocast, gradients clipped at norm 1); the loss."""
        dtype = PRECISIONS[self.precision]
        with torch.autocast(x_t.device.type, dtype, enabled=dtype is not None):
            out = net(x_t, t * TIME_SCALE).sample
        loss = (out.float() - target).pow(2).mean()
        for group in opt.param_groups:
            group["lr"] = self.lr_at(step)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        return loss

    def lr_at(self, step: int) -> float:
        """The learning rate of step ``step`` (0-based): linear warm-up over ``warmup_steps``, constant,
        then with ``decay_steps`` a linear decay that reaches lr / decay_steps at the last step."""
        warm = min(1.0, (step + 1) / max(1, self.warmup_steps))
        cool = min(1.0, (self.max_steps - step) / self.decay_steps) if self.decay_steps else 1.0
        return self.lr * warm * cool

    def _export(self, ema, result: dict, seed: int) -> Path:
        manifest = {
            "model": "mnist flow-matching UNet (velocity, linear schedule), EMA weights",
            "architecture": self.unet,
            "time_scale": TIME_SCALE,
            "training": self.run_config(seed),
            "steps": result["steps"],
            "total_steps": result["total_steps"],
            "final_loss": result["final_loss"],
            "train_minutes": result["minutes"],
            "command": "glass train flow"
            + ("" if self.prior["name"] == "gaussian" else f" prior={self.prior['name']}"),
            "prior": self.prior,
        }
        return export_weights(ema.state_dict(), self.export, manifest)
