"""Every checked user input and the one-line error it gets: ONE list of cases.

``tests/test_reliability.py`` runs each case through the CLI (in-process, in a scratch directory)
and checks: a non-zero exit code, exactly one line on stderr starting with ``error:`` that contains
the case's substring, no traceback, nothing on stdout, and no run directory or metrics written.
``python -m tests.validation_cases`` rewrites ``docs/validation.md`` from the same cases and the
messages as actually printed; the test fails when the document is out of date.

A case's command is what follows ``glass``; ``{tmp}`` is a scratch directory holding the fixtures
of :func:`_fixtures` (``$TMP`` in the document). ``run``, ``reproduce`` and ``train`` get
``out_dir=<scratch>/out`` appended unless the case sets ``out_dir`` itself or ``add_out_dir=False``,
and every case runs with the scratch directory as working directory and no CUDA device, so nothing
can land in the repository and the messages do not depend on the machine.
"""

from __future__ import annotations

import json
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "validation.md"
FAKE_KEY = "glass-fake-wandb-key-7f3c9d2e"  # a made-up W&B key (never a real one)


@dataclass(frozen=True)
class Case:
    category: str
    command: str  # after `glass`, shell syntax; {tmp} is the scratch directory
    expect: str  # a substring of the one-line error
    what: str  # the input, in a few words
    setup: tuple[str, ...] = ()  # "definitions": bad experiment definitions; "fake_key": WANDB_API_KEY set
    add_out_dir: bool = True

    @property
    def argv(self) -> list[str]:
        return shlex.split(self.command)


