"""The weights a job depends on beyond its config's text (glass.weights): hub repositories and local
files named by id or path alone, keyed by their content so a finished job reruns when they change."""

from __future__ import annotations

import json

import pytest

from glass.config import compose
from glass.weights import stale_weights, weights_digest
from tests.tiny_pipes import hub_cache


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """An offline hub cache (read through huggingface_hub's own constants) of a CLIP (``tiny/clip``),
    a VAE (``tiny/vae``), PickScore's tokenizer repository and HPSv2's checkpoint, each at commit 1;
    ``tiny/clip`` also has commit 2 (a new model card) and 3 (new weights). Returns a function that
    moves ``tiny/clip``'s main to a commit."""
    import huggingface_hub.constants

    from glass.rewards.hub import HPSv2, PickScore

    c = ("1" * 40, "2" * 40, "3" * 40)

    def folder(name: str, files: dict):
        (tmp_path / name).mkdir()
        for f, text in files.items():
            (tmp_path / name / f).write_text(text)
        return tmp_path / name

    model = {"config.json": "{}", "model.safetensors": "weights 1"}
    clips = {c[0]: folder("one", model), c[1]: folder("two", {**model, "README.md": "card", "LICENSE": "x"}),
             c[2]: folder("three", {**model, "model.safetensors": "weights 2"})}  # fmt: skip
    vae = folder("vae", {"config.json": "{}", "v.safetensors": "v"})
    tok = folder("tok", {"tokenizer_config.json": "{}", "vocab.json": "{}"})
    repos = {"tiny/clip": clips, "tiny/vae": {c[0]: vae}, PickScore.processor_model: {c[0]: tok},
             HPSv2.hub_file[0]: {c[0]: folder("hps", {HPSv2.hub_file[1]: "hps"})}}  # fmt: skip
    cache = {name: hub_cache(tmp_path / "hub", name, snaps, {"main": c[0]}) for name, snaps in repos.items()}
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    return lambda commit: (cache["tiny/clip"] / "refs" / "main").write_text(c[commit])


def test_hub_rewards_and_the_sit_vae_key_a_job_by_their_weights(hub, tmp_path):
    """reward=clip / pickscore / hpsv2 and SiT's VAE name hub weights by id alone: a job records
    their snapshot's model files (a new model card or licence keeps the record, new weights make the
    finished job stale), PickScore its tokenizer's repository too, HPSv2 its hub file, and a local
    checkpoint counts by its size and time. One not downloaded has no digest (nothing to compare)."""
    from glass.rewards.hub import HPSv2, PickScore

    cfg = compose(["model=sit", "model.vae=tiny/vae", "reward=clip", "reward.model=tiny/clip"])
    digest = weights_digest(cfg)
    assert sorted(digest) == ["hub:tiny/clip@main", "hub:tiny/vae@main"]
    (tmp_path / "job").mkdir()
    (tmp_path / "job" / "job.json").write_text(json.dumps({"weights": digest}))
    hub(1)  # main moved on to a model card and a licence
    assert weights_digest(cfg) == digest and stale_weights(tmp_path / "job", weights_digest(cfg)) == []
    snapshot = next((tmp_path / "hub").glob("models--tiny--clip/snapshots/2*"))
    for extra in ("pytorch_model.bin", "tf_model.h5", "flax_model.msgpack", "preprocessor_config.json",
                  "open_clip_model.safetensors", "model.fp16.safetensors"):
        (snapshot / extra).write_text("the rest of the repository, downloaded later")
    assert weights_digest(cfg) == digest  # other formats, files no loader here reads: the same weights
    hub(2)  # and to new weights
    assert stale_weights(tmp_path / "job", weights_digest(cfg)) == ["hub:tiny/clip@main"]

    sit = ["model=sit", "model.vae=null"]  # no other weights (model=mnist would add its checkpoints)
    pick = weights_digest(compose([*sit, "reward=pickscore", "reward.model=tiny/clip"]))
    assert sorted(pick) == sorted(["hub:tiny/clip@main", f"hub:{PickScore.processor_model}@main"])
    tokenizer = next((tmp_path / "hub").glob("models--laion--*/snapshots/1*"))
    (tokenizer / "model.safetensors").write_text("reward=clip on this repository downloads its model")
    assert weights_digest(compose([*sit, "reward=pickscore", "reward.model=tiny/clip"])) == pick
    assert list(weights_digest(compose([*sit, "reward=hpsv2"]))) == [f"hub:{'/'.join(HPSv2.hub_file)}@main"]
    local = tmp_path / "hps.pt"
    local.write_text("a checkpoint")
    before = weights_digest(compose([*sit, "reward=hpsv2", f"reward.path={local}"]))
    assert list(before) == [str(local.absolute())]
    local.write_text("another checkpoint, retrained in place")
    assert weights_digest(compose([*sit, "reward=hpsv2", f"reward.path={local}"])) != before
    link = tmp_path / "latest.pt"  # a link to the latest run's checkpoint, retargeted: a change
    link.symlink_to(local)
    linked = weights_digest(compose([*sit, "reward=hpsv2", f"reward.path={link}"]))
    (tmp_path / "run8.pt").write_text("a new run")
    link.unlink()
    link.symlink_to(tmp_path / "run8.pt")
    assert list(linked) == [str(link)]
    assert weights_digest(compose([*sit, "reward=hpsv2", f"reward.path={link}"])) != linked
    assert list(weights_digest(compose(["model=sit", "model.vae=null", f"model.path={local}"]))) == [
        str(local.absolute())]  # a local SiT checkpoint
    assert weights_digest(compose([*sit, "reward=clip", "reward.model=tiny/absent"])) == {}


