"""Training of the MNIST classifier (reward model and FID feature extractor).

Cross-entropy with AdamW, random +-2 pixel shifts, ``epochs`` passes over the 50k training split;
validation accuracy after every epoch on the 10k validation split, the final test accuracy on the 10k
test split (``eval_images``: only the first N images of both, for smoke runs). Resumes from
``<run_dir>/last.pt``; ``export`` writes the weights and a manifest.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from glass.data import load_mnist
from glass.files import write_text_atomic
from glass.models.mnist import Classifier, to_data
from glass.train.common import (
    Progress,
    Trainer,
    atomic_save,
    check_resume_config,
    export_weights,
    load_resume,
    save_losses,
)

__all__ = ["ClassifierTrainer", "accuracy"]


@torch.inference_mode()
def accuracy(net: Classifier, images: torch.Tensor, labels: torch.Tensor, batch: int = 1000) -> float:
    """Top-1 accuracy of ``net`` (in eval mode) on [0, 1] ``images``."""
    was_training = net.training
    net.eval()
    correct = sum(
        int((net(to_data(images[i : i + batch])).argmax(1) == labels[i : i + batch]).sum())
        for i in range(0, len(images), batch)
    )
    net.train(was_training)
    return correct / len(images)


def _shift(x: torch.Tensor, gen: torch.Generator, max_shift: int = 2) -> torch.Tensor:
    """Random translation by up to ``max_shift`` pixels (one shift per batch, cheap)."""
    dx, dy = (int(v) for v in torch.randint(-max_shift, max_shift + 1, (2,), generator=gen))
    return torch.roll(F.pad(x, (max_shift,) * 4, value=-1.0), (dy, dx), (2, 3))[
        :, :, max_shift : max_shift + 28, max_shift : max_shift + 28
    ]


class ClassifierTrainer(Trainer):
    name = "classifier"

    def __init__(
        self,
        width: int = 24,
        hidden: int = 128,
        batch_size: int = 128,
        lr: float = 1e-3,
        epochs: int = 5,
        max_minutes: float = 30.0,
        max_steps: int | None = None,
        resume: bool = True,
        export: str | None = "glass/assets/mnist_classifier",
        threads: int | None = None,
        eval_images: int | None = None,
    ):
        if eval_images is not None and (
            isinstance(eval_images, bool) or not isinstance(eval_images, int) or not 1 <= eval_images <= 10000
        ):
            raise ValueError(
                f"trainer.eval_images must be an integer in [1, 10000] or null, got {eval_images!r}"
            )
        self.eval_images = eval_images
        for key, v in {"width": width, "hidden": hidden, "batch_size": batch_size, "epochs": epochs}.items():
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"trainer.{key} must be an integer >= 1, got {v!r}")
        if isinstance(max_minutes, bool) or not (isinstance(max_minutes, (int, float)) and max_minutes > 0):
            raise ValueError(f"trainer.max_minutes must be > 0, got {max_minutes!r}")
        self.check_common(resume, threads, lr, export=export)
        if batch_size > 50000:
            raise ValueError(
                f"trainer.batch_size must be at most 50000 (the training split), got {batch_size}"
            )
        self.width, self.hidden, self.batch_size, self.lr, self.epochs = (
            width,
            hidden,
            batch_size,
            float(lr),
            epochs,
        )
        if max_steps is not None and (
            isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1
        ):
            raise ValueError(f"trainer.max_steps must be an integer >= 1 or null, got {max_steps!r}")
        self.max_minutes, self.max_steps = float(max_minutes), max_steps
        self.resume, self.export, self.threads = resume, export, threads

    RESUME_KEYS = ("width", "hidden", "batch_size", "lr", "epochs", "max_steps")

    def __call__(
        self, run_dir: Path, seed: int = 0, data_root: str | None = None, download: bool = True, console=None
    ) -> dict:
        ckpt = self._start(run_dir)
        x_train, y_train = load_mnist("train", data_root, download)
        x_valid, y_valid = load_mnist("valid", data_root, download)
        x_valid, y_valid = x_valid[: self.eval_images], y_valid[: self.eval_images]  # None: all 10k
        torch.manual_seed(seed)
        net = Classifier(self.width, self.hidden)
        opt = torch.optim.AdamW(net.parameters(), lr=self.lr)
        gen = torch.Generator().manual_seed(seed)
        steps_per_epoch = len(x_train) // self.batch_size
        total = min(steps_per_epoch * self.epochs, self.max_steps or steps_per_epoch * self.epochs)
        step, losses, history, elapsed = 0, [], [], 0.0
        stored = None  # the resumed checkpoint's settings
        if self.resume and ckpt.is_file():
            state = load_resume(ckpt, ("net", "opt", "gen", "rng", "step", "losses", "history", "elapsed"))
            check_resume_config(state.get("config"), self.run_config(seed), self.RESUME_KEYS, ckpt)
            stored = state.get("config") or {}
            net.load_state_dict(state["net"])
            opt.load_state_dict(state["opt"])
            gen.set_state(state["gen"])
            torch.set_rng_state(state["rng"])  # dropout masks continue where they stopped
            step, losses, history = state["step"], state["losses"], state["history"]
            elapsed = state["elapsed"]

        def save():
            state = {"net": net.state_dict(), "opt": opt.state_dict(), "gen": gen.get_state()}
            state |= {"rng": torch.get_rng_state(), "step": step, "losses": losses, "history": history}
            atomic_save({**state, "elapsed": elapsed, "config": self.run_config(seed)}, ckpt)
            save_losses(losses, run_dir, f"classifier, {step:,} steps")

        self.check_not_finished(ckpt, step, total, elapsed, stored)
        start = time.perf_counter() - elapsed
        net.train()
        with Progress(console) as bar:
            advance = bar.task("training classifier", total, step)
            while step < total and time.perf_counter() - start < self.max_minutes * 60:
                epoch = step // steps_per_epoch
                order = torch.randperm(
                    len(x_train), generator=torch.Generator().manual_seed(seed * 1000 + epoch)
                )
                i = step % steps_per_epoch
                idx = order[i * self.batch_size : (i + 1) * self.batch_size]
                x = _shift(to_data(x_train[idx]), gen)
                loss = F.cross_entropy(net(x), y_train[idx])
                for group in opt.param_groups:  # cosine decay over the run
                    group["lr"] = (
                        self.lr * 0.5 * (1 + torch.cos(torch.tensor(torch.pi * step / total)).item())
                    )
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                step += 1
                losses.append(loss.item())
                advance(f"training classifier  loss {sum(losses[-50:]) / len(losses[-50:]):.4f}")
                elapsed = time.perf_counter() - start
                if step % steps_per_epoch == 0 or step == total:
                    history.append({"step": step, "valid_accuracy": accuracy(net, x_valid, y_valid)})
                    save()
        if not history or history[-1]["step"] != step:  # stopped mid-epoch by the time budget
            history.append({"step": step, "valid_accuracy": accuracy(net, x_valid, y_valid)})
        save()
        x_test, y_test = load_mnist("test", data_root, download)
        x_test, y_test = x_test[: self.eval_images], y_test[: self.eval_images]
        result = {
            "steps": step,
            "epochs": round(step / steps_per_epoch, 2),
            "valid_accuracy": history[-1]["valid_accuracy"],
            "test_accuracy": accuracy(net, x_test, y_test),
            "eval_images": len(x_test),
            "minutes": round((time.perf_counter() - start) / 60, 2),
        }
        if self.export:
            result["export"] = str(self._export(net, result, seed))
        write_text_atomic(run_dir / "result.json", json.dumps(result, indent=2))
        return result

    def _export(self, net: Classifier, result: dict, seed: int) -> Path:
        manifest = {
            "model": "mnist CNN classifier on data-space inputs z in [-1, 1]",
            "architecture": net.config,
            "training": self.run_config(seed),
            **{k: v for k, v in result.items() if k != "export"},
            "command": "glass train classifier",
        }
        return export_weights(net.state_dict(), self.export, manifest)