# One row per checked input: (what, command after `glass`, substring of the error[, options]).
# Options: "definitions" (the broken experiment definitions of _DEFINITIONS replace the real ones),
# "fake_key" (WANDB_API_KEY=FAKE_KEY), "bad_wandb_mode" (WANDB_MODE=bogus), "no_out_dir" (no out_dir=
# appended: the command ends in an option that would take it as its value).
# fmt: off
_TABLE: dict[str, list[tuple]] = {
    "config value": [  # constructors and glass.checks; NaN and unresolvable interpolations in glass.config
        ("inner steps M < 1", "run model=gmm sampler=glass sampler.steps=0",
         "sampler.steps must be an integer >= 1, got 0"),
        ("steps not an integer", "run model=gmm sampler=glass sampler.steps=2.5",
         "sampler.steps must be an integer >= 1, got 2.5"),
        ("steps not a number", "run model=gmm sampler=glass sampler.steps=abc",
         "sampler.steps must be an integer >= 1, got 'abc'"),
        ("rho outside [-1, 1]", "run model=gmm sampler=glass sampler.rho=2",
         "sampler.rho must be 'ddpm' or a number in [-1, 1]"),
        ("rho NaN", "run model=gmm sampler=glass sampler.rho=nan",
         "sampler.rho must be a finite number, got nan"),
        ("kappa < 0", "run model=gmm sampler=glass sampler.kappa=-1", "sampler.kappa must be a number >= 0"),
        ("kappa with a constant rho", "run model=gmm sampler=glass sampler.rho=0.4 sampler.kappa=1",
         "needs rho='ddpm'"),
        ("unknown inner solver", "run model=gmm sampler=glass sampler.solver=foo",
         "sampler.solver must be one of euler, midpoint"),
        ("unknown inner grid", "run model=gmm sampler=glass sampler.inner_grid=foo",
         "sampler.inner_grid must be one of"),
        ("unknown compile mode", "run model=gmm sampler=glass sampler.compile=fast",
         "sampler.compile must be true, false or a torch.compile mode"),
        ("bad UNet chunk", "run model.chunk=0", "model.chunk must be auto, null or an integer >= 1"),
        ("unknown ODE method", "run model=gmm sampler=ode sampler.method=foo",
         "sampler.method must be one of euler, heun"),
        ("empty list of steps (compare)", "run model=gmm sampler.steps=[]",
         "sampler.steps must be a value or a non-empty list"),
        ("one bad entry of a list", "run model=gmm sampler.steps=[2,0]",
         "sampler.steps must be an integer >= 1, got 0"),
        ("unknown kernel in a comparison", "run model=gmm 'sampler.samplers=[sde,foo]'",
         "sampler.samplers: unknown sampler 'foo'"),
        ("a kernel compared with itself", "run model=gmm 'sampler.samplers=[glass,glass]'",
         "the comparison lists a kernel twice"),
        ("t >= 1", "run model=gmm sampler=glass task.t=1.5", "task.t must be a number in [0, 1), got 1.5"),
        ("t < 0", "run model=gmm sampler=glass task.t=-0.1", "task.t must be a number in [0, 1)"),
        ("t NaN", "run model=gmm sampler=glass task.t=nan", "task.t must be a finite number, got nan"),
        ("points < 1", "run model=gmm sampler=glass task.points=-1",
         "task.points must be an integer >= 1, got -1"),
        ("samples < 1", "run model=gmm sampler=glass task.n=0", "task.n must be an integer >= 1, got 0"),
        ("one sample per point on the oracle", "run model=gmm sampler=glass task.n=1",
         "task.n must be >= 2 on the oracle"),
        ("too few points for a correlation", "run model=gmm task=value task.points=2",
         "task.points must be an integer >= 3, got 2"),
        ("ground-truth sampler", "run model=gmm task=value task.truth_sampler=ode",
         "task.truth_sampler must be glass or sde"),
        ("transitions K < 1", "run model=gmm task=generate task.transitions=0",
         "task.transitions must be an integer >= 1"),
        ("generation chunk < 1", "run model=gmm task=generate task.chunk=0",
         "task.chunk must be an integer >= 1, got 0"),
        ("posterior chunk < 1", "run model=gmm task=posterior task.chunk=-4",
         "task.chunk must be an integer >= 1, got -4"),
        ("particles < 1", "run model=gmm sampler=glass task=fk_steering task.particles=0",
         "task.particles must be an integer >= 1"),
        ("groups < 2", "run model=gmm sampler=glass task=best_of_n task.groups=1",
         "task.groups must be an integer >= 2"),
        ("seed not a number", "run model=gmm sampler=glass seed=abc",
         "seed must be an integer in [0, 4294967295]"),
        ("negative seed", "run model=gmm sampler=glass seed=-1", "got -1"),
        ("fractional seed", "run model=gmm sampler=glass seed=1.5", "got 1.5"),
        ("seed of 2^32 (torch keeps 32 bits: would repeat seed=0)",
         "run -m model=gmm sampler=glass seed=0,4294967296",
         "seed must be an integer in [0, 4294967295] (torch's generator keeps 32 bits"),
        ("seed of 2^64", "run model=gmm sampler=glass seed=18446744073709551616", "got 18446744073709551616"),
        ("measurement seed of 2^32",
         "run model=gmm sampler=glass task=inverse reward=inpaint reward.seed=4294967296",
         "reward.seed must be an integer in [0, 4294967295]"),
        ("training seed of 2^32", "train flow seed=4294967296", "seed must be an integer in [0, 4294967295]"),
        ("oracle component std <= 0", "run model=gmm sampler=glass model.std=0",
         "stds must be finite numbers > 0"),
        ("no mixture components", "run model=gmm sampler=glass model.n_modes=0",
         "model.n_modes must be an integer in [1, 100000]"),
        ("a billion mixture components (hung before)", "run model=gmm sampler=glass model.n_modes=1000000000",
         "model.n_modes must be an integer in [1, 100000]"),
        ("a 64-D mixture too large to run",
         "run model=gmm64 sampler=glass model.dim=100000 model.n_components=1000",
         "is larger than the oracle allows"),
        ("per_prompt without a prompt set", "run model=gmm task=generate sampler=glass task.per_prompt=5",
         "task.per_prompt applies to a prompt set: set task.prompts=FILE too"),
        ("save_latents without a prompt set",
         "run model=gmm task=generate sampler=glass task.save_latents=true",
         "task.save_latents applies to a prompt set"),
        ("NaN anywhere in the config", "run model=gmm sampler=glass model.radius=nan",
         "model.radius must be a finite number, got nan"),
        ("unknown noise schedule", "run model=gmm sampler=glass model.schedule=foo",
         "unknown schedule 'foo'; choose from:"),
        ("oracle distance kind", "run model=gmm sampler=glass metric=oracle metric.kind=foo",
         "metric.kind must be one of"),
        ("noise-floor repeats < 2", "run model=gmm sampler=glass metric=oracle metric.floor_repeats=1",
         "metric.floor_repeats must be an integer >= 2"),
        ("oracle reference seed < 0", "run model=gmm sampler=glass metric=oracle metric.seed=-1",
         "metric.seed must be an integer >= 0"),
        ("curvature steps < 2", "run model=gmm sampler=glass metric=curvature metric.steps=1",
         "metric.steps must be an integer >= 2"),
        ("FID back-end", "run metric=fid metric.backend=foo", "metric.backend must be one of"),
        ("FID reference beyond its split", "run metric=fid metric.n_reference=20000",
         "metric.n_reference must be at most the 10000 images of the 'test' split, got 20000"),
        ("zero reward direction", "run model=gmm task=value reward=linear reward.direction=[0,0]",
         "reward.direction must be a non-zero list of numbers"),
        ("reward direction of the wrong length",
         "run model=gmm task=value reward=linear reward.direction=[1,2,3]",
         "reward.direction has 3 entries, the model has dimension 2"),
        ("a reward class that cannot be imported", "run task=best_of_n reward._target_=mypkg.Sharpness",
         "reward._target_=mypkg.Sharpness cannot be imported (ModuleNotFoundError: No module named 'mypkg')"),
        ("an option of a metric that takes none", "run model=gmm task=value metric=correlation metric.n=4",
         "unknown key 'metric.n': this metric takes no options"),
        ("digit class outside 0..9", "run task=best_of_n reward=classifier reward.target=10",
         "reward.target must be an integer in [0, 9]"),
        ("default reward's digit class outside 0..9", "run task=best_of_n reward.target=12",
         "reward.target must be an integer in [0, 9], got 12"),
        ("measurement operator", "run model=gmm task=inverse reward=measurement reward.operator=fourier",
         "reward.operator must be one of inpaint, downsample, blur, identity"),
        ("measurement noise <= 0", "run model=gmm task=inverse reward=inpaint reward.noise=0",
         "reward.noise must be a number > 0"),
        ("measurement source", "run model=gmm task=inverse reward=inpaint reward.source=test:-1",
         "reward.source must be test:INDEX with an integer INDEX >= 0"),
        ("measurement data set", "run model=gmm task=inverse reward=inpaint reward.source=train:3",
         "data set 'train' is not one of valid:INDEX or test:INDEX"),
        ("test image out of range", "run task=inverse reward=inpaint reward.source=test:10000",
         "test index must be an integer in [0, 9999]"),
        ("validation image out of range", "run task=inverse reward=inpaint reward.source=valid:10000",
         "reward.source=valid:10000: valid index must be an integer in [0, 9999]"),
        ("inverse images past the split",
         "run task=inverse reward=inpaint reward.source=valid:9990 task.images=20",
         "task.images=20 valid points from index 9990 run past the split"),
        ("pooling factor that does not divide", "run task=inverse reward=superres reward.factor=3",
         "reward.factor=3 must divide the data's size 28 x 28"),
        ("inverse task without a measurement", "run task=inverse reward=classifier",
         "task=inverse needs reward=measurement"),
        ("inverse task on a file", "run model=gmm task=inverse reward=inpaint reward.source={tmp}/point.pt",
         "task=inverse observes data points (reward.source=valid:INDEX or test:INDEX"),
        ("inverse method", "run model=gmm task=inverse reward=inpaint task.method=foo",
         "task.method must be one of fk_steering, best_of_n, guidance"),
        ("an FK option with best-of-N", "run model=gmm task=inverse reward=inpaint task.method=best_of_n "
         "task.lam=-5", "task.lam=-5 is not used by task.method=best_of_n (only by fk_steering)"),
        ("particles with guidance", "run model=gmm task=inverse reward=inpaint task.method=guidance "
         "task.particles=8", "task.particles=8 is not used by task.method=guidance (only by fk_steering, "
         "best_of_n)"),
        ("W&B mode", "run model=gmm sampler=glass logger=wandb logger.mode=foo",
         "logger.mode must be offline, online or disabled"),
        ("W&B mode from the environment", "run model=gmm sampler=glass logger=wandb",
         "WANDB_MODE='bogus' in the environment (it overrides logger.mode) must be one of", "bad_wandb_mode"),
        ("interpolation to a missing key", "run model=gmm sampler=glass 'task.t=${nope}'",
         "cannot resolve task.t: Interpolation key 'nope'"),
        ("unset environment variable",
         "run model=gmm sampler=glass 'task.t=${oc.env:GLASS_NO_SUCH_VARIABLE}'",
         "cannot resolve task.t"),
    ],
    "config group option": [  # glass.config: an option that is not a file in conf/<group>/
        ("unknown sampler", "run sampler=foo", "unknown sampler 'foo'; choose from:"),
        ("unknown model", "run model=foo", "unknown model 'foo'; choose from:"),
        ("unknown task", "run task=foo", "unknown task 'foo'; choose from:"),
        ("unknown metric", "run metric=foo", "unknown metric 'foo'; choose from:"),
        ("unknown reward", "run reward=foo", "unknown reward 'foo'; choose from:"),
        ("unknown logger", "run logger=foo", "unknown logger 'foo'; choose from: none, wandb"),
        ("unknown option in a sweep", "run -m model=gmm sampler=sde,foo",
         "unknown sampler 'foo'; choose from:"),
        ("empty option", "run sampler=", "unknown sampler ''; choose from:"),
    ],
    "config key": [  # glass.config: keys that do not exist, added keys nothing reads, deleted required keys
        ("unknown key of a group", "run model=gmm sampler=glass sampler.foo=1",
         "unknown key 'sampler.foo'; allowed keys: steps, rho"),
        ("unknown task key", "run model=gmm task.foo=1",
         "unknown key 'task.foo'; allowed keys: t, points, n"),
        ("unknown top-level key", "run model=gmm foo=1", "unknown key 'foo'"),
        ("added top-level key nothing reads (typo)", "run model=gmm +sedd=3",
         "unknown key 'sedd'; allowed keys: model, sampler"),
        ("added key the sampler does not take", "run model=gmm sampler=glass +sampler.foo=3",
         "sampler: unexpected option 'foo'"),
        ("added key the logger does not take", "run model=gmm +logger.foo=1",
         "logger: unexpected option 'foo'"),
        ("a user's reward class given by _target_, the default group's key left over",
         "run task=best_of_n reward._target_=glass.rewards.Ink",
         "reward: unexpected option 'target' of glass.rewards.Ink (remove it with ~reward.target)"),
        ("a key of another model (the oracle has no device)", "run model=gmm model.device=cuda",
         "unknown key 'model.device'; allowed keys: n_modes"),
        ("unknown guidance key", "run model=gmm sampler=glass task=guidance task.guidance.foo=1",
         "unknown key 'task.guidance.foo'"),
        ("deleting a config group", "run model=gmm '~sampler'",
         "'sampler' cannot be deleted; choose another option: sampler=NAME"),
        ("deleting a top-level key", "run model=gmm '~out_dir'", "'out_dir' cannot be deleted"),
    ],
    "override syntax": [  # glass.config: Hydra's override grammar
        ("unclosed bracket", "run 'task.t=[0.2'", "malformed override 'task.t=[0.2'"),
        ("no value", "run sampler.steps", "malformed override 'sampler.steps'"),
        ("no key", "run =3", "malformed override '=3': no key"),
        ("two equals signs", "run task.t==3", "malformed override 'task.t==3'"),
        ("sweep values without -m", "run model=gmm sampler.steps=2,4", "is a sweep; add -m"),
    ],
    "size": [  # glass.tasks.base.check_budget: memory and network calls, estimated before any work
        ("a billion points", "run model=gmm sampler=glass task.points=1000000000",
         "sample paths of 2 numbers need about 59,605 GiB, more than this machine's 16 GiB"),
        ("a hundred million steps", "run model=gmm sampler=glass sampler.steps=100000000",
         "100,000,000 network calls per sample path"),
        ("a billion samples", "run model=gmm task=generate sampler=glass task.n=1000000000",
         "task.n = 1,000,000,000 sample paths"),
        ("a billion particles",
         "run model=gmm task=fk_steering reward=linear sampler=glass task.particles=1000000000",
         "task.groups x task.particles ="),
    ],
    "adversarial pass": [  # inputs an adversarial probe found unchecked (issue 20)
        ("a directory as the prompt file", "prompts {tmp}/prompt-dir.txt", "is a directory, not a"),
        ("a binary prompt file", "prompts {tmp}/binary.txt", "is not UTF-8 text"),
        ("a sweep value for reproduce", "reproduce fig7-rho seed=1,2",
         "'seed=1,2' is a sweep; glass reproduce runs the sweep of experiments/reproduce/fig7-rho.yaml"),
        ("a non-ASCII value, unquoted", "run model=gmm sampler=glass out_dir={tmp}/ü",
         "quote it, key='a b'"),
    ],
    "long input": [  # glass.config.shorten, glass.cli._fail: nothing echoes a huge value
        ("a 300-character key", "run model=gmm +sampler." + "k" * 300 + "=1",
         "is too long (308 characters); no config has such a key"),
        ("a 300-character value", "run model=gmm sampler=glass sampler.steps=" + "v" * 300,
         "...[302 characters]"),
    ],
    "model / metric / reward fit": [  # glass.metrics.default, glass.rewards.base, the tasks' check()
        ("oracle metric on MNIST", "run metric=oracle", "metric=oracle needs an exact oracle model"),
        ("FID on the oracle", "run model=gmm metric=fid", "metric=fid scores images (model=mnist)"),
        ("FID for values", "run task=value metric=fid", "task=value is scored with metric=correlation"),
        ("oracle reward on MNIST", "run task=best_of_n reward=linear",
         "reward=linear is the oracle's reward"),
        ("MNIST reward on the oracle", "run model=gmm task=best_of_n reward=classifier",
         "reward=classifier needs an MNIST model"),
        ("image reward on the oracle", "run model=gmm task=best_of_n reward=jpeg",
         "scores images; the oracle's rewards are reward=linear and measurement"),
    ],
    "device": [  # glass.models.mnist.check_device (the CUDA check runs with CUDA hidden, see run_case)
        ("CUDA on a machine without a GPU", "run model.device=cuda",
         "model.device='cuda' but no CUDA GPU is available here"),
        ("a CUDA device index", "run model.device=cuda:7",
         "model.device='cuda:7' but no CUDA GPU is available here"),
        ("unknown device", "run model.device=tpu", "model.device must be a torch device such as cpu or cuda"),
        ("a GPU model's default device on a CPU machine", "run model=sd",
         "model.device='cuda' but no CUDA GPU is available here"),
    ],
    "checkpoint / data path": [  # checkpoints (sha256 manifests), data directories, local pipelines
        ("missing flow checkpoint", "run model.path=/nonexistent/flow.safetensors",
         "no checkpoint file '/nonexistent/flow.safetensors'"),
        ("corrupted checkpoint (sha256 differs from its manifest)",
         "run model.path={tmp}/ckpt/corrupt.safetensors",
         "is corrupted (sha256"),
        ("unreadable manifest", "run model.path={tmp}/ckpt/bad-manifest.safetensors",
         "is unreadable or incomplete"),
        ("checkpoint without its manifest", "run model.path={tmp}/ckpt/no-manifest.safetensors",
         "has no manifest 'no-manifest.json' beside it"),
        ("missing classifier checkpoint", "run model.classifier=/nonexistent/classifier.safetensors",
         "no checkpoint file '/nonexistent/classifier.safetensors'"),
        ("missing reward checkpoint",
         "run task=best_of_n reward=classifier reward.path=/nonexistent/classifier.safetensors",
         "no checkpoint file '/nonexistent/classifier.safetensors'"),
        ("missing MNIST directory", "run model.data_root={tmp}/no-mnist",
         "model.data_root: the data directory"),
        ("missing FID reference directory", "run metric=fid metric.data_root={tmp}/no-mnist",
         "metric.data_root: the data directory"),
        ("missing Inception weights",
         "run metric=fid metric.features=inception metric.inception_path=/nonexistent.pt",
         "metric.inception_path '/nonexistent.pt' does not exist"),
        ("missing local pipeline folder", "run model=sd3 model.device=cpu model.model_id=/nonexistent",
         "no such folder '/nonexistent'"),
        ("hub revision of a local pipeline folder", "run model=sd model.device=cpu model.model_id={tmp} "
         "model.revision=v1", "revision='v1' applies to a hub id, not to the local folder"),
        ("missing FLUX.2 reference image (before any weights load)",
         "run model=flux2 model.device=cpu model.image={tmp}/no-such.png", "image: no file at"),
        ("FLUX.2 reference that is not an image",
         "run model=flux2 model.device=cpu model.image={tmp}/binary.txt", "is not an image PIL can read"),
        ("FLUX.2 reference too small (in a list)",
         "run model=flux2 model.device=cpu 'model.image=[{tmp}/small.png,{tmp}/small.png]'",
         "small.png: Image too small: 80×32"),
        ("FLUX.1 Kontext given several references (before any weights load)",
         "run model=flux_kontext model.device=cpu 'model.image=[{tmp}/small.png,{tmp}/small.png]'",
         "FLUX.1 Kontext edits from one reference image, got a list of 2 (FLUX.2 takes several)"),
        ("a prompt's reference image that is missing (before any weights load)",
         "run model=flux2 model.device=cpu task=generate task.prompts={tmp}/edits-missing.jsonl",
         "edits-missing.jsonl prompt 1: image: no file at"),
        ("glass prompts on a file naming a missing reference image",
         "prompts {tmp}/edits-missing.jsonl", "edits-missing.jsonl prompt 1: image: no file at"),
        ("a prompt's reference image that is not a path",
         "run model=flux2 model.device=cpu task=generate task.prompts={tmp}/edits-number.jsonl",
         "prompt 0: image must be a path or a non-empty list of paths, got 3"),
        ("a family option of another family (before any weights load)",
         "run model=flux2 model.device=cpu +model.true_cfg_scale=2",
         "from_pipe got unknown options true_cfg_scale for flux2 (family options: image)"),
    ],
    "output directory": [  # glass.runner.check_out_dir, check_writable
        ("out_dir under a regular file", "run model=gmm sampler=glass out_dir={tmp}/a-file/sub",
         "cannot write to the output directory"),
        ("empty out_dir (would write into the working directory)", "run model=gmm sampler=glass out_dir=",
         "out_dir must be a directory path, got ''"),
        ("out_dir with ~ (nothing expands it)", "run model=gmm sampler=glass \"out_dir='~/x'\"",
         "starts with '~', which nothing expands here"),
        ("out_dir null", "run model=gmm sampler=glass out_dir=null", "must be a directory path, got None"),
        ("out_dir a number", "run model=gmm sampler=glass out_dir=123", "quote a number: out_dir='123'"),
        ("out_dir is a file", "run model=gmm sampler=glass out_dir={tmp}/a-file", "is a file, not a"),
        ("out_dir is a symbolic link loop", "run model=gmm sampler=glass out_dir={tmp}/loop",
         "is a dangling symbolic link (or a link loop)"),
        ("out_dir in /proc", "run model=gmm sampler=glass out_dir=/proc/self", "cannot write to the output"),
        ("training into an empty out_dir", "train flow out_dir=", "out_dir must be a directory path"),
        ("reproduce into an unwritable out_dir", "reproduce table4-sampling out_dir={tmp}/a-file/sub",
         "cannot write to the output directory"),
    ],
    "sweep": [  # glass.sweep, glass.cli: --sweep-dir, --fresh, launchers, duplicate jobs
        ("the same job twice", "run -m model=gmm sampler=glass seed=1,1",
         "job 1 repeats an earlier job of the sweep exactly"),
        ("one bad job (every job is validated first)", "run -m model=gmm sampler=glass task.t=0.2,1.5",
         "task.t must be a number in [0, 1), got 1.5"),
        ("--sweep-dir is a file", "run -m model=gmm sampler=glass --sweep-dir {tmp}/a-file",
         "is a file, not a directory"),
        ("--sweep-dir under a file", "run -m model=gmm sampler=glass --sweep-dir {tmp}/a-file/sub",
         "cannot be created"),
        ("--sweep-dir is some other directory", "run -m model=gmm sampler=glass --sweep-dir {tmp}/notes",
         "is not empty and is not a sweep directory (no sweep.json)"),
        ("sweep.json is a directory",
         "run -m model=gmm sampler=glass --sweep-dir {tmp}/sweeps/record-is-a-directory",
         "sweep.json' is not a file (a sweep's record); move it away"),
        ("--sweep-dir swallowed an override",
         "run -m model=gmm sampler=glass --sweep-dir out_dir={tmp}/elsewhere",
         "--sweep-dir needs a directory, got the override"),
        ("--sweep-dir without -m", "run model=gmm --sweep-dir {tmp}/s",
         "--sweep-dir applies to sweeps only; add -m"),
        ("--fresh without -m", "run model=gmm --fresh", "--fresh applies to sweeps only; add -m"),
        ("a launcher without -m", "run model=gmm hydra/launcher=joblib", "applies to sweeps only; add -m"),
        ("unknown launcher", "run -m model=gmm sampler=sde,glass hydra/launcher=nope",
         "Could not find 'hydra/launcher/nope' (installed: basic, "),
        ("joblib with no workers",
         "run -m model=gmm sampler=sde,glass hydra/launcher=joblib hydra.launcher.n_jobs=0",
         "hydra.launcher.n_jobs must be a non-zero integer"),
        ("SLURM where there is none", "run -m model=gmm sampler=sde,glass hydra/launcher=submitit_slurm",
         "needs a SLURM cluster, and sbatch is not on PATH here"),
        ("a glob() sweep", "run -m model=gmm sampler=glass 'sampler.steps=glob(*)'",
         "glob() sweeps are not supported; list the values"),
        ("an empty sweep (dropped every override before)", "run -m model=gmm sampler=glass 'seed=range(0,0)'",
         "gives no values (an empty sweep)"),
        ("joblib workers not a number", "run -m model=gmm sampler=sde,glass hydra/launcher=joblib "
         "hydra.launcher.n_jobs=abc", "hydra.launcher.n_jobs='abc' is not a value this launcher takes"),
        ("a joblib backend the plugin would ignore", "run -m model=gmm sampler=sde,glass "
         "hydra/launcher=joblib hydra.launcher.backend=threading", "hydra.launcher.backend must be loky"),
        ("submitit with a negative CPU count", "run -m model=gmm sampler=sde,glass "
         "hydra/launcher=submitit_local hydra.launcher.cpus_per_task=-1",
         "hydra.launcher.cpus_per_task must be an integer >= 1"),
        ("submitit jobs with no time", "run -m model=gmm sampler=sde,glass hydra/launcher=submitit_local "
         "hydra.launcher.timeout_min=0", "hydra.launcher.timeout_min must be an integer >= 1"),
        ("an option of another launcher", "run -m model=gmm sampler=sde,glass hydra.launcher.n_jobs=2",
         "cannot set up the launcher"),
        ("setting Hydra's sweep directory", "run -m model=gmm sampler=sde,glass hydra.sweep.dir={tmp}/x",
         "use --sweep-dir DIR"),
        ("jobs changing into their own directory", "run -m model=gmm sampler=sde,glass hydra.job.chdir=true",
         "keeps its jobs in the working directory"),
    ],
    "command line": [  # glass.cli: unknown commands and options, missing arguments (not click's box)
        ("unknown command", "nope", "No such command 'nope' (see glass --help)"),
        ("unknown global option", "--bogus", "No such option: --bogus (see glass --help)"),
        ("unknown option of run", "run --bogus", "unknown option '--bogus'; see glass run --help"),
        ("unknown short option", "run -x", "unknown option '-x'; see glass run --help"),
        ("option without its value", "run -m model=gmm --sweep-dir",
         "Option '--sweep-dir' requires an argument", "no_out_dir"),
        ("missing argument", "report", "Missing argument 'path' (see glass report --help)"),
        ("unknown report option", "report --bogus {tmp}",
         "No such option: --bogus (see glass report --help)"),
    ],
    "glass reproduce": [  # glass.reproduce: names, scales, extra overrides
        ("unknown experiment", "reproduce nope", "unknown experiment 'nope'; choose from: fig2-posterior"),
        ("unknown scale", "reproduce fig7-rho --scale huge",
         "experiment fig7-rho has no scale 'huge'; choose from: small, paper"),
        ("a scale this experiment lacks", "reproduce fig7-rho --scale large",
         "experiment fig7-rho has no scale 'large'; choose from: small, paper"),
        ("--scale without a value", "reproduce fig7-rho --scale",
         "Option '--scale' requires an argument", "no_out_dir"),
        ("unknown option of reproduce", "reproduce fig7-rho --bogus",
         "unknown option '--bogus'; see glass reproduce --help"),
        ("bad extra override", "reproduce fig7-rho task.nope=1", "unknown key 'task.nope'"),
    ],
    "experiment definition": [  # glass.definitions.load: broken experiments/reproduce/NAME.yaml
        ("YAML syntax error", "reproduce syntax",
         "experiment syntax: $TMP/defs/syntax.yaml is not valid YAML", "definitions"),
        ("not a mapping", "reproduce a-list",
         "experiment a-list: the definition must be a mapping", "definitions"),
        ("empty file", "reproduce empty",
         "experiment empty: the definition must be a mapping", "definitions"),
        ("no title", "reproduce no-title",
         "experiment no-title: title must be one line of text", "definitions"),
        ("no scales", "reproduce no-scales", "experiment no-scales: scales must be a mapping", "definitions"),
        ("a scale missing", "reproduce no-paper",
         "experiment no-paper: scales.paper.overrides must be a list", "definitions"),
        ("an unknown scale in the definition", "reproduce huge-scale",
         "experiment huge-scale: unknown scale 'huge' under scales; choose from: small, paper, large",
         "definitions"),
        ("a scale's description that is not text", "reproduce ours-list",
         "experiment ours-list: scales.large.ours must be text", "definitions"),
        ("an override that is not a string", "reproduce number-override",
         "scales.small.overrides must be a list of key=value strings", "definitions"),
        ("sweep values not a list", "reproduce sweep-value",
         "scales.small.sweep must be a mapping of lists", "definitions"),
        ("a sweep range that selects nothing", "reproduce empty-range",
         "scales.small.sweep.seed: range(5, 0) selects no values; a range must select 1 to 100,000 (as in "
         "Python, stop is excluded)", "definitions"),
        ("a sweep range written without quotes in a flow mapping", "reproduce unquoted-range",
         "scales.small.sweep.seed: 'range(0' is not Hydra's range(start, stop[, step]), in quotes "
         "(seed: \"range(0, 100)\")", "definitions"),
        ("variants not a mapping", "reproduce variants-list",
         "scales.small.variants must be a mapping of lists", "definitions"),
        ("a variant's own sweep not a mapping of lists", "reproduce variant-sweep",
         "scales.small.variants.b.sweep must be a mapping of lists or Hydra's range(start, stop[, step])",
         "definitions"),
        ("a variant that is neither overrides nor {overrides, sweep}", "reproduce variant-keys",
         "scales.small.variants.b must be a list of overrides or a mapping {overrides: [...], sweep: "
         "{key: [...]}}", "definitions"),
        ("report not a mapping", "reproduce report-list",
         "report must be a mapping with plots and tables", "definitions"),
        ("a plot without y", "reproduce plot-no-y",
         "every entry of report.plots needs x and y", "definitions"),
        ("a table without value", "reproduce table-no-value",
         "every entry of report.tables needs index and value", "definitions"),
        ("a plot that averages over a swept setting", "reproduce plot-averages",
         "report.plots: pearson against steps would average over task.t, which scale paper sweeps",
         "definitions"),
        ("a paired comparison of three methods", "reproduce paired-three",
         "report.paired must be a list of {value, key, pairs: [[a, b], ...]} mappings", "definitions"),
        ("an override with an unknown key", "reproduce bad-override",
         "unknown key 'sampler.nope'", "definitions"),
        ("two identical jobs", "reproduce twice",
         "repeats an earlier job of the sweep exactly", "definitions"),
    ],
    "glass report": [  # glass.report: paths that are not finished sweeps (see _fixtures)
        ("missing directory", "report {tmp}/missing", "no such directory: '$TMP/missing'"),
        ("a file", "report {tmp}/a-file", "is a file, not a sweep directory"),
        ("a directory that is not a sweep", "report {tmp}/notes",
         "is not a sweep directory (no sweep.json and no job directories)"),
        ("a sweep with no finished job", "report {tmp}/sweeps/empty",
         "no finished jobs in $TMP/sweeps/empty yet"),
        ("a sweep whose only job lost its metrics", "report {tmp}/sweeps/lost-metrics",
         "no finished jobs in $TMP/sweeps/lost-metrics: damaged records (000-0123456789ab: no metrics.json); "
         "run the sweep again to compute them"),
        ("damaged sweep.json", "report {tmp}/sweeps/damaged", "sweep.json is damaged (not JSON)"),
        ("sweep.json that is not an object", "report {tmp}/sweeps/not-an-object",
         "sweep.json is damaged (not a sweep record)"),
        ("a directory of single runs", "report {tmp}/single-runs",
         "is not a sweep directory (no sweep.json, and no finished sweep jobs)"),
    ],
    "secret": [  # glass.config: API keys only from the environment
        ("an API key in the config", "run model=gmm +logger.api_key=abc",
         "logger.api_key: secrets do not belong in the config"),
        ("an API key for the W&B logger", "run model=gmm logger=wandb logger.api_key=abc",
         "set the WANDB_API_KEY environment variable instead"),
        ("a hub token in the config", "run model=gmm +model.hf_token=abc",
         "model.hf_token: secrets do not belong in the config"),
        ("the key by interpolation", "run model=gmm logger=wandb 'logger.project=${oc.env:WANDB_API_KEY}'",
         "logger.project=${oc.env:WANDB_API_KEY}: secrets do not belong"),
        ("the key's value pasted into the config",
         "run model=gmm logger=wandb logger.entity=glass-fake-wandb-key-7f3c9d2e",
         "logger.entity holds the value of WANDB_API_KEY", "fake_key"),
    ],
    "glass train": [  # glass.cli.train
        ("unknown target", "train nope", "unknown training target 'nope'; choose from:"),
        ("unknown prior", "train flow prior=foo", "unknown prior 'foo'; choose from: gaussian, lowfreq"),
        ("unknown trainer key", "train flow trainer.nope=1", "unknown key 'trainer.nope'"),
        ("no training steps", "train flow trainer.max_steps=0", "trainer.max_steps must be an integer >= 1"),
        ("evaluation set too large", "train classifier trainer.eval_images=20000",
         "trainer.eval_images must be an integer in [1, 10000] or null, got 20000"),
        ("missing MNIST directory", "train flow data.root={tmp}/no-mnist", "data.root: the data directory"),
        ("unknown training precision", "train flow trainer.precision=fp16",
         "trainer.precision must be one of fp32, bf16, got 'fp16'"),
        ("learning-rate decay longer than training", "train flow trainer.max_steps=10 trainer.decay_steps=11",
         "trainer.decay_steps must be an integer in [0, 10], got 11"),
        ("resume as a word", "train flow trainer.resume=no",
         "trainer.resume must be true or false, got 'no'"),
        ("warm-up steps not a number", "train flow trainer.warmup_steps=abc",
         "trainer.warmup_steps must be an integer >= 0, got 'abc'"),
        ("negative learning rate of G", "train lowres trainer.lr=-1",
         "trainer.lr must be a number > 0, got -1"),
        ("EMA decay above 1", "train lowres trainer.ema_decay=1.5",
         "trainer.ema_decay must be a number in [0, 1), got 1.5"),
        ("negative thread count", "train classifier trainer.threads=-3",
         "trainer.threads must be an integer >= 1, got -3"),
        ("training on CUDA without a GPU", "train flow trainer.device=cuda",
         "trainer.device='cuda' but no CUDA GPU is available here; use trainer.device=cpu"),
    ],
}
# fmt: on


