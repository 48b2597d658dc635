"""Prompt-set runs at benchmark scale: one prompt at a time with its own seed, so a killed run resumes
at the first prompt without a record (finished files untouched), and the prompts can be split over
torchrun ranks or task.prompt_range array jobs whose merged outputs equal one process's."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from glass.cli import app

EXAMPLE = Path(__file__).resolve().parents[1] / "experiments" / "prompts" / "example.jsonl"
runner = CliRunner()


@pytest.fixture(scope="module")
def tiny_sd(tmp_path_factory) -> Path:
    from tests.tiny_pipes import PIPES

    root = tmp_path_factory.mktemp("pipes") / "tiny-sd"
    PIPES["sd"]().save_pretrained(root)
    return root


def fk_args(root: Path, out: Path) -> list[str]:
    """FK steering with GLASS on a tiny SD pipeline over the example prompt file (6 prompts)."""
    return ["model=sd", f"model.model_id={root}", "model.device=cpu", "model.dtype=float32",
            "model.height=32", "model.width=32", f"out_dir={out}", f"task.prompts={EXAMPLE}",
            "task.per_prompt=2", "task.transitions=2", "task=fk_steering", "reward=ink", "task.particles=2",
            "sampler=compare", "sampler.samplers=[glass,sde]", "sampler.steps=[1]",
            "task.save_latents=true"]  # fmt: skip


@pytest.fixture(scope="module")
def single(tiny_sd, tmp_path_factory) -> Path:
    """The reference: the whole prompt set in one process (torch threads as under torchrun)."""
    out = tmp_path_factory.mktemp("single")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled"}
    res = subprocess.run([sys.executable, "-m", "glass", "run", *fk_args(tiny_sd, out)], env=env,
                         capture_output=True, text=True, timeout=600)  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    (run,) = (out / "promptsets").iterdir()
    return run


def lines(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "images.jsonl").read_text().splitlines()]


def rows(run: Path) -> list[dict]:
    """The per-method rows without their sampling time (the one number that differs between runs)."""
    return [{k: v for k, v in r.items() if k != "kernel_time_s"}
            for r in json.loads((run / "metrics.json").read_text())["rows"]]  # fmt: skip


def assert_same_outputs(a: Path, b: Path) -> None:
    """images.jsonl, every PNG and latent file byte for byte, the per-method rows and the gallery."""
    assert lines(a) == lines(b) and len(lines(a)) == 6 * 2 * 2  # prompts x per_prompt x methods
    files = {line["path"] for line in lines(a)} | {line["latents"] for line in lines(a)}
    assert all((a / f).read_bytes() == (b / f).read_bytes() for f in files)
    assert rows(a) == rows(b)
    assert (a / "index.html").read_text() == (b / "index.html").read_text()


def test_a_prompt_set_run_is_one_prompt_at_a_time_with_its_own_seed(single):
    """Every prompt has its record, its seed depends on its index only, and the per-method row is the
    mean over prompts of the per-image steered rewards (with their standard error and count)."""
    from glass.noise import indexed_seed as prompt_seed

    got = lines(single)
    assert {line["prompt_seed"] for line in got if line["prompt_index"] == 3} == {prompt_seed(0, 3)}
    assert len({prompt_seed(0, i) for i in range(6)} | {prompt_seed(1, 0)}) == 7
    assert sorted(p.name for p in (single / "prompts").iterdir()) == [f"{i:05d}.json" for i in range(6)]
    for row in rows(single):
        mine = [line["reward"] for line in got if line["method"] == row["sampler"]]
        assert row["reward_n"] == 12 and row["prompts"] == 6
        assert row["reward"] == pytest.approx(sum(mine) / len(mine), rel=1e-12)


def test_the_gallery_is_a_prompts_by_methods_table_of_existing_images(single):
    """index.html parsed: a header row with the methods, one row per prompt, each cell the prompt's
    images of that method with their rewards, every src a relative path to an existing PNG."""
    from html.parser import HTMLParser

    class Page(HTMLParser):
        def __init__(self):
            super().__init__()
            self.rows, self.srcs, self.text = [], [], []

        def handle_starttag(self, tag, attrs):
            if tag == "tr":
                self.rows.append([])
            elif tag in ("td", "th"):
                self.rows[-1].append(0)
            elif tag == "img":
                self.rows[-1][-1] += 1
                self.srcs.append(dict(attrs)["src"])

        def handle_data(self, data):
            self.text.append(data)

    page = Page()
    page.feed((single / "index.html").read_text())
    header, *body = page.rows
    assert len(header) == 1 + 2 and len(body) == 6  # prompt column + 2 methods; 6 prompts
    assert all(cells == [0, 2, 2] for cells in body)  # per_prompt images in each method's cell
    assert len(page.srcs) == 24
    assert all(not Path(s).is_absolute() and (single / s).is_file() for s in page.srcs)
    assert "glass M=1" in page.text and sum("reward 0." in t for t in page.text) == 24


def test_a_killed_run_resumes_at_the_first_prompt_without_a_record(tiny_sd, single, tmp_path, monkeypatch):
    """The run dies while writing its fourth prompt; the same command then computes prompts 3-5 only:
    the first three prompts' files are not touched, and everything equals an uninterrupted run."""
    import torch

    import glass.promptrun as promptrun

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the reference
    real, calls, dies = promptrun.write_prompt, [], [True]

    def spy(*args, **kwargs):
        calls.append(args[2].index)
        if dies[0] and len(calls) == 4:
            raise KeyboardInterrupt  # a killed run (Ctrl-C); SIGKILL leaves .partial, resumed the same way
        return real(*args, **kwargs)

    monkeypatch.setattr(promptrun, "write_prompt", spy)
    try:
        res = runner.invoke(app, ["run", *fk_args(tiny_sd, tmp_path)])
        assert res.exit_code != 0
        (failed,) = (tmp_path / "promptsets").iterdir()
        assert failed.name.endswith(".failed") and len(list((failed / "prompts").iterdir())) == 3
        before = {p: p.stat().st_mtime_ns for p in failed.rglob("*.png")}
        calls.clear()
        dies[0] = False
        res = runner.invoke(app, ["run", *fk_args(tiny_sd, tmp_path)])
        assert res.exit_code == 0, res.output
    finally:
        torch.set_num_threads(threads)
    assert calls == [3, 4, 5] and "resuming" in res.stderr
    (run,) = (tmp_path / "promptsets").iterdir()
    assert run.name == single.name  # the directory is named by the config's hash
    assert all((run / p.relative_to(failed)).stat().st_mtime_ns == t for p, t in before.items())
    assert_same_outputs(run, single)
    again = runner.invoke(app, ["run", *fk_args(tiny_sd, tmp_path)])  # finished: not computed again
    assert again.exit_code == 0 and "is finished" in again.stderr
    changed = runner.invoke(app, ["run", *fk_args(tiny_sd, tmp_path), "seed=1"])  # a new config: new dir
    assert changed.exit_code == 0 and len(list((tmp_path / "promptsets").iterdir())) == 2


