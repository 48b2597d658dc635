"""Training of the low-resolution generator G of the low-frequency prior (``glass train lowres``):
flow matching (linear path, Gaussian prior) on MNIST downsampled by ``factor``; EMA weights exported
to ``glass/assets/mnist_lowres``."""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from glass.checks import check_int, check_number
from glass.data import load_mnist
from glass.files import write_text_atomic
from glass.models.mnist import to_data
from glass.priors.generator import LowResNet
from glass.priors.lowfreq import downsample
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

__all__ = ["LowResTrainer"]


class LowResTrainer(Trainer):
    name = "lowres"
    RESUME_KEYS = ("factor", "hidden", "depth", "batch_size", "lr", "ema_decay")

    def __init__(
        self,
        factor: int = 4,
        hidden: int = 512,
        depth: int = 3,
        batch_size: int = 256,
        lr: float = 1e-3,
        max_steps: int = 20000,
        max_minutes: float = 10.0,
        ema_decay: float = 0.999,
        checkpoint_every: int = 500,
        resume: bool = True,
        export: str | None = "glass/assets/mnist_lowres",
        threads: int | None = None,
    ):
        for key, v in {"factor": factor, "hidden": hidden, "depth": depth, "batch_size": batch_size,
                       "max_steps": max_steps, "checkpoint_every": checkpoint_every}.items():  # fmt: skip
            check_int(f"trainer.{key}", v, 1)
        if check_number("trainer.max_minutes", max_minutes) <= 0:
            raise ValueError(f"trainer.max_minutes must be > 0, got {max_minutes!r}")
        self.check_common(resume, threads, lr, ema_decay, export)
        self.factor, self.hidden, self.depth, self.batch_size, self.lr = (
            factor,
            hidden,
            depth,
            batch_size,
            float(lr),
        )
        self.max_steps, self.max_minutes, self.ema_decay = max_steps, float(max_minutes), ema_decay
        self.checkpoint_every, self.resume, self.export, self.threads = (
            checkpoint_every,
            resume,
            export,
            threads,
        )

    def __call__(
        self, run_dir: Path, seed: int = 0, data_root=None, download: bool = True, console=None
    ) -> dict:
        ckpt = self._start(run_dir)
        images, _ = load_mnist("train", data_root, download)
        data = downsample(to_data(images), self.factor)
        side = data.shape[-1]
        torch.manual_seed(seed)
        net, ema = LowResNet(side, self.hidden, self.depth), LowResNet(side, self.hidden, self.depth)
        ema.load_state_dict(net.state_dict())
        ema.requires_grad_(False)
        opt = torch.optim.AdamW(net.parameters(), lr=self.lr)
        gen = torch.Generator().manual_seed(seed)
        step, losses, elapsed = 0, [], 0.0
        stored = None  # the resumed checkpoint's settings
        if self.resume and ckpt.is_file():
            state = load_resume(ckpt, ("net", "ema", "opt", "gen", "step", "losses", "elapsed"))
            check_resume_config(state.get("config"), self.run_config(seed), self.RESUME_KEYS, ckpt)
            stored = state.get("config") or {}
            net.load_state_dict(state["net"])
            ema.load_state_dict(state["ema"])
            opt.load_state_dict(state["opt"])
            gen.set_state(state["gen"])
            step, losses, elapsed = state["step"], state["losses"], state["elapsed"]

        def save():
            state = {"net": net.state_dict(), "ema": ema.state_dict(), "opt": opt.state_dict(),
                     "gen": gen.get_state(), "step": step, "losses": losses, "elapsed": elapsed}  # fmt: skip
            atomic_save({**state, "config": self.run_config(seed)}, ckpt)
            save_losses(losses, run_dir, f"low-resolution generator, {step:,} steps")

        self.check_not_finished(ckpt, step, self.max_steps, elapsed, stored)
        start = time.perf_counter() - elapsed
        net.train()
        with Progress(console) as bar:
            advance = bar.task("training lowres", self.max_steps, step)
            while step < self.max_steps and time.perf_counter() - start < self.max_minutes * 60:
                z = data[torch.randint(0, len(data), (self.batch_size,), generator=gen)]
                eps = torch.randn(z.shape, generator=gen)
                t = torch.rand(self.batch_size, generator=gen)
                tb = t.view(-1, 1, 1, 1)
                loss = (net(tb * z + (1 - tb) * eps, t) - (z - eps)).pow(2).mean()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
                opt.step()
                ema_update(ema, net, step, self.ema_decay)
                step += 1
                losses.append(loss.item())
                elapsed = time.perf_counter() - start
                advance()
                if step % self.checkpoint_every == 0:
                    save()
        save()
        result = {"steps": step, "minutes": round(elapsed / 60, 2),
                  "final_loss": sum(losses[-500:]) / max(1, len(losses[-500:]))}  # fmt: skip
        if self.export:
            manifest = {"model": "low-resolution MNIST flow (MLP, velocity, linear schedule), EMA weights",
                        "architecture": {"side": side, "hidden": self.hidden, "depth": self.depth},
                        "factor": self.factor, "training": self.run_config(seed), **result,
                        "command": "glass train lowres"}  # fmt: skip
            result["export"] = str(export_weights(ema.state_dict(), self.export, manifest))
        write_text_atomic(run_dir / "result.json", json.dumps(result, indent=2))
        return result
