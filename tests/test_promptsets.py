"""Prompt sets in the benchmarks' own formats (text, GenEval JSONL, PartiPrompts TSV, DrawBench CSV),
slices that keep each prompt's index, and one clear line for every bad file."""

from pathlib import Path

import pytest

from glass.promptsets import load_prompts, parse_range

EXAMPLE = Path(__file__).resolve().parents[1] / "experiments" / "prompts" / "example.jsonl"


def test_geneval_jsonl_keeps_every_other_field_as_metadata():
    records = load_prompts(EXAMPLE)
    assert len(records) == 6 and records[0].prompt == "a photo of a cat"
    assert records[2].meta == {"tag": "counting", "include": [{"class": "bird", "count": 3}]}
    assert [r.index for r in records] == list(range(6))


def test_reference_images_per_prompt_from_jsonl_and_csv(tmp_path):
    """A record's ``image`` (JSONL: a path or a list; CSV: a column, empty for none) becomes that
    prompt's ``image=`` conditioning, paths taken from the prompt file's folder, repeated per output;
    a set without any stays prompt-only."""
    from PIL import Image
    from typer.testing import CliRunner

    from glass.cli import app
    from glass.tasks.prompts import PromptOptions

    (tmp_path / "sets" / "img").mkdir(parents=True)
    for name in ("a.png", "b.png"):
        Image.new("RGB", (64, 64)).save(tmp_path / "sets" / "img" / name)
    jsonl = tmp_path / "sets" / "e.jsonl"
    jsonl.write_text('{"prompt": "red", "image": "img/a.png"}\n{"prompt": "both", "image": ["img/a.png", '
                     '"img/b.png"]}\n{"prompt": "plain"}\n')  # fmt: skip
    a, b = (str(tmp_path / "sets" / "img" / n) for n in ("a.png", "b.png"))
    res = CliRunner().invoke(app, ["prompts", str(jsonl)])  # the CLI's check counts them
    assert res.exit_code == 0 and "3 prompts (2 with reference images) in" in res.stderr
    cond = PromptOptions(str(jsonl), per_prompt=2, prompt_range="1:3").cond()
    assert cond == {"prompt": ["both", "both", "plain", "plain"], "image": [[a, b], [a, b], None, None]}
    csv = tmp_path / "sets" / "e.csv"
    csv.write_text("prompt, Image\nred,img/a.png\nplain,\n")  # the column named in any case
    assert PromptOptions(str(csv)).cond()["image"] == [a, None]
    assert "image" not in PromptOptions(str(EXAMPLE)).cond()
    assert PromptOptions(str(EXAMPLE)).images_digest() is None


def test_text_csv_and_tsv(tmp_path):
    (tmp_path / "p.txt").write_text("a cat\n\n  a dog  \n")
    assert [(r.index, r.prompt) for r in load_prompts(tmp_path / "p.txt")] == [(0, "a cat"), (1, "a dog")]
    (tmp_path / "parti.tsv").write_text(
        "Prompt\tCategory\tChallenge\na red car\tVehicles\tColors\nthe sky\tScenes\tBasic\n"
    )
    parti = load_prompts(tmp_path / "parti.tsv")
    assert parti[1].prompt == "the sky" and parti[1].meta == {"Category": "Scenes", "Challenge": "Basic"}
    (tmp_path / "draw.csv").write_text('Prompts,Category\n"a cat, sitting",Colors\n')
    assert load_prompts(tmp_path / "draw.csv")[0].prompt == "a cat, sitting"


def test_byte_order_marks_and_unicode_line_separators(tmp_path):
    """Excel's "CSV UTF-8" starts with a byte-order mark: not part of the first prompt or header (the
    .txt prompt carried it, the CSV's prompt column was not found); a prompt or JSON string holding
    U+2028 or \\x85 is one prompt (str.splitlines split it, shifting every later index)."""
    bom = "\ufeff"
    (tmp_path / "p.txt").write_text(f"{bom}a cat\na dog\x85on a mat\nthe sky\n")
    assert [r.prompt for r in load_prompts(tmp_path / "p.txt")] == ["a cat", "a dog\x85on a mat", "the sky"]
    (tmp_path / "p.csv").write_text(f"{bom}prompt,category\na cat,animals\n")
    got = [(r.prompt, r.meta) for r in load_prompts(tmp_path / "p.csv")]
    assert got == [("a cat", {"category": "animals"})]
    (tmp_path / "p.jsonl").write_text(f'{bom}{{"prompt": "a cat\u2028on a mat"}}\n{{"prompt": "a dog"}}\n')
    assert [(r.index, r.prompt) for r in load_prompts(tmp_path / "p.jsonl")] == [
        (0, "a cat\u2028on a mat"), (1, "a dog")]  # fmt: skip