def _case(category: str, what: str, command: str, expect: str, *options: str) -> Case:
    setup = tuple(o for o in options if o != "no_out_dir")
    return Case(category, command, expect, what, setup, add_out_dir="no_out_dir" not in options)


CASES = [_case(category, *row) for category, rows in _TABLE.items() for row in rows]

_DEFINITIONS = {
    "syntax": "title: x\nscales: [\n",
    "a-list": "- a\n- b\n",
    "empty": "",
    "no-title": "scales:\n  small: {overrides: [model=gmm]}\n  paper: {overrides: [model=gmm]}\n",
    "no-scales": "title: x\n",
    "no-paper": "title: x\nscales:\n  small: {overrides: [model=gmm]}\n",
    "huge-scale": "title: x\nscales:\n  small: {overrides: []}\n  paper: {overrides: []}\n"
                  "  huge: {overrides: []}\n",
    "ours-list": "title: x\nscales:\n  small: {overrides: []}\n  paper: {overrides: []}\n"
                 "  large: {overrides: [], ours: [a]}\n",
    "number-override": "title: x\nscales:\n  small: {overrides: [model=gmm, 5]}\n  paper: {overrides: []}\n",
    "sweep-value": "title: x\nscales:\n  small: {overrides: [model=gmm], sweep: {seed: 3}}\n"
    "  paper: {overrides: []}\n",
    "empty-range": "title: x\nscales:\n  small: {overrides: [model=gmm], sweep: {seed: 'range(5, 0)'}}\n"
    "  paper: {overrides: []}\n",
    "unquoted-range": "title: x\nscales:\n  small: {overrides: [model=gmm], sweep: {seed: range(0, 5)}}\n"
    "  paper: {overrides: []}\n",
    "variant-keys": "title: x\nscales:\n  small: {overrides: [model=gmm], variants: {b: {seeds: [1]}}}\n"
    "  paper: {overrides: []}\n",
    "variants-list": "title: x\nscales:\n  small: {overrides: [model=gmm], variants: [a, b]}\n"
    "  paper: {overrides: []}\n",
    "variant-sweep": "title: x\nscales:\n  small: {overrides: [model=gmm], variants: {a: [], b: {sweep: "
    "{seed: 3}}}}\n  paper: {overrides: []}\n",
    "report-list": "title: x\nscales:\n  small: {overrides: []}\n  paper: {overrides: []}\nreport: [1]\n",
    "plot-no-y": "title: x\nscales:\n  small: {overrides: []}\n  paper: {overrides: []}\n"
    "report: {plots: [{x: steps}]}\n",
    "table-no-value": "title: x\nscales:\n  small: {overrides: []}\n  paper: {overrides: []}\n"
    "report: {tables: [{index: [sampler]}]}\n",
    "plot-averages": "title: x\nscales:\n  small: {overrides: []}\n  paper: {overrides: [], sweep: "
    "{task.t: [0.05, 0.7]}}\nreport: {plots: [{x: steps, y: pearson, series: kernel}]}\n",
    "paired-three": "title: x\nscales:\n  small: {overrides: []}\n  paper: {overrides: []}\n"
    "report: {paired: [{value: fid, key: kernel, pairs: [[ode, sde, glass]]}]}\n",
    "bad-override": "title: x\nscales:\n  small: {overrides: [model=gmm, sampler.nope=1]}\n"
    "  paper: {overrides: []}\n",
    "twice": "title: x\nscales:\n  small: {overrides: [model=gmm, sampler=glass], sweep: {seed: [1, 1]}}\n"
    "  paper: {overrides: []}\n",
}


