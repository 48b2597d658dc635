"""Figure text: config names and labels in words (``fid`` -> FID, ``glass(rho=0.4)`` -> GLASS (rho = 0.4),
``superres`` -> super-resolution) and titles wrapped where a reader would break them. For figures and
headings: table cells and columns keep the names the configs use (copyable overrides)."""

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
_RHO_DDPM = r"\rho_\mathrm{DDPM}"


def _power(m) -> str:
    exponent = r"\kappa" if m.group(1) == "kappa" else m.group(1)
    return f"${_RHO_DDPM}^{{{exponent}}}$"


_TEXT = [  # (pattern, replacement) in order, applied outside formulas only: rho / kappa as symbols,
    # sampler names in capitals, "x" as ×
    (re.compile(r"\(ddpm\)"), lambda m: f"(${_RHO_DDPM}$)"),  # a method's "(ddpm)": rho = rho_DDPM
    (re.compile(r"\brho\s*=\s*ddpm\b(?!\^)"), lambda m: f"${_RHO_DDPM}$"),
    (re.compile(r"\b(?:rho_DDPM|ddpm)\^(-?\d+(?:\.\d+)?(?:e-?\d+)?|kappa)"), _power),
    (re.compile(r"\brho_DDPM\b"), lambda m: f"${_RHO_DDPM}$"),
    (re.compile(r"(?<!\\)\b(rho|kappa)\s*=\s*"), lambda m: {"rho": "ρ", "kappa": "κ"}[m.group(1)] + " = "),
    (re.compile(r"(?<!\\)\brho\b"), "ρ"),
    (re.compile(r"(?<!\\)\bkappa\b"), "κ"),
    (re.compile(r"\bM=(\d)"), r"M = \1"),
    (re.compile(r"(?<![\w/=.\\-])(ode|sde|glass|ddpm)(?![\w/=])"), lambda m: m.group(1).upper()),
    (re.compile(r"\b(GLASS|SDE|ODE|DDPM)\("), r"\1 ("),
    (re.compile(r"\bgaussian\b"), "Gaussian"),
    (re.compile(r"\bV_t\b"), lambda m: "$V_t$"),
    (re.compile(r"(?<=\d)x\b|(?<= )x(?= \d)"), "×"),
]
_MATH = re.compile(r"(\$[^$]*\$)")  # a formula: kept as written (split() puts them at odd indices)


def words(key: str) -> str:
    """A config key or column as words on a figure: ``task.t`` -> ``t``, ``label_agreement`` ->
    ``label agreement``, ``sampler.steps`` -> ``steps``, ``fid`` -> ``FID``."""
    key = str(key)
    return COLUMN_WORDS.get(key) or key.rsplit(".", 1)[-1].replace("_", " ")


def label(value) -> str:
    """A config value (a method, kernel or facet value) or a title as figure text: ``glass`` ->
    GLASS (rho_DDPM), ``glass(rho=0.4)`` -> GLASS (rho = 0.4), ``ddpm^0.5`` -> rho_DDPM^0.5,
    ``superres`` -> super-resolution (rho, kappa as symbols). Formulas already written (``$...$``)
    are kept as they are."""
    text = str(value)
    if text in VALUE_WORDS:
        return VALUE_WORDS[text]
    for pattern, replacement in _TEXT:
        parts = _MATH.split(text)
        text = "".join(part if i % 2 else pattern.sub(replacement, part) for i, part in enumerate(parts))
    return text


_KEEP = re.compile(r"\([^()]{1,32}\)|\b(?:Fig\.|Table|Pearson|model|scale) \S+|± \S+|\$[^$]*\$")


def wrap(text: str, width: int) -> str:
    """``text`` in lines of about ``width`` characters, never breaking inside a short parenthesis,
    "Fig. 7", "± se" or a formula (nor at a hyphen: FKS-GLASS stays whole)."""
    kept = _KEEP.sub(lambda m: m.group(0).replace(" ", "\u00a0"), text)
    lines = textwrap.wrap(kept, width=width, break_on_hyphens=False, break_long_words=False)
    return "\n".join(lines).replace("\u00a0", " ")