def test_tsv_takes_quotes_as_written(tmp_path):
    """PartiPrompts.tsv is unquoted: its line 1562 starts with a quoted word that is part of the prompt
    (CSV quoting would drop the quotes, or merge lines where one is left open)."""
    text = (
        "Prompt\tCategory\n"
        '"G I G G L E" painted on a wall\tIllustrations\n'
        'a sign that says "OOPS\tIndoor\n'
        "the sky\tScenes\n"
    )
    path = tmp_path / "parti.tsv"
    path.write_text(text)
    prompts = [r.prompt for r in load_prompts(path)]
    assert prompts == ['"G I G G L E" painted on a wall', 'a sign that says "OOPS', "the sky"]


def test_slices_keep_the_index_in_the_whole_set():
    assert [r.index for r in load_prompts(EXAMPLE, "2:4")] == [2, 3]
    assert [r.index for r in load_prompts(EXAMPLE, "4:")] == [4, 5]
    assert list(parse_range(":2", 6)) == [0, 1] and list(parse_range(None, 3)) == [0, 1, 2]


@pytest.mark.parametrize(
    "name,text,range_,match",
    [
        ("missing.txt", None, None, "no such file"),
        ("p.yaml", "a", None, "must be one of .txt, .jsonl, .csv, .tsv"),
        ("empty.txt", "\n\n", None, "holds no prompt"),
        ("bad.jsonl", '{"prompt": "a"}\nnot json\n', None, "line 2 is not JSON"),
        ("noprompt.jsonl", '{"text": "a"}\n', None, 'line 1 has no "prompt" field'),
        ("nocol.csv", "text,category\na,b\n", None, "no prompt column"),
        ("hole.tsv", "prompt\tx\n\t1\n", None, "line 2 has an empty 'prompt'"),
        ("open.csv", 'prompt,x\n"unterminated,1\n', None, "not valid CSV at record 1 .*unexpected end"),
        ("stray.csv", 'prompt\n"a cat\n"a dog"\nthree\n', None, "not valid CSV at record 1 .*expected after"),
        ("head.csv", '"prompt\n', None, "not valid CSV at header"),
        ("comma.csv", "prompt\na cat, sitting on a mat\n", None,
         'line 2 has 2 fields, the header has 1 .quote a prompt that holds a comma'),
        ("short.csv", "prompt,category,tag\na cat,animals\n", None,
         "line 2 has 2 fields, the header has 3 .every row needs the header's fields"),
        ("short.tsv", "prompt\tcategory\na cat\n", None, "line 2 has 1 field, the header has 2 .every row"),
        ("tab.tsv", "prompt\tcategory\na\tcat\tanimals\n", None,
         "line 2 has 3 fields.*a prompt holding a tab"),
        ("later.csv", "prompt,x\na,1\n\n,2\n", None, "line 4 has an empty 'prompt'"),  # after a blank line
        ("multi.csv", 'prompt,x\n"a\nb",1\n,2\n', None, "line 4 has an empty 'prompt'"),  # a 2-line field
        ("ok.txt", "a\nb\n", "5:9", "selects no prompt of the 2"),
        ("ok.txt", "a\nb\n", "1-2", "prompt_range must look like a:b"),
        ("ok.txt", "a\nb\n", "--1:", "prompt_range must look like a:b"),
        ("ok.txt", "a\nb\n", "0:\u00b2", "prompt_range must look like a:b"),
        ("ok.txt", "a\nb\n", "0:\u0663", "prompt_range must look like a:b"),
    ],
)  # fmt: skip
def test_bad_prompt_files_get_one_clear_line(tmp_path, name, text, range_, match):
    if text is not None:
        (tmp_path / name).write_text(text)
    with pytest.raises(ValueError, match=match):
        load_prompts(tmp_path / name, range_)