def _fixtures(tmp: Path) -> None:
    """Files the cases point at: a regular file, a data point, a non-sweep directory, damaged sweeps, a
    directory of single runs, broken checkpoints, a too-small image and broken experiment definitions."""
    (tmp / "a-file").write_text("not a directory\n")
    (tmp / "prompt-dir.txt").mkdir(exist_ok=True)
    (tmp / "binary.txt").write_bytes(bytes(range(128, 256)))
    if not (tmp / "loop").is_symlink():
        (tmp / "loop").symlink_to("loop")  # a link to itself
    import torch

    torch.save(torch.zeros(2, dtype=torch.float64), tmp / "point.pt")  # one oracle data point (d = 2)
    from PIL import Image

    Image.new("RGB", (80, 32)).save(tmp / "small.png")  # below FLUX.2's 64 pixels a side
    edits = {"missing": [{"prompt": "a cat", "image": "small.png"}, {"prompt": "red", "image": ["no.png"]}],
             "number": [{"prompt": "a cat", "image": 3}]}  # prompt files with reference images
    for name, records in edits.items():
        (tmp / f"edits-{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (tmp / "notes").mkdir()
    (tmp / "notes" / "todo.txt").write_text("not a sweep\n")
    sweeps = {"empty": '{"group": "g", "jobs": []}', "damaged": "{trunc", "not-an-object": "[1]"}
    for name, text in sweeps.items():
        (tmp / "sweeps" / name).mkdir(parents=True)
        (tmp / "sweeps" / name / "sweep.json").write_text(text)
    (tmp / "sweeps" / "record-is-a-directory" / "sweep.json").mkdir(parents=True)
    lost = tmp / "sweeps" / "lost-metrics" / "000-0123456789ab"  # a job whose metrics.json is gone
    lost.mkdir(parents=True)
    (lost.parent / "sweep.json").write_text('{"group": "g", "jobs": [{"name": "000-0123456789ab"}]}')
    (lost / "job.json").write_text(json.dumps({"overrides": ["model=gmm"], "config_hash": "0123456789ab"}))
    run = tmp / "single-runs" / "10-00-00-000-posterior-glass-abcdef"
    run.mkdir(parents=True)
    (run / "job.json").write_text(json.dumps({"overrides": ["model=gmm"]}))
    (run / "metrics.json").write_text(json.dumps({"seed": 0, "wall_time_s": 1.0, "rows": [{"energy": 0.1}]}))
    ckpt = tmp / "ckpt"
    ckpt.mkdir()
    manifest = json.loads((ROOT / "glass" / "assets" / "mnist_flow.json").read_text())
    (ckpt / "corrupt.safetensors").write_bytes(b"\0" * 64)
    (ckpt / "corrupt.json").write_text(json.dumps(manifest))
    (ckpt / "bad-manifest.safetensors").write_bytes(b"\0" * 64)
    (ckpt / "bad-manifest.json").write_text("{")
    (ckpt / "no-manifest.safetensors").write_bytes(b"\0" * 64)
    defs = tmp / "defs"
    defs.mkdir()
    for name, text in _DEFINITIONS.items():
        (defs / f"{name}.yaml").write_text(text)


@dataclass
class Outcome:
    exit_code: int
    stdout: str
    stderr: str  # with the scratch directory written as $TMP
    written: list[str]  # run directories and metrics files the case left behind (must be none)

    @property
    def line(self) -> str:
        return self.stderr.strip()


def run_case(case: Case, tmp: Path) -> Outcome:
    """Run ``glass <case.command>`` in-process with ``tmp`` as scratch and working directory."""
    import pytest
    import torch
    from typer.testing import CliRunner

    import glass.definitions
    from glass.cli import app

    tmp.mkdir(parents=True, exist_ok=True)
    _fixtures(tmp)
    argv = [a.replace("{tmp}", str(tmp)) for a in case.argv]
    if case.add_out_dir and argv[0] in ("run", "reproduce", "train"):
        if not any(a.startswith("out_dir=") for a in argv):
            argv.append(f"out_dir={tmp / 'out'}")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(tmp)  # a default or relative output path lands in the scratch directory
        mp.setattr(torch.cuda, "is_available", lambda: False)  # the same messages on a GPU machine
        mp.setattr("glass.tasks.base.memory_bytes", lambda: 16 * 2**30)  # ... and on any machine
        mp.delenv("GLASS_DEBUG", raising=False)
        mp.delenv("WANDB_API_KEY", raising=False)
        mp.setenv("WANDB_MODE", "disabled")
        if "definitions" in case.setup:
            mp.setattr(glass.definitions, "definitions_dir", lambda: tmp / "defs")
        if "fake_key" in case.setup:
            mp.setenv("WANDB_API_KEY", FAKE_KEY)
        for key, value in _shown_env(case).items():
            mp.setenv(key, value)
        res = CliRunner().invoke(app, argv)
    outputs = ("runs", "multirun", "reproduce", "train")
    made = ["out (the default out_dir was created)"] if (tmp / "out").exists() else []
    written = made + sorted(
        str(p.relative_to(tmp))
        for p in tmp.rglob("*")
        if p.relative_to(tmp).parts[0] != "single-runs"  # a fixture
        and (p.name == "metrics.json" or (p.is_dir() and p.name in outputs))
    )
    return Outcome(res.exit_code, res.stdout, res.stderr.replace(str(tmp), "$TMP"), written)


def problems(case: Case, out: Outcome) -> list[str]:
    """What is wrong with the CLI's answer to ``case`` (nothing, when the check holds)."""
    found = []
    if out.exit_code == 0:
        found.append("exit code 0")
    if "Traceback" in out.stderr or "Traceback" in out.stdout:
        found.append("a traceback")
    if out.stderr.count("\n") != 1 or not out.stderr.startswith("error: "):
        found.append("not exactly one line `error: ...` on stderr")
    if case.expect not in out.line:
        found.append(f"no {case.expect!r} in the error")
    if out.stdout:
        found.append("output on stdout")
    if out.written:
        found.append(f"wrote {', '.join(out.written)}")
    return found


def command_line(case: Case) -> str:
    """The case's command as a user types it, with $TMP for the scratch directory."""
    env = "".join(f"{k}={v} " for k, v in _shown_env(case).items())
    line = shlex.join(a.replace("{tmp}", "TMPDIR") for a in case.argv).replace("TMPDIR", "$TMP")
    return f"{env}glass {line}"


def _shown_env(case: Case) -> dict[str, str]:
    """The environment a case sets that its command line shows (the fake API key is not shown)."""
    return {"WANDB_MODE": "bogus"} if "bad_wandb_mode" in case.setup else {}


def _cell(text: str, code: bool = False) -> str:
    text = text.replace("|", "\\|")
    return f"`` {text} ``" if code else text


HEADER = """# Input validation

<!-- Generated by `python -m tests.validation_cases` from tests/validation_cases.py: do not edit. -->

Every user input below is checked before any work starts and before any run directory is created:
the CLI prints one line `error: ...` on stderr, naming the value and what is allowed, and exits with
code 2 (bad input). The messages are shown exactly as printed (`$TMP` is a scratch directory).
`tests/test_reliability.py` runs every row through the CLI and checks the exit code, the single
line, that there is no traceback and that nothing was written; it also checks that this file is what
`python -m tests.validation_cases` writes now, so the table cannot drift from the code.

Failures that are not bad input: an error while a run is underway (a bug, a full disk, a job of a
sweep that raised, a launcher that fails) is one line with exit code 1; the run's directory stays
`<dir>.partial` or becomes `<dir>.failed` with `error.txt`, and finished runs are never touched.
Ctrl-C exits with 130 and says what is kept. Progress lines (`task: k/total, elapsed ..., ETA ...`, in a sweep
`[job/jobs] task: ...`)
may precede a run-time error on stderr; bad input is refused before any of them. A W&B failure (no
network, a bad key, an unwritable W&B directory) never stops a run: one `warning:` line, local
outputs as usual. API keys never go into the config (it is saved with every run): W&B reads
`WANDB_API_KEY` from the environment.
"""


def render(outcomes: list[tuple[Case, Outcome]]) -> str:
    """docs/validation.md from the cases and what the CLI printed for each."""
    lines = [
        HEADER,
        f"{len(outcomes)} checked inputs.",
        "",
        "| category | input | example command | exit | error (as printed) |",
        "|---|---|---|---|---|",
    ]
    for case, out in outcomes:
        lines.append(
            f"| {case.category} | {_cell(case.what)} | {_cell(command_line(case), True)} "
            f"| {out.exit_code} | {_cell(out.line, True)} |"
        )
    return "\n".join(lines) + "\n"


def run_all(base: Path) -> list[tuple[Case, Outcome]]:
    return [(case, run_case(case, base / f"case{i:03d}")) for i, case in enumerate(CASES)]


def main() -> int:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        outcomes = run_all(Path(tmp))
    failing = 0
    for case, out in outcomes:
        if problems(case, out):
            failing += 1
            print(f"does not hold: {command_line(case)}: {'; '.join(problems(case, out))}", file=sys.stderr)
            print(f"  exit {out.exit_code}: {out.stderr.strip()}", file=sys.stderr)
    DOC.parent.mkdir(exist_ok=True)
    DOC.write_text(render(outcomes))
    print(f"wrote {DOC.relative_to(ROOT)}: {len(outcomes)} cases, {failing} not holding")
    return 1 if failing else 0


if __name__ == "__main__":
    sys.exit(main())
