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
        ("ok.txt", "a\nb\n", "5:9", "selects no prompt of the 2"),
        ("ok.txt", "a\nb\n", "1-2", "prompt_range must look like a:b"),
    ],
)  # fmt: skip
def test_bad_prompt_files_get_one_clear_line(tmp_path, name, text, range_, match):
    if text is not None:
        (tmp_path / name).write_text(text)
    with pytest.raises(ValueError, match=match):
        load_prompts(tmp_path / name, range_)
