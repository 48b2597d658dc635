"""``glass``: the command-line experiment runner (Typer + Hydra compose API)."""

from __future__ import annotations

import contextlib
import errno
import math
import os
import re
import sys
import warnings

import typer
from typer.core import TyperGroup

from glass.config import RunFailed, UserError, groups


@contextlib.contextmanager
def _usage_errors_in_one_line(ctx=None):
    try:
        yield
    except Exception as e:
        names = {c.__name__ for c in type(e).__mro__}  # click's UsageError, or typer's vendored copy
        if "UsageError" not in names or "NoArgsIsHelpError" in names:  # `glass` alone: the help
            raise
        if e.ctx is not None:
            words = e.ctx.command_path.split()[1:]  # without the program's name
        else:
            words = [ctx.meta["glass.command"]] if ctx is not None and "glass.command" in ctx.meta else []
        message = " ".join(e.format_message().split()).rstrip(".")
        _fail(f"{message} (see {' '.join(['glass', *words])} --help)", e.exit_code)


class _Group(TyperGroup):
    """Usage errors (unknown command or option, a missing argument or option value) as one line
    ``error: ...`` with exit code 2, like every other bad input."""

    def make_context(self, info_name, args, parent=None, **extra):
        with _usage_errors_in_one_line():
            return super().make_context(info_name, args, parent=parent, **extra)

    def resolve_command(self, ctx, args):
        name, cmd, rest = super().resolve_command(ctx, args)
        ctx.meta["glass.command"] = name  # for the hint of an error that carries no context
        return name, cmd, rest

    def invoke(self, ctx):
        with _usage_errors_in_one_line(ctx):
            return super().invoke(ctx)


app = typer.Typer(
    cls=_Group,
    add_completion=False,
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
    rich_markup_mode="rich",
    help="GLASS Flows: transition sampling for flow and diffusion models (arXiv 2509.25170).\n\n"
    "Experiments compose [bold]model[/] x [bold]sampler[/] (ode | sde | ddpm | glass | compare) x "
    "[bold]task[/] x "
    "[bold]metric[/] from Hydra configs. Start with [cyan]glass run[/] (the default experiment), "
    "then override anything: [cyan]glass run task=posterior sampler=glass sampler.steps=8 task.t=0.2[/].",
)


def _show_version(value: bool) -> None:
    if value:
        from glass import __version__

        typer.echo(__version__)
        raise typer.Exit()