def test_torchrun_shards_the_prompts_over_ranks_and_rank_0_merges(tiny_sd, single, tmp_path):
    """torchrun --nproc_per_node=2 -m glass run ... on CPUs (gloo): each rank computes every other
    prompt; the merged outputs equal the single process's."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "glass",
           "run", *fk_args(tiny_sd, tmp_path)]  # fmt: skip
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    (run,) = (tmp_path / "promptsets").iterdir()
    assert run.name == single.name and res.stdout.count("outputs:") == 1  # rank 0 reports
    ranks = [json.loads((run / "prompts" / f"{i:05d}.json").read_text())["rank"] for i in range(6)]
    assert ranks == [0, 1, 0, 1, 0, 1]
    assert_same_outputs(run, single)


def test_prompt_range_shards_on_submitit_merge_into_the_single_run(tiny_sd, single, tmp_path):
    """Two task.prompt_range array jobs on the submitit launcher (submitit_local: the SLURM code path
    in local processes); glass report merges them into the outputs of one process."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled"}
    shards = ["task.prompt_range=0:4,4:6", "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=10"]
    cmd = [sys.executable, "-m", "glass", "run", "-m", *fk_args(tiny_sd, tmp_path), *shards]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    (sweep,) = (tmp_path / "multirun").iterdir()
    rep = runner.invoke(app, ["report", str(sweep)])
    assert rep.exit_code == 0, rep.output
    (merged,) = (sweep / "merged").iterdir()
    assert_same_outputs(merged, single)
    meta = json.loads((merged / "metrics.json").read_text())
    assert meta["prompts"] == meta["file_prompts"] == 6 and "6 of the file's 6 prompts" in rep.output + (
        sweep / "summary.md").read_text()  # fmt: skip
    assert json.loads((merged / "metrics.json").read_text())["shards"] == sorted(
        p.name for p in sweep.iterdir() if (p / "metrics.json").is_file()
    )
    assert "merged" in (sweep / "summary.md").read_text() and (sweep / "gallery.html").is_file()
    # a folder an earlier merge left (a prompt it held) is gone after the next: GenEval would score it
    stale = next(p for p in (merged / "geneval").iterdir() if p.is_dir()) / "99999"
    stale.mkdir()
    (stale / "metadata.jsonl").write_text("{}\n")
    assert runner.invoke(app, ["report", str(sweep)]).exit_code == 0
    assert not stale.exists() and not [p for p in (sweep / "merged").iterdir() if p.name.startswith(".")]
    assert_same_outputs(merged, single)
    # one shard not finished (its metrics.json not yet written): the other alone is merged, and the
    # report says two prompts are missing (it was left as it was, so nothing said so)
    (late,) = [p for p in sweep.iterdir() if (p / "prompts" / "00005.json").is_file()]
    (late / "metrics.json").rename(late / "metrics.json.later")
    rep = runner.invoke(app, ["report", str(sweep)])
    assert rep.exit_code == 0 and "4 of the file's 6 prompts" in (sweep / "summary.md").read_text()
    meta = json.loads((merged / "metrics.json").read_text())
    assert meta["prompts"] == 4 and meta["shards"] == sorted(
        p.name for p in sweep.iterdir() if (p / "metrics.json").is_file()
    )