def test_a_prompt_set_run_writes_images_jsonl_geneval_layout_and_gallery(tmp_path):
    """glass run on a saved tiny SD pipeline with task.prompts: one PNG per output in GenEval's layout
    (metadata.jsonl = the prompt file's line), images.jsonl, index.html; FK steering records each
    output's steered reward and each resampling's ESS; task.save_latents one file per prompt."""
    import json

    from typer.testing import CliRunner

    from glass.cli import app
    from tests.tiny_pipes import PIPES

    root = tmp_path / "tiny-sd"
    PIPES["sd"]().save_pretrained(root)
    common = ["model=sd", f"model.model_id={root}", "model.device=cpu", "model.dtype=float32",
              "model.height=32", "model.width=32", f"out_dir={tmp_path / 'out'}", f"task.prompts={EXAMPLE}",
              "task.per_prompt=2", "task.transitions=2"]  # fmt: skip
    compare = ["sampler=compare", "sampler.samplers=[glass,ode]", "sampler.steps=[1]"]
    res = CliRunner().invoke(
        app, ["run", *common, "task=generate", "task.prompt_range=1:3", "metric=none", *compare]
    )
    assert res.exit_code == 0, res.output
    (run,) = (tmp_path / "out").glob("promptsets/*")
    lines = [json.loads(line) for line in (run / "images.jsonl").read_text().splitlines()]
    assert len(lines) == 2 * 2 * 2  # prompts x per_prompt x methods
    assert {(r["method"], r["prompt_index"], r["repeat"]) for r in lines} == {
        (m, i, k) for m in ("glass M=1", "ode M=1") for i in (1, 2) for k in (0, 1)}  # fmt: skip
    source = EXAMPLE.read_text().splitlines()
    for i in (1, 2):
        folder = run / "geneval" / "glass_M1" / f"{i:05d}"
        assert json.loads((folder / "metadata.jsonl").read_text()) == json.loads(source[i])
        assert sorted(p.name for p in (folder / "samples").iterdir()) == ["00000.png", "00001.png"]
    page = (run / "index.html").read_text()
    assert page.count("<img") == 8 and "a photo of three birds" in page
    assert all((run / r["path"]).stat().st_size > 100 for r in lines)

    fk = CliRunner().invoke(app, ["run", *common, "task=fk_steering", "reward=ink", "task.particles=2",
                                  "sampler=glass", "sampler.steps=1", "task.prompt_range=0:2",
                                  "task.save_latents=true"])  # fmt: skip
    assert fk.exit_code == 0, fk.output
    (fk_run,) = [p for p in (tmp_path / "out").glob("promptsets/*") if p != run]
    rows = [json.loads(line) for line in (fk_run / "images.jsonl").read_text().splitlines()]
    assert len(rows) == 4 and all(0 <= r["reward"] <= 1 for r in rows)
    assert [r["group"] for r in rows] == [0, 1, 2, 3] and all(r["particle"] in (0, 1) for r in rows)
    # one resampling (after the first of two transitions) per output, ESS in [1, particles]
    assert all(len(r["ess_at_resampling"]) == 1 and 1 <= r["ess_at_resampling"][0] <= 2 for r in rows)
    from safetensors.torch import load_file

    latents = load_file(str(fk_run / "latents" / "glass_M1" / "00001.safetensors"))["latents"]
    assert latents.shape == (2, 4, 8, 8) and [r["latent_row"] for r in rows] == [0, 1, 0, 1]
    assert rows[2]["latents"] == "latents/glass_M1/00001.safetensors"
    assert "reward 0." in (fk_run / "index.html").read_text()


def test_prompt_set_errors_through_the_cli(tmp_path):
    from typer.testing import CliRunner

    from glass.cli import app

    out = [f"out_dir={tmp_path}"]
    for args, message in [
        (["task=generate", f"task.prompts={tmp_path / 'none.txt'}"], "task.prompts: no such file"),
        (["task=generate", f"task.prompts={EXAMPLE}"], "needs a text-conditioned model"),
        (["task=generate", "task.prompt_range=0:2"], "set task.prompts=FILE too"),
        (
            ["task=best_of_n", f"task.prompts={EXAMPLE}", "task.groups=4"],
            "give one (per_prompt with prompts)",
        ),
    ]:
        res = CliRunner().invoke(app, ["run", *args, *out])
        assert res.exit_code == 2 and res.stderr.count("\n") == 1, (args, res.output)
        assert message in res.stderr, res.stderr
    assert not (tmp_path / "runs").exists()