def test_a_pipeline_digest_counts_the_files_its_loader_reads(tmp_path):
    """A pipeline folder's digest: model_index.json and the component folders it names, their configs
    and the weights diffusers loads; other folders (ONNX exports), other frameworks' files, variants
    and their shard indexes, downloaded later, change nothing; the weights themselves do."""
    from glass.models.latent import snapshot_digest

    (tmp_path / "unet").mkdir()
    (tmp_path / "model_index.json").write_text(json.dumps({"_class_name": "P", "unet": ["diffusers", "U"],
                                                           "safety_checker": [None, None]}))  # fmt: skip
    weights = tmp_path / "unet" / "diffusion_pytorch_model.safetensors"
    weights.write_text("w")
    (tmp_path / "unet" / "config.json").write_text("{}")
    before = snapshot_digest(tmp_path)
    (tmp_path / "vae_decoder").mkdir()
    for f in ("vae_decoder/model.onnx", "vae_decoder/openvino_model.bin", "unet/openvino_model.xml",
              "unet/diffusion_pytorch_model.fp16.safetensors", "unet/diffusion_pytorch_model.bin",
              "unet/diffusion_pytorch_model.safetensors.index.fp16.json", "README.md", "v1-5-pruned.ckpt"):
        (tmp_path / f).write_text("downloaded later")
    assert snapshot_digest(tmp_path) == before
    (tmp_path / "unet" / "config.json").write_text('{"sample_size": 64}')
    assert snapshot_digest(tmp_path) != before


def test_imagereward_keys_a_job_by_its_checkpoint_file(tmp_path, monkeypatch):
    """ImageReward's weights live in its package's cache (``image_reward.load`` downloads its release
    to ~/.cache/ImageReward/ImageReward.pt) or a path given as reward.model: the job records that file
    by its size and time, so a checkpoint replaced in place makes a finished job stale; none there yet,
    no digest."""
    from glass.rewards.hub import ImageReward

    monkeypatch.setattr(ImageReward, "cache", str(tmp_path / "cache"))
    sit = ["model=sit", "model.vae=null", "reward=imagereward"]  # no other weights
    assert weights_digest(compose(sit)) == {}
    (tmp_path / "cache").mkdir()
    release = tmp_path / "cache" / "ImageReward.pt"
    release.write_text("v1.0")
    digest = weights_digest(compose(sit))
    assert list(digest) == [str(release)]
    (tmp_path / "job").mkdir()
    (tmp_path / "job" / "job.json").write_text(json.dumps({"weights": digest}))
    release.write_text("v1.0, downloaded again after the hub's file changed")
    assert stale_weights(tmp_path / "job", weights_digest(compose(sit))) == [str(release)]
    own = tmp_path / "finetuned.pt"
    own.write_text("a fine-tuned ImageReward")
    assert list(weights_digest(compose([*sit, f"reward.model={own}"]))) == [str(own)]
    in_metric = weights_digest(compose(["model=sit", "model.vae=null", "metric=rewards"]))
    assert str(release) in in_metric  # metric=rewards scores ImageReward too
    default = ["model=sit", "model.vae=null", "reward=default"]  # ImageReward on a pretrained model
    assert list(weights_digest(compose(default))) == [str(release)]
    assert str(release) not in weights_digest(compose(["model=gmm", "reward=default"]))  # the linear reward
    assert ImageReward(model=None).model_id == "ImageReward-v1.0"  # reward.model=null: the release