def test_a_sweep_gallery_keeps_prompts_of_two_files_apart(tmp_path):
    """Two prompt files in one sweep: prompt 0 of each has its own row, with its own text (rows were
    keyed by the index alone, so one row mixed both files' images under one file's prompt)."""
    from glass.outputs import gallery

    rows = [{"prompt_index": 0, "prompt": "a blue car", "method": "m", "path": "a/0.png"},
            {"prompt_index": 0, "prompt": "a red cube", "method": "m", "path": "b/0.png"},
            {"prompt_index": 1, "prompt": "a dog", "method": "m", "path": "a/1.png"}]  # fmt: skip
    gallery(tmp_path, rows, ["m"], "g.html")
    page = (tmp_path / "g.html").read_text()
    assert page.count("<tr><th>0: ") == 2 and "0: a blue car</th><td><figure><img src=\"a/0.png\"" in page
    assert "0: a red cube</th><td><figure><img src=\"b/0.png\"" in page and page.count("<tr>") == 4


def test_wandb_gets_an_image_table(tiny_sd, tmp_path, monkeypatch):
    """logger=wandb (offline): the run logs one table with a row per image and its rewards."""
    import wandb

    logged = []

    class Run:
        summary: dict = {}

        def log(self, metrics):
            logged.append(metrics)

        def finish(self):
            pass

    monkeypatch.setattr(wandb, "init", lambda **kwargs: Run())
    args = [*fk_args(tiny_sd, tmp_path), "task.prompt_range=0:2", "logger=wandb"]
    res = runner.invoke(app, ["run", *args])
    assert res.exit_code == 0, res.output
    tables = {k: v for m in logged for k, v in m.items() if k.startswith("images/")}
    assert sorted(tables) == ["images/glass M=1", "images/sde M=1"]  # one table per method
    for table in tables.values():
        assert isinstance(table, wandb.Table) and len(table.data) == 2 * 2  # prompts x per_prompt
        assert table.columns[:5] == ["prompt_index", "prompt", "repeat", "image", "reward"]
        assert all(isinstance(row[3], wandb.Image) and 0 <= row[4] <= 1 for row in table.data)
    from glass.loggers import _image_tables

    (run,) = (tmp_path / "promptsets").iterdir()
    parts = list(_image_tables(run, run / "images.jsonl", rows=3))  # past W&B's rows a table: parts
    assert [name for name, _ in parts] == ["images/glass M=1/0", "images/glass M=1/1", "images/sde M=1/0",
                                           "images/sde M=1/1"]  # fmt: skip