def tiny_clip_dir(root: Path) -> Path:
    """A tiny random CLIPModel and its tokenizer saved as a local folder (reward.model=<folder>)."""
    import torch
    from transformers import CLIPConfig, CLIPModel

    from tests.tiny_pipes import CLIP_LENGTH, clip_tokenizer

    tok = clip_tokenizer()
    torch.manual_seed(0)
    text = dict(vocab_size=len(tok), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                num_attention_heads=2, max_position_embeddings=CLIP_LENGTH, bos_token_id=tok.bos_token_id,
                eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)  # fmt: skip
    vision = dict(image_size=224, patch_size=56, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                  num_attention_heads=2)  # fmt: skip
    CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=8)).save_pretrained(root)
    tok.save_pretrained(root)
    return root


def test_held_out_rewards_and_diversity_beside_the_steered_reward(tmp_path):
    """metric=rewards on a prompt-set FK run: every output scored by a held-out CLIP score (a tiny
    random CLIP from a local folder), with standard errors and counts, and diversity within a prompt;
    equal to scoring the run's own images directly."""
    import json

    from typer.testing import CliRunner

    from glass.cli import app
    from glass.rewards import CLIPScore
    from tests.tiny_pipes import PIPES

    root = tmp_path / "tiny-sd"
    PIPES["sd"]().save_pretrained(root)
    clip = tiny_clip_dir(tmp_path / "clip")
    args = ["run", "model=sd", f"model.model_id={root}", "model.device=cpu", "model.dtype=float32",
            "model.height=32", "model.width=32", f"out_dir={tmp_path / 'out'}", f"task.prompts={EXAMPLE}",
            "task.per_prompt=2", "task.prompt_range=0:3", "task.transitions=2", "task=best_of_n",
            "task.particles=2", "reward=ink", "sampler=glass", "sampler.steps=1", "metric=rewards",
            "metric.rewards=[clip]", f"metric.configs.clip.model={clip}",
            "task.save_latents=true"]  # fmt: skip
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    (run,) = (tmp_path / "out").glob("promptsets/*")
    row = json.loads((run / "metrics.json").read_text())["rows"][0]
    assert row["clip_n"] == 6 and row["diversity_n_prompts"] == 3 and row["clip_se"] > 0
    assert 0 < row["diversity"] <= 2  # unit-norm features: pairwise distances in (0, 2]
    import torch
    from safetensors.torch import load_file

    from glass.config import compose, instantiate

    model = instantiate(compose(args[1:8] + ["task=generate"]).model, "model")
    lines = [json.loads(line) for line in (run / "images.jsonl").read_text().splitlines()]
    x = torch.cat([load_file(str(run / "latents" / "glass_M1" / f"{i:05d}.safetensors"))["latents"]
                   for i in range(3)])  # fmt: skip
    direct = CLIPScore(model=str(clip))(model.decode(x) * 2 - 1, prompt=[line["prompt"] for line in lines])
    # every image's held-out reward in images.jsonl (from its decoded image, not its PNG) and their mean
    assert [line["rewards"]["clip"] for line in lines] == pytest.approx(direct.tolist(), abs=1e-4)
    assert abs(float(direct.mean()) - row["clip"]) < 1e-4
    from glass.experiment import prepare, run

    jobs = prepare(args[1:])  # the reward models are loaded when a run is prepared ...
    assert jobs[0].metric._rewards is not None
    run(jobs)  # (finished already: nothing computed)
    assert jobs[0].metric._rewards is None  # ... and freed when it ends
    bad = CliRunner().invoke(app, ["run", "task=generate", "metric=rewards", f"out_dir={tmp_path}"])
    assert bad.exit_code == 2 and "scores images against their prompts" in bad.stderr


def test_a_sweep_over_model_options_shares_one_loaded_network(tmp_path):
    """glass run -m model.prompt=a,b,c model.guidance_scale=...: one UNet and VAE in memory for every
    job (the loader shares the network pipeline between models that differ only in glass options)."""
    from glass.config import expand_sweep
    from glass.experiment import prepare_jobs
    from tests.tiny_pipes import PIPES

    root = tmp_path / "tiny-sd"
    PIPES["sd"]().save_pretrained(root)
    args = ["model=sd", f"model.model_id={root}", "model.device=cpu", "model.dtype=float32",
            "model.height=32", "model.width=32", f"out_dir={tmp_path / 'out'}", "task=generate", "task.n=2",
            "model.prompt=a cat,a dog,a bird", "model.guidance_scale=1.0,7.5"]  # fmt: skip
    jobs = prepare_jobs(expand_sweep(args))
    assert len(jobs) == 6 and len({id(j.model) for j in jobs}) == 6
    assert len({id(j.model.net) for j in jobs}) == 1 and len({id(j.model.vae) for j in jobs}) == 1