@app.callback()
def _main(
    version: bool = typer.Option(
        False, "--version", "-V", callback=_show_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """GLASS Flows: transition sampling for flow and diffusion models (arXiv 2509.25170)."""


def _run_help() -> str:
    try:
        lines = [f"  [bold]{g}[/]: {', '.join(opts)}" for g, opts in groups().items()]
    except UserError as e:
        lines = [f"  ({e})"]
    return (
        "Run one experiment, or a sweep with -m.\n\n"
        "OVERRIDES are Hydra overrides: [cyan]group=option[/] picks a config, [cyan]key=value[/] sets "
        "a value, [cyan]+key=value[/] adds one.\n\n"
        "Config groups and their options:\n\n" + "\n\n".join(lines) + "\n\n"
        "Common overrides: sampler.steps=8 (or a list with sampler=compare: sampler.steps=\\[2,8]) "
        "sampler.samplers=\\[sde,glass,ode,ddpm] sampler.rho=ddpm|0.4 "
        "sampler.solver=euler|midpoint|multistep task.t=0.2 task.points=256 task.n=1 task.transitions=5 "
        "reward.target=0 model.device=cpu|cuda (MNIST, pipelines) "
        "model.schedule=linear|vp|cosine (oracles) seed=0 logger=wandb out_dir=outputs\n\n"
        "Examples:\n\n"
        "  glass run        (MNIST posterior sampling at t = 0.2: SDE vs GLASS vs ODE)\n\n"
        "  glass run task=value reward.target=3 task.truth_n=16 task.truth_steps=20   (value estimation on "
        "MNIST; minutes on a CPU: its ground truth is truth_n x truth_steps network calls per point)\n\n"
        "  glass run model=gmm64 task=posterior sampler=glass sampler.steps=8 task.t=0.2\n\n"
        "  glass run -m model=gmm sampler=sde,glass sampler.steps=2,4,8\n\n"
        "  glass run -m model=gmm sampler=sde,glass sampler.steps=2,4,8 hydra/launcher=joblib\n\n"
        "  glass run --cfg task=generate sampler=ode               (check and print the composed config)\n\n"
        "Each run writes outputs/runs/<date>/<time>-<task>-<sampler>-<id>/ (config.yaml, metrics.json, "
        "samples.png); a sweep writes outputs/multirun/<task>-<hash>/ with one directory per job "
        "and summary.csv / summary.jsonl. Running the same sweep again resumes it (finished jobs are "
        "skipped). Launchers: hydra/launcher=basic|joblib|submitit_local|submitit_slurm, e.g. "
        "hydra/launcher=joblib hydra.launcher.n_jobs=4."
    )


def _fail(message: str, code: int = 2) -> None:
    from glass.config import shorten

    def short(m) -> str:  # no 100 kB echo of a value; a file the line points at is kept whole
        return m.group(0) if os.path.exists(m.group(0).strip("'\"(),;:")) else shorten(m.group(0))

    text = re.sub(r"\S{120,}", short, str(message).strip())
    typer.echo(f"error: {text.splitlines()[0] if text else 'failed'}", err=True)  # always one line
    raise typer.Exit(code)


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def _counts(row: dict) -> str:
    """Sample counts of the first row, for the table title (every FID is shown with them)."""
    parts = []
    if "fid_n_samples" in row:
        parts.append(f"FID: {row['fid_n_samples']} samples vs {row['fid_n_reference']} reference images")
    if "truth" in row:
        parts.append(
            f"{row.get('n_points', '?')} points, {row.get('n_samples', '?')} samples each, "
            f"truth: {row['truth']}"
        )
    return f" - {'; '.join(parts)}" if parts else ""


def results_table(rows: list[dict]):
    """One row per run; a metric with a noise floor is shown as 'value (floor)'."""
    from rich.markup import escape
    from rich.table import Table

    skip = {"job", "overrides", "seed", "wall_time_s", "kernel_time_s", "nfe", "sampler", "truth_cached"}
    skip |= {"n_points", "n_per_point", "n_samples", "fid_n_samples", "fid_n_reference", "truth"}
    skip |= {"network_calls", "truth_network_calls", "groups", "particles"}
    skip |= {k for r in rows for k in r if k.endswith("_se")}
    # swept parameters are in the run column already
    # (a column with the override's key but another value is a metric: reward=ink vs the reward column)
    overridden = {}
    for r in rows:
        for o in (r.get("overrides") or "").split():
            key, _, value = o.lstrip("+").partition("=")
            overridden.setdefault(key, set()).add(value)
    skip |= {k for k, vs in overridden.items() if all(str(r.get(k, v)) in vs for r in rows for v in vs)}
    skip |= {k for r in rows for k in r if k.endswith("_cfg")}
    keys = list(
        dict.fromkeys(
            k for r in rows for k in r if k not in skip and not k.endswith(("_floor", "_floor_std"))
        )
    )
    runs = len({r.get("job") for r in rows})
    title = f"results ({runs} runs)" if runs > 1 else f"results: {rows[0].get('overrides') or '(defaults)'}"
    table = Table(title=escape(f"{title}{_counts(rows[0])}"))
    if runs > 1:
        table.add_column("run")
    table.add_column("sampler")
    table.add_column("nfe", justify="right")
    for k in keys:
        table.add_column(f"{k} (floor)" if f"{k}_floor" in rows[0] else k, justify="right")
    per_kernel = all("kernel_time_s" in r for r in rows)
    table.add_column("sampling s" if per_kernel else "time s", justify="right")
    for r in rows:
        cells = [
            f"{_fmt(r[k])} ({_fmt(r[k + '_floor'])})"
            if f"{k}_floor" in r
            else f"{_fmt(r[k])} ± {_fmt(r[k + '_se'])}"
            if f"{k}_se" in r and math.isfinite(r[k + "_se"])  # one value: no error to show
            else _fmt(r.get(k, ""))
            for k in keys
        ]
        table.add_row(
            *([escape(r.get("overrides") or "(defaults)")] if runs > 1 else []),
            escape(r.get("sampler", "")),
            _fmt(r.get("nfe", "")),
            *cells,
            _fmt(r["kernel_time_s"] if per_kernel else r.get("wall_time_s", "")),
        )
    return table


@app.command(help=_run_help(), context_settings={"allow_extra_args": False, "ignore_unknown_options": True})
def run(
    overrides: list[str] | None = typer.Argument(
        None, help="Hydra overrides, e.g. sampler.steps=8", show_default=False
    ),
    multirun: bool = typer.Option(
        False, "-m", "--multirun", help="Sweep: one job per combination of comma-separated values."
    ),
    cfg: bool = typer.Option(
        False, "--cfg", help="Check the options (no model is loaded), print the composed config, exit."
    ),
    sweep_dir: str | None = typer.Option(
        None,
        "--sweep-dir",
        help="Sweep directory (default: outputs/multirun/<task>-<hash of the jobs>, so running the "
        "same sweep again resumes it: finished jobs are skipped).",
    ),
    fresh: bool = typer.Option(
        False, "--fresh", help="Start the sweep in a new directory instead of resuming the existing one."
    ),
) -> None:
    from rich.console import Console

    overrides = list(overrides or [])
    if cfg and overrides and overrides[0] in ("job", "hydra", "all"):  # Hydra's `--cfg job` spelling
        if overrides[0] == "hydra":
            _fail("--cfg hydra: glass sets Hydra's own config itself; --cfg (or --cfg job) prints the job's")
        overrides = overrides[1:]
    for o in overrides:
        if o.startswith("-"):
            _fail(f"unknown option {o!r}; see glass run --help")
    from glass.sweep import split_overrides

    overrides, hydra_overrides = split_overrides(overrides)
    if (hydra_overrides or sweep_dir is not None or fresh) and not multirun:
        what = hydra_overrides[0] if hydra_overrides else "--fresh" if sweep_dir is None else "--sweep-dir"
        _fail(f"{what} applies to sweeps only; add -m (glass run -m ...)")
    if sweep_dir is not None:
        _check_sweep_dir_option(sweep_dir)
    console = Console(stderr=True)

    done = _guarded(lambda: _print_configs(overrides, multirun) if cfg else _run_jobs(
        overrides, multirun, sweep_dir, fresh, hydra_overrides, console),
        SWEEP_INTERRUPTED if multirun else RUN_INTERRUPTED)  # fmt: skip
    if done is None:  # --cfg
        return
    base, rows = done
    from glass import distributed

    if distributed.rank() != 0:  # torchrun: rank 0 reports the merged run
        return
    _print_results(base, rows)


def _print_results(base, rows: list[dict]) -> None:
    """The results table and the output directory on stdout (one line if stdout cannot take them)."""
    from rich.console import Console

    out = Console()
    if not out.is_terminal:  # piped or captured: do not squeeze the table into 80 columns
        out = Console(width=200)
    try:
        if rows:
            out.print(results_table(rows))
        else:  # e.g. every job is being run by another copy of the sweep
            typer.echo("no finished jobs yet")
        typer.echo(f"outputs: {base}")
    except BrokenPipeError:
        raise
    except OSError as e:  # stdout on a full disk or a closed device: the results are saved anyway
        _fail(f"cannot print the results ({e.strerror or type(e).__name__}); they are saved in {base}", 1)


def _print_configs(overrides: list[str], multirun: bool) -> None:
    """``glass run --cfg``: the composed config of every job, each checked first (all of them before
    any is printed; no model is loaded: :func:`glass.runner.check_config`)."""
    from omegaconf import OmegaConf

    from glass.config import compose, expand_sweep
    from glass.runner import check_config

    configs = [compose(ov) for ov in (expand_sweep(overrides) if multirun else [overrides])]
    for c in configs:
        check_config(c)
    for c in configs:
        typer.echo(OmegaConf.to_yaml(c))


def _run_jobs(overrides, multirun, sweep_dir, fresh, hydra_overrides, console):
    """Validate every job before anything is written, then run them (live progress on stderr)."""
    from glass.experiment import prepare
    from glass.experiment import run as run_experiments

    jobs = prepare(overrides, multirun)
    target = None
    if multirun:
        from datetime import datetime
        from pathlib import Path

        from glass.sweep import default_sweep_dir

        target = Path(sweep_dir) if sweep_dir else default_sweep_dir(jobs)
        if fresh:
            target = Path(os.path.abspath(target))  # "." and ".." have no name of their own (links kept)
            target = target.with_name(f"{target.name}-{datetime.now():%Y%m%d-%H%M%S}")
    with _live(console) as (progress, announce):
        return run_experiments(
            jobs, multirun=multirun, progress=progress, sweep_dir=target,
            hydra_overrides=hydra_overrides, announce=announce,
        )  # fmt: skip


def _check_sweep_dir_option(sweep_dir: str) -> None:
    from glass.sweep import check_sweep_dir

    key = sweep_dir.split("=", 1)[0].lstrip("+~") if "=" in sweep_dir else ""
    if key and (key.split(".")[0].split("/")[0] in {*groups(), "seed", "out_dir", "hydra"}):
        _fail(f"--sweep-dir needs a directory, got the override {sweep_dir!r} (--sweep-dir DIR)")
    if not sweep_dir.strip():
        _fail("--sweep-dir needs a directory, got ''")
    _guarded(lambda: check_sweep_dir(sweep_dir))


@app.command(context_settings={"ignore_unknown_options": True})
def train(
    target: str = typer.Argument(
        ...,
        help="What to train: flow, classifier or lowres (conf/trainer/); an override such as "
        "prior=lowfreq trains the flow.",
    ),
    overrides: list[str] | None = typer.Argument(None, help="Hydra overrides, e.g. trainer.max_minutes=30"),
) -> None:
    """Train a shipped model (configs in conf/train.yaml and conf/trainer/).

    Checkpoints, the loss curve and samples go to outputs/train/TARGET/; training resumes from
    there. The final EMA weights and their manifest are exported to glass/assets/ (trainer.export).
    """
    from glass.experiment import train as run_training

    try:
        result = run_training(target, list(overrides or []))
    except (UserError, ValueError) as e:
        _fail(str(e))
    except KeyboardInterrupt:
        _fail("interrupted (the last checkpoint is kept; run the same command to resume)", 130)
    except Exception as e:  # not bad input: one line unless GLASS_DEBUG is set
        if os.environ.get("GLASS_DEBUG"):
            raise
        _fail(
            f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''} "
            "(set GLASS_DEBUG=1 for the traceback)",
            1,
        )
    typer.echo(" ".join(f"{k}={v}" for k, v in result.items()))


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def text_progress(echo, every: float = 10.0, clock=None):
    """Progress for a log (stdout not a terminal: CI, nohup, SLURM): ``progress(description, total)``
    returns an ``advance`` that prints ``description: k/total, elapsed H:MM:SS, ETA H:MM:SS`` after the
    first step, at most every ``every`` seconds after that, and at the last step."""
    import time

    clock = clock or time.monotonic

    def progress(description: str, total: int):
        start, state = clock(), {"done": 0, "printed": None}

        def advance() -> None:
            state["done"] += 1
            done, now = state["done"], clock()
            if done < total and state["printed"] is not None and now - state["printed"] < every:
                return
            state["printed"] = now
            elapsed = now - start
            eta = f", ETA {_duration(elapsed / done * (total - done))}" if done < total else ""
            echo(f"{description}: {done}/{total}, elapsed {_duration(elapsed)}{eta}")

        return advance

    return progress


@contextlib.contextmanager
def _live(console):
    """Progress on stderr for the duration of a run: bars with elapsed time and ETA on a terminal, a
    line now and then otherwise (:func:`text_progress`); yields (progress(description, total) ->
    advance, announce(text))."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    bars = Progress(
        TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), console=console, transient=True,
        disable=not console.is_terminal,
    )  # fmt: skip

    def announce(text: str) -> None:
        console.print(text, highlight=False, soft_wrap=True)

    if console.is_terminal:

        def progress(description: str, total: int):
            task_id = bars.add_task(description, total=total)
            return lambda: bars.advance(task_id)

    else:
        progress = text_progress(announce)

    with bars:
        yield progress, announce


SWEEP_INTERRUPTED = "finished jobs are kept; run the same command to resume"
RUN_INTERRUPTED = (
    "the unfinished run is kept as <run>.failed; a prompt-set run resumes with the same command"
)


def _guarded(fn, interrupted: str = SWEEP_INTERRUPTED):
    """Run ``fn``; bad input -> one line and exit 2, a run-time failure or a bug -> one line and exit 1
    (GLASS_DEBUG=1 raises), Ctrl-C -> ``interrupted`` and exit 130."""
    try:
        return fn()
    except UserError as e:
        _fail(str(e))
    except RunFailed as e:
        _fail(str(e), 1)
    except KeyboardInterrupt:
        _fail(f"interrupted ({interrupted})", 130)
    except Exception as e:  # noqa: BLE001
        if os.environ.get("GLASS_DEBUG"):
            raise
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
            _fail(
                f"no space left on device ({type(e).__name__}: {e}); unfinished runs are left as "
                "<dir>.failed or <dir>.partial, finished runs are intact; free some space and run the "
                "same command again",
                1,
            )
        text = str(e).strip()
        first = text.splitlines()[0] if text else ""
        where = getattr(e, "error_file", None)  # set by the runner when the run's error.txt holds it
        hint = f"; the traceback is in {where}" if where else " (set GLASS_DEBUG=1 for the traceback)"
        _fail(f"{type(e).__name__}: {first}{hint}", 1)


def _reproduce_help() -> str:
    try:
        from rich.markup import escape

        from glass.definitions import SCALES, load, names, scales_of

        lines = []
        for n in names():
            spec = load(n)
            extra = [s for s in scales_of(spec) if s not in SCALES]
            also = f" (also --scale {', '.join(extra)})" if extra else ""
            lines.append(f"  [bold]{n}[/]: {escape(spec['title'])}{escape(also)}")
    except UserError as e:
        lines = [f"  ({e})"]
    return (
        "Reproduce a figure or table of the paper: run its sweep (resumable: finished jobs are "
        "skipped) and write PNG plots and a markdown table to outputs/reproduce/NAME/SCALE/ "
        "(SCALE-<hash> when extra overrides change the results, so they never mix with the plain run; "
        "SCALE-<prompt file>-<model family>[-<hash>] over a prompt set; --fresh starts a new directory).\n\n"
        "Experiments (definitions in experiments/reproduce/):\n\n" + "\n\n".join(lines) + "\n\n"
        "--scale small runs on 2 CPU cores in minutes (MNIST and the Gaussian-mixture oracle); "
        "--scale large (where an experiment has it) runs the strongest shipped checkpoint at sizes that "
        "decide the paper's rankings (minutes on one GPU: add model.device=cuda); "
        "--scale paper uses the paper's sizes (GPU). Extra OVERRIDES apply to every job, e.g. "
        "model.device=cuda logger=wandb (W&B runs are grouped by experiment), or "
        "hydra/launcher=joblib hydra.launcher.n_jobs=4."
    )


@app.command(help=_reproduce_help(), context_settings={"ignore_unknown_options": True})
def reproduce(
    name: str = typer.Argument(..., help="Experiment name (see above)."),
    overrides: list[str] | None = typer.Argument(None, help="Overrides for every job", show_default=False),
    scale: str = typer.Option(
        "small", "--scale", help="small (CPU, minutes), large (GPU, minutes) or paper (the paper's sizes)"
    ),
    fresh: bool = typer.Option(False, "--fresh", help="Start a new directory instead of resuming."),
) -> None:
    from rich.console import Console

    from glass.sweep import split_overrides

    overrides = list(overrides or [])
    for o in overrides:
        if o.startswith("-"):
            _fail(f"unknown option {o!r}; see glass reproduce --help")
    overrides, hydra_overrides = split_overrides(overrides)
    console = Console(stderr=True)

    def work():
        from glass.reproduce import reproduce as run_reproduce

        with _live(console) as (progress, announce):
            return run_reproduce(
                name, scale, overrides, progress=progress, hydra_overrides=hydra_overrides, announce=announce,
                fresh=fresh,
            )

    base, rows, failures = _guarded(work)
    for f in sorted(base.glob(f"{name}*.md")):
        typer.echo(f.read_text())
    typer.echo(f"outputs: {base}")
    if failures:
        job, message = failures[0]
        _fail(f"{len(failures)} jobs failed, e.g. {job}: {message} (run the same command to retry)", 1)


@app.command()
def report(
    path: str = typer.Argument(
        ..., help="A sweep directory (outputs/multirun/... or outputs/reproduce/NAME/SCALE)"
    ),
) -> None:
    """Redraw the plots and markdown tables of a sweep from its finished jobs (nothing is recomputed)."""
    from pathlib import Path

    from glass.report import report as write_report
    from glass.sweep import damaged_jobs

    for f in _guarded(lambda: write_report(path)):
        typer.echo(str(f))
    for name, why in damaged_jobs(Path(path)).items():  # left out of the report: say so
        typer.echo(f"warning: {name}: damaged record ({why}), not in the report; run the sweep again to "
                   "compute it", err=True)  # fmt: skip


@app.command()
def prompts(
    path: str = typer.Argument(..., help="A prompt file: .txt, .jsonl (GenEval), .csv, .tsv (PartiPrompts)"),
    shards: int = typer.Option(1, "--shards", help="Print the task.prompt_range values of N shards."),
) -> None:
    """Check a prompt file (count on stderr; its reference images are files PIL reads) and print
    comma-separated task.prompt_range shards, e.g.
    glass run -m task.prompts=F task.prompt_range=$(glass prompts F --shards 4) hydra/launcher=..."""
    from glass.promptsets import shard_ranges
    from glass.tasks.prompts import PromptOptions

    def check():
        try:
            options = PromptOptions(path)
            n = len(options.records)
            return n, sum(bool(v) for v in options.images.values()), shard_ranges(n, shards)
        except ValueError as e:
            raise UserError(str(e).replace("shards must", "--shards must")) from None

    n, edits, ranges = _guarded(check)
    with_images = f" ({edits} with reference images)" if edits else ""
    typer.echo(f"{n} prompts{with_images} in {path}", err=True)
    typer.echo(",".join(ranges))


@app.command()
def version() -> None:
    """Print the package version."""
    from glass import __version__

    typer.echo(__version__)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """glass's own warnings (e.g. a sampler option that does not apply) as one ``warning:`` line;
    anything else as Python prints it."""
    if category is UserWarning and os.path.abspath(filename).startswith(_PACKAGE):
        print(f"warning: {message}", file=file or sys.stderr)
    else:
        _default_show(message, category, filename, lineno, file, line)


_PACKAGE = os.path.dirname(os.path.abspath(__file__)) + os.sep
_default_show = warnings.showwarning


def main() -> None:
    warnings.showwarning = _show_warning
    try:
        app()
    except BrokenPipeError:  # e.g. glass run --cfg | head
        sys.exit(0)
    finally:
        warnings.showwarning = _default_show


if __name__ == "__main__":
    main()