def test_reproduce_table1_on_a_prompt_set_with_a_tiny_flux(tmp_path):
    """glass reproduce table1-fks model=flux task.prompts=...: the paper's Table 1 grid (flow, BoN and
    FKS with ODE / SDE / GLASS) on a prompt set, steering a CLIP score and scoring every output by a
    held-out CLIP score (tiny random FLUX and CLIP from configs): one job per method, the table of
    every reward per method, and one gallery of all methods."""
    from tests.test_promptsets import tiny_clip_dir
    from tests.tiny_pipes import PIPES

    flux, clip = tmp_path / "tiny-flux", tiny_clip_dir(tmp_path / "clip")
    PIPES["flux"]().save_pretrained(flux)
    res = runner.invoke(app, [
        "reproduce", "table1-fks", "--scale", "small", "model=flux", f"model.model_id={flux}",
        "model.device=cpu", "model.dtype=float32", "model.height=32", "model.width=32",
        f"task.prompts={EXAMPLE}", "task.prompt_range=0:2", "task.per_prompt=2", "task.transitions=2",
        "reward=clip", f"reward.model={clip}", "metric.rewards=[clip]", f"metric.configs.clip.model={clip}",
        f"out_dir={tmp_path / 'out'}",
    ])  # fmt: skip
    assert res.exit_code == 0, res.output
    (base,) = (tmp_path / "out" / "reproduce" / "table1-fks").glob("small-example-flux-*")  # + the options
    table = (base / "table1-fks.md").read_text()
    variants = ["flow (ODE, 1 sample)", "BoN-ODE", "BoN-SDE", "BoN-GLASS (ddpm)", "FKS-SDE",
                "FKS-GLASS (ddpm)", "FKS-GLASS (rho=0.4)"]  # fmt: skip
    for value in ("**reward**", "**clip**", "**diversity**"):
        section = table.split(value)[1].split("**")[0]
        assert all(f"| {v} |" in section for v in variants), section
    assert "target_accuracy" not in table and "imagereward" not in table  # no values: no table
    page = (base / "gallery.html").read_text()
    assert page.count("<img") == 7 * 2 * 2 and all(v in page for v in variants)
    assert "the images of the prompt set" in table and "example.jsonl" in table  # not the MNIST text
    summary = [json.loads(line) for line in (base / "summary.jsonl").read_text().splitlines()]
    assert len(summary) == 7 and all(r["clip_n"] == 4 and r["prompts"] == 2 for r in summary)
    # at equal NFE per output: particles x K x M for every method but the single flow sample
    assert {r["nfe_per_sample"] for r in summary if r["variant"] != variants[0]} == {8 * 2 * 2}