def test_glass_prompts_checks_a_file_and_prints_its_shards():
    """`glass prompts FILE --shards N`: the task.prompt_range values of N contiguous shards covering
    every prompt once; bad input is one line and exit 2."""
    from typer.testing import CliRunner

    from glass.cli import app
    from glass.promptsets import parse_range, shard_ranges

    res = CliRunner().invoke(app, ["prompts", str(EXAMPLE), "--shards", "4"])
    assert res.exit_code == 0 and res.stdout.strip() == "0:1,1:3,3:4,4:6" and "6 prompts" in res.stderr
    for n, k in [(553, 4), (7, 7), (10, 3)]:
        covered = [i for r in shard_ranges(n, k) for i in parse_range(r, n)]
        assert covered == list(range(n))
    for args, message in [(["--shards", "7"], "from 1 to the 6"), (["--shards", "0"], "--shards must")]:
        bad = CliRunner().invoke(app, ["prompts", str(EXAMPLE), *args])
        assert bad.exit_code == 2 and bad.stderr.count("\n") == 1 and message in bad.stderr


def test_a_prompt_sets_score_carries_its_standard_error_over_prompts():
    """Two prompts x two images: rewards 1, 3 and 5, 7. Over images: mean 4, se std(1,3,5,7)/2; over
    the prompts' means (2 and 6): se 2. One prompt: its error over prompts is NaN (unknown)."""
    import math

    from glass.outputs import aggregate

    def record(index, rewards):
        images = [{"prompt_index": index, "method": "m", "reward": r, "rewards": {"clip": -r}}
                  for r in rewards]  # fmt: skip
        return {"prompt_index": index, "images": images, "methods": {"m": {"row": {"nfe": 4}}}}

    (row,) = aggregate([record(0, [1.0, 3.0]), record(1, [5.0, 7.0])], ["m"])
    assert row["reward"] == 4.0 and row["reward_se"] == pytest.approx(math.sqrt(20 / 3) / 2)
    assert row["reward_prompt_se"] == pytest.approx(2.0) and row["clip_prompt_se"] == pytest.approx(2.0)
    (one,) = aggregate([record(0, [1.0, 3.0])], ["m"])
    assert math.isnan(one["reward_prompt_se"]) and one["reward_se"] == 1.0


def test_methods_on_a_prompt_set_are_compared_prompt_by_prompt():
    """Prompts of very different difficulty (a's per-prompt means 1, 10, 20) and b a little above a
    on each (by 0.5, 0.4, 0.6): b's row carries the paired difference from the first method, mean 0.5
    and standard error 0.1/√3 over the prompts, which the unpaired errors (about 5.5) hide; the first
    row carries none."""
    import math

    from glass.outputs import aggregate

    def record(index, a, b):
        images = [{"prompt_index": index, "method": m, "reward": r, "rewards": {"clip": 2 * r}}
                  for m, rs in (("a", a), ("b", b)) for r in rs]  # fmt: skip
        return {"prompt_index": index, "images": images,
                "methods": {"a": {"row": {"nfe": 4}}, "b": {"row": {"nfe": 4}}}}  # fmt: skip

    recs = [record(0, [0.0, 2.0], [1.5]), record(1, [10.0], [10.0, 10.8]), record(2, [20.0], [20.6])]
    first, second = aggregate(recs, ["a", "b"])
    assert not [k for k in first if "vs_first" in k]
    assert second["reward_vs_first"] == pytest.approx(0.5)
    assert second["reward_vs_first_se"] == pytest.approx(0.1 / math.sqrt(3))
    assert second["reward_vs_first_n"] == 3
    assert second["clip_vs_first"] == pytest.approx(1.0) and second["reward_se"] > 50 * 0.1 / math.sqrt(3)
    (alone,) = aggregate([record(0, [1.0], [2.0])][:1], ["b"])  # one method: nothing to compare
    assert not [k for k in alone if "vs_first" in k]
