"""Figure text: config names and labels in words (``fid`` -> FID, ``glass(rho=0.4)`` -> GLASS (rho = 0.4),
``superres`` -> super-resolution) and titles wrapped where a reader would break them. Figures only:
tables and summaries keep the names the configs use."""

from __future__ import annotations

import re
import textwrap

__all__ = ["words", "label", "wrap", "COLUMN_WORDS", "VALUE_WORDS", "TASK_WORDS"]

COLUMN_WORDS = {
    "fid": "FID", "fid_inception": "Inception FID", "pearson": "Pearson r", "spearman": "Spearman ρ",
    "psnr": "PSNR (dB)", "ssim": "SSIM", "nfe": "NFE", "nfe_effective": "effective NFE",
    "energy": "energy distance", "consistency": "measurement consistency", "sliced_w2": "sliced W2",
    "target_accuracy": "target accuracy", "variant": "method", "steps": "inner steps M",
}  # fmt: skip
VALUE_WORDS = {"inpaint": "inpainting", "superres": "super-resolution", "denoise": "denoising",
               "glass": r"GLASS ($\rho_\mathrm{DDPM}$)"}  # a bare "glass" kernel: the default rho=ddpm
TASK_WORDS = {"posterior": "posterior sampling", "generate": "sampling", "value": "value estimation",
              "fk_steering": "Feynman-Kac steering", "best_of_n": "best-of-N", "guidance": "reward guidance",
              "align": "reward alignment", "inverse": "inverse problem"}  # fmt: skip
_TEXT = [  # (pattern, replacement) in order: rho / kappa as symbols, sampler names in capitals, x as ×
    (re.compile(r"\(ddpm\)"), r"($\\rho_\\mathrm{DDPM}$)"),  # a method's "(ddpm)": rho = rho_DDPM
    (re.compile(r"\b(?:rho_DDPM|ddpm)\^([\d.]+|kappa)"), r"$\\rho_\\mathrm{DDPM}^{\1}$"),
    (re.compile(r"\{kappa\}"), r"{\\kappa}"),
    (re.compile(r"\brho_DDPM\b"), r"$\\rho_\\mathrm{DDPM}$"),
    (re.compile(r"\brho\s*=\s*"), "ρ = "),
    (re.compile(r"\brho\b"), "ρ"),
    (re.compile(r"\bM=(\d)"), r"M = \1"),
    (re.compile(r"\b(ode|sde|glass|ddpm)\b"), lambda m: m.group(1).upper()),
    (re.compile(r"\b([A-Z]+)\("), r"\1 ("),
    (re.compile(r"\bgaussian\b"), "Gaussian"),
    (re.compile(r"\bV_t\b"), r"$V_t$"),
    (re.compile(r"(?<=\d)x\b|(?<= )x(?= \d)"), "×"),
]


def words(key: str) -> str:
    """A config key or column as words on a figure: ``task.t`` -> ``t``, ``label_agreement`` ->
    ``label agreement``, ``sampler.steps`` -> ``steps``, ``fid`` -> ``FID``."""
    key = str(key)
    return COLUMN_WORDS.get(key) or key.rsplit(".", 1)[-1].replace("_", " ")


def label(value) -> str:
    """A config value (a method, kernel or facet value) or a title as figure text: ``glass`` ->
    GLASS (rho_DDPM), ``glass(rho=0.4)`` -> GLASS (rho = 0.4), ``ddpm^0.5`` -> rho_DDPM^0.5,
    ``superres`` -> super-resolution (rho, kappa as symbols)."""
    text = str(value)
    if text in VALUE_WORDS:
        return VALUE_WORDS[text]
    for pattern, replacement in _TEXT:
        text = pattern.sub(replacement, text)
    return text


_KEEP = re.compile(r"\([^()]{1,32}\)|\b(?:Fig\.|Table|Pearson|model|scale) \S+|± \S+|\$[^$]*\$")


def wrap(text: str, width: int) -> str:
    """``text`` in lines of about ``width`` characters, never breaking inside a short parenthesis,
    "Fig. 7", "± se" or a formula (nor at a hyphen: FKS-GLASS stays whole)."""
    kept = _KEEP.sub(lambda m: m.group(0).replace(" ", "\u00a0"), text)
    return "\n".join(textwrap.wrap(kept, width=width, break_on_hyphens=False)).replace("\u00a0", " ")