def test_a_failed_sweep_job_resumes_from_its_records(tiny_sd, tmp_path, monkeypatch):
    """In a sweep the launcher makes <job>.partial before the job starts; a job that failed after three
    prompts still resumes from its .failed records (and the prompt file's content, not its path, names
    the run: an edited file is computed afresh)."""
    import glass.promptrun as promptrun

    real, calls, dies = promptrun.write_prompt, [], [True]

    def spy(*args, **kwargs):
        calls.append(args[2].index)
        if dies[0] and len(calls) == 4:
            raise RuntimeError("node lost")
        return real(*args, **kwargs)

    monkeypatch.setattr(promptrun, "write_prompt", spy)
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a cat\na dog\na bird\na fish\na cow\n")
    args = ["run", "-m", *fk_args(tiny_sd, tmp_path), f"task.prompts={prompts}", "task.per_prompt=1",
            "task.save_latents=false", "seed=0"]  # fmt: skip
    res = runner.invoke(app, args)
    assert res.exit_code != 0 and "node lost" in res.stderr
    calls.clear()
    dies[0] = False
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    assert calls == [3, 4]
    prompts.write_text("a cat\na dog\na bird\na fish\na horse\n")  # same path, new content
    calls.clear()
    res = runner.invoke(app, args)
    assert res.exit_code == 0 and calls == [0, 1, 2, 3, 4]


def test_guidance_and_metric_checks_on_a_prompt_set(tiny_sd, tmp_path):
    """Guidance with a differentiable reward (a tiny CLIP score) runs on a pipeline over a prompt set;
    a metric that is not computed per prompt (e.g. curvature) is refused in one line."""
    from tests.test_promptsets import tiny_clip_dir

    clip = tiny_clip_dir(tmp_path / "clip")
    base = [*fk_args(tiny_sd, tmp_path)[:8], "task.per_prompt=1", "task.prompt_range=0:2",
            "task.transitions=2"]  # fmt: skip
    guided = ["task=guidance", "reward=clip", f"reward.model={clip}", "sampler=glass", "sampler.steps=2",
              "task.guidance.t_lo=0.01", "task.guidance.t_hi=0.99"]  # fmt: skip
    res = runner.invoke(app, ["run", *base, *guided])
    assert res.exit_code == 0, res.output
    (run,) = (tmp_path / "promptsets").iterdir()
    row = rows(run)[0]
    assert row["grad_evals"] > 0 and row["reward_n"] == 2 and len(lines(run)) == 2
    bad = runner.invoke(app, ["run", *base, "task=generate", "metric=curvature"])
    assert bad.exit_code == 2 and bad.stderr.count("\n") == 1
    assert "not computed on a prompt set" in bad.stderr


def test_a_second_copy_of_a_running_prompt_set_is_refused_and_nothing_is_touched(
    tiny_sd, tmp_path, monkeypatch
):
    """While one process holds a prompt set's claim, the same command in another process exits 2 with
    one line naming the run and writes nothing (two copies computed into one .partial, and the
    second's failure replaced the first's records); once free, the run resumes from a .partial left
    by torchrun with its error.txt, which the finished run no longer carries."""
    import contextlib

    import glass.runner
    from glass.claims import claim

    args = [*fk_args(tiny_sd, tmp_path), "task.prompt_range=0:1"]
    held = []

    @contextlib.contextmanager
    def another_process_holds_it(path):
        with claim(path) as first, claim(path) as second:  # two open files: flock sees two holders
            held.append((first, second, path))
            yield second

    monkeypatch.setattr(glass.claims, "claim", another_process_holds_it)
    res = runner.invoke(app, ["run", *args])
    assert res.exit_code == 2 and held and held[0][:2] == (True, False)
    lines = res.stderr.strip().splitlines()  # the pipeline's loading bars, then one line
    assert [x for x in lines if x.startswith("error: ")] == lines[-1:] and "Traceback" not in res.stderr
    assert "example-fk_steering-" in lines[-1] and "is being computed by another process" in lines[-1]
    assert list((tmp_path / "promptsets").iterdir()) == []  # no run directory; the lock gone with its folder
    monkeypatch.undo()

    name = held[0][2].stem
    partial = tmp_path / "promptsets" / f"{name}.partial"
    partial.mkdir(parents=True)
    (partial / "error.txt").write_text("a rank failed\n")
    res = runner.invoke(app, ["run", *args])
    assert res.exit_code == 0, res.output
    run = tmp_path / "promptsets" / name
    assert (run / "images.jsonl").is_file() and not (run / "error.txt").exists()
    assert sorted(p.name for p in (tmp_path / "promptsets").iterdir()) == [name]  # no .claims left


def test_a_running_prompt_set_is_refused_before_its_model_loads(tiny_sd, tmp_path, monkeypatch):
    """The second copy's refusal comes before the weights load (minutes for a real pipeline): the
    claim is looked at as soon as the config is composed."""
    import glass.runner
    from glass.claims import claim, claim_path
    from glass.config import compose

    args = [*fk_args(tiny_sd, tmp_path), "task.prompt_range=0:1"]
    base = glass.runner.promptset_dir(compose(args))
    loads, real = [], glass.runner._model
    monkeypatch.setattr(glass.runner, "_model", lambda *a: loads.append(a) or real(*a))
    with claim(claim_path(base.parent, base.name)) as mine:  # another open file: flock sees 2 holders
        assert mine
        res = runner.invoke(app, ["run", *args])
    assert res.exit_code == 2 and loads == [] and res.stderr.count("\n") == 1
    assert res.stderr.startswith(f"error: {base} is being computed by another process")
    res = runner.invoke(app, ["run", *args])  # released: it runs
    assert res.exit_code == 0 and len(loads) == 1, res.output


def test_a_prompt_file_is_one_run_however_its_path_is_spelled(tmp_path, monkeypatch):
    """The run of a prompt file is named by the file's name and content: prompts.txt, ./prompts.txt and
    its absolute path are one run (a requeued job that spelled it otherwise started again from zero,
    under another claim); an edited file is another."""
    from glass.config import compose, config_hash

    (tmp_path / "prompts.txt").write_text("a cat\na dog\n")
    monkeypatch.chdir(tmp_path)
    common = ["model=sd", "task=generate"]
    spelled = {config_hash(compose([*common, f"task.prompts={p}"]))
               for p in ("prompts.txt", "./prompts.txt", tmp_path / "prompts.txt")}  # fmt: skip
    assert len(spelled) == 1
    (tmp_path / "prompts.txt").write_text("a cat\na fox\n")
    assert config_hash(compose([*common, "task.prompts=prompts.txt"])) not in spelled


def test_a_prompt_file_edited_while_its_run_computes_does_not_rename_the_run(tiny_sd, tmp_path, monkeypatch):
    """The prompts are read once, when the job is built. The run's directory and its records' key come
    from the bytes read then: a file edited meanwhile (here while the model loads) neither files
    the old prompts' images under the new content's name nor fails the run at the end with "prompts
    have no record"; the edited file is a run of its own."""
    import glass.runner
    from glass.config import compose, config_hash

    prompts = tmp_path / "set.txt"
    prompts.write_text("a red cat\na blue dog\n")
    args = ["model=sd", f"model.model_id={tiny_sd}", "model.device=cpu", "model.dtype=float32",
            "model.height=32", "model.width=32", f"out_dir={tmp_path / 'out'}", f"task.prompts={prompts}",
            "task=generate", "sampler=glass", "sampler.steps=1", "task.transitions=2",
            "metric=none"]  # fmt: skip
    before = config_hash(compose(args))
    original = glass.runner._model

    def edited_while_loading(*a, **kw):
        prompts.write_text("a green frog\n")
        return original(*a, **kw)

    monkeypatch.setattr(glass.runner, "_model", edited_while_loading)
    res = runner.invoke(app, ["run", *args])
    assert res.exit_code == 0, res.output
    (run,) = (tmp_path / "out" / "promptsets").iterdir()
    assert run.name.endswith(before) and [x["prompt"] for x in lines(run)] == ["a red cat", "a blue dog"]
    monkeypatch.setattr(glass.runner, "_model", original)
    res = runner.invoke(app, ["run", *args])
    assert res.exit_code == 0, res.output
    (new,) = {p for p in (tmp_path / "out" / "promptsets").iterdir()} - {run}
    assert [x["prompt"] for x in lines(new)] == ["a green frog"]


def test_torchrun_on_a_prompt_set_another_process_computes_is_refused(tiny_sd, tmp_path):
    """Under torchrun the ranks skipped the run's claim: a requeued torchrun job (or a plain glass run
    beside one) computed into the same .partial, and a failure renamed it under the live ranks. Rank 0
    takes the claim for every rank: while another process holds it, every rank stops before loading,
    with the one line a second single process gets, and nothing is written."""
    from glass.claims import claim, claim_path
    from glass.config import compose
    from glass.runner import promptset_dir

    args = fk_args(tiny_sd, tmp_path)
    base = promptset_dir(compose(args))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "glass",
           "run", *args]  # fmt: skip
    with claim(claim_path(base.parent, base.name)) as mine:
        assert mine
        res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode != 0 and res.stderr.count("is being computed by another process") == 2, res.stderr
    assert not re.search(r'File ".*[/\\]glass[/\\]', res.stderr)  # one line each (torchrun's report aside)
    assert not [p for p in base.parent.iterdir() if not p.name.startswith(".")]  # no run directory


def test_a_prompt_without_its_geneval_metadata_is_computed_again(single, tmp_path):
    """GenEval reads each prompt folder's metadata.jsonl beside its samples: a record whose file is
    missing (lost in a crash: it is written atomically now, before the record) is not complete, so a
    resumed run computes that prompt again."""
    import shutil

    from glass.outputs import read_records

    run = tmp_path / "run"
    shutil.copytree(single, run)
    key = json.loads((run / "prompts" / "00003.json").read_text())["key"]
    assert sorted(read_records(run, key)) == list(range(6))
    next((run / "geneval").glob("*/00003/metadata.jsonl")).unlink()
    assert sorted(read_records(run, key)) == [0, 1, 2, 4, 5]


def test_a_prompt_set_reproduction_with_other_options_gets_a_directory_of_its_own():
    """glass reproduce over a prompt set is named <scale>-<file>-<family>; another steered reward (or any
    other option that changes results) adds a hash of those options, so two such runs never share a
    sweep directory and its summary (they did: only the file and family named it). The prompt file's
    spelling and where outputs go change nothing."""
    from glass.reproduce import promptset_variant

    base = ["model=flux", "task.prompts=evaluation_metadata.jsonl", "task.per_prompt=4"]
    names = {promptset_variant("paper", "evaluation_metadata.jsonl", "flux", extra) for extra in (
        base, [*base, "out_dir=elsewhere", "logger=wandb"],
        ["model=flux", "task.prompts=./data/evaluation_metadata.jsonl", "task.per_prompt=4"])}  # fmt: skip
    (name,) = names
    assert name.startswith("paper-evaluation_metadata-flux-")
    other = promptset_variant("paper", "evaluation_metadata.jsonl", "flux", [*base, "reward=pickscore"])
    assert other.startswith("paper-evaluation_metadata-flux-") and other != name
    assert promptset_variant("paper", "p.txt", "sd3", ["model=sd3", "task.prompts=p.txt"]) == "paper-p-sd3"


def test_a_prompt_set_gives_each_prompt_its_own_reference_images(tmp_path, tiny_sd):
    """FLUX.2 editing at benchmark scale: a JSONL record's ``image`` (a path from the file's folder, or a
    list) is that prompt's references, as ``model.image`` would be for a run of that prompt alone; a
    record without one is text-to-image. Editing an image in place changes the run key; a model that
    takes no references, a bad field or a missing file is one line (exit 2) before any prompt runs."""
    import numpy as np
    import torch
    from PIL import Image
    from safetensors.torch import load_file

    from tests.tiny_pipes import MAX_SEQUENCE_LENGTH, PIPES

    root, data = tmp_path / "tiny-flux2", tmp_path / "data"
    PIPES["flux2"]().save_pretrained(root)
    data.mkdir()
    for i, (h, w) in enumerate([(64, 72), (64, 64)]):
        rng = np.random.default_rng(i)
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(data / f"{'ab'[i]}.png")
    Image.new("RGB", (80, 32)).save(data / "small.png")  # below FLUX.2's 64 pixels a side
    prompts = ["make it red", "put them side by side", "a cat"]
    edits = data / "edits.jsonl"
    images = ["a.png", ["a.png", "b.png"], None]
    edits.write_text("".join(json.dumps({"prompt": p, **({"image": i} if i else {})}) + "\n"
                             for p, i in zip(prompts, images)))  # fmt: skip
    plain = data / "plain.jsonl"
    plain.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in prompts))

    def run(name: str, file: Path, *extra: str, code: int = 0) -> Path:
        args = ["run", "model=flux2", f"model.model_id={root}", "model.device=cpu", "model.dtype=float32",
                "model.height=32", "model.width=32", "model.cpu_offload=false",
                f"model.max_sequence_length={MAX_SEQUENCE_LENGTH['flux2']}", "task=generate",
                f"task.prompts={file}", "task.per_prompt=2", "task.transitions=2", "task.save_latents=true",
                "sampler=glass", f"out_dir={tmp_path / name}", *extra]  # fmt: skip
        res = runner.invoke(app, args)
        assert res.exit_code == code, res.output[-2000:]
        return res if code else Path(re.search(r"outputs: (\S+)", res.output).group(1))

    def latents(run_dir: Path, index: int):
        (f,) = (run_dir / "latents").glob(f"*/{index:05d}.safetensors")
        return load_file(f)["latents"]

    edited = run("edited", edits)
    alone = {
        0: run("a", plain, f"model.image={data / 'a.png'}"),
        1: run("ab", plain, f"model.image=[{data / 'a.png'},{data / 'b.png'}]"),
        2: run("none", plain),
    }
    for index, other in alone.items():
        assert torch.allclose(latents(edited, index), latents(other, index), rtol=1e-5, atol=1e-6)
    assert not torch.allclose(latents(edited, 0), latents(alone[2], 0), rtol=1e-3, atol=1e-3)
    records = [json.loads(line) for line in (edited / "images.jsonl").read_text().splitlines()]
    assert {r["prompt_index"]: r["meta"].get("image") for r in records} == dict(enumerate(images))

    from glass.config import compose
    from glass.promptrun import run_key

    cfg, plain_cfg = (compose(["model=flux2", f"task.prompts={f}", "task=generate"]) for f in (edits, plain))
    key, plain_key = run_key(cfg), run_key(plain_cfg)
    Image.fromarray(np.zeros((64, 64, 3), dtype=np.uint8)).save(data / "b.png")  # edited in place
    assert run_key(cfg) != key and run_key(plain_cfg) == plain_key
    again = run("edited", edits)  # the finished run is not taken for this one: a new run, computed
    assert again != edited and not torch.allclose(latents(again, 1), latents(edited, 1))
    assert torch.equal(latents(again, 0), latents(edited, 0))  # a.png is unchanged

    bad = data / "bad.jsonl"
    for record, message in (
        ({"prompt": "x", "image": "missing.png"}, "prompt 0: image: no file at"),
        ({"prompt": "x", "image": 3}, "prompt 0: image must be a path or a non-empty list of paths, got 3"),
        ({"prompt": "x", "image": []}, "image must be a path or a non-empty list of paths, got \\[\\]"),
        ({"prompt": "x", "image": "small.png"}, "prompt 0: image .*small.png: Image too small: 80×32"),
    ):
        bad.write_text(json.dumps(record) + "\n")
        res = run("bad", bad, code=2)
        assert re.search(message, res.output) and "Traceback" not in res.output
    res = runner.invoke(app, ["run", "model=sd", f"model.model_id={tiny_sd}", "model.device=cpu",
                              "model.dtype=float32", "model.height=32", "model.width=32", "task=generate",
                              f"task.prompts={edits}", f"out_dir={tmp_path / 'sd'}"])  # fmt: skip
    assert res.exit_code == 2, res.output[-2000:]
    assert "gives reference images (image field) for 2 prompts; StableDiffusionModel takes none" in res.output
