"""train: DDP on CPU with a kill and resume, learning on a tiny dataset, and bad configs."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from oft_policy.checkpoint import load_policy

import oft_training
from oft_training.cli import train as train_cli
from oft_training.train_config import TrainConfigError, load_config
from oft_training.trainer import lr_at, train

TINY_CONFIG = Path(oft_training.__file__).resolve().parent / "configs" / "tiny_cpu.yaml"


def _metrics(output_dir):
    return [json.loads(line) for line in (Path(output_dir) / "metrics.jsonl").read_text().splitlines()]


def _train_command(dataset, output_dir, *extra):
    return [sys.executable, "-m", "oft_training.cli.train", "--config", str(TINY_CONFIG), "--nproc-per-node", "2",
            f"data.dataset={dataset}", f"training.output_dir={output_dir}", "training.max_steps=40",
            "training.checkpoint_every=5", "training.validate_every=1000", "training.batch_size=2", *extra]


@pytest.mark.slow
def test_ddp_two_processes_kill_and_resume(tiny_dataset, tmp_path, ros_env):
    out = tmp_path / "run"
    env = dict(ros_env, OMP_NUM_THREADS="1")
    process = subprocess.Popen(_train_command(tiny_dataset, out), env=env, start_new_session=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 240
        while not (out / "checkpoints" / "step_0000005").is_dir():
            assert process.poll() is None, process.stderr.read()[-2000:]
            assert time.monotonic() < deadline, "no checkpoint within the time limit"
            time.sleep(0.05)
        os.killpg(process.pid, signal.SIGKILL)  # the launcher's own session: torchrun and its 2 workers
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)
    killed_at = max(int(p.name.split("_")[1]) for p in (out / "checkpoints").glob("step_*"))
    assert killed_at < 40, "the run finished before it was killed"

    resumed = subprocess.run(_train_command(tiny_dataset, out, "--resume"), env=env, capture_output=True,
                             text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert (out / "checkpoints" / "step_0000040" / "training_state.pt").is_file()
    assert not list((out / "checkpoints").glob(".step_*"))  # no staging directory left behind

    config = load_config(TINY_CONFIG, [f"data.dataset={tiny_dataset}"])
    opt = config["optimizer"]
    after = [m for m in _metrics(out) if m["step"] > killed_at]
    assert after[0]["step"] == killed_at + 1 and after[-1]["step"] == 40
    for entry in after:  # the schedule continues where the checkpoint left it
        assert entry["train/lr"] == pytest.approx(lr_at(entry["step"] - 1, opt["lr"], opt["min_lr"], opt["warmup_steps"], 40))

    policy = load_policy(out / "checkpoints" / "step_0000040" / "policy")
    chunk = policy.predict({"cam_high": np.zeros((32, 32, 3), np.uint8)}, "fold the towel", np.zeros(14))
    assert chunk.shape == (8, 14) and np.all(np.isfinite(chunk))
    # The checkpoint says what resolution its images were recorded at (an evaluation renders the same).
    assert policy.config.extra["camera_shapes"] == {"cam_high": [32, 32]}


@pytest.mark.slow
def test_killed_while_writing_checkpoints_resume_takes_the_last_complete_one(tiny_dataset, tmp_path, ros_env):
    """A checkpoint every step, SIGKILL at random moments: no step_* directory is ever partial, and --resume
    continues from the newest one. How many kills fell inside a checkpoint write is counted (staging left)."""
    from oft_policy.testing.reliability import record_outcome

    from oft_training.run_files import latest_checkpoint

    out = tmp_path / "run"
    env = dict(ros_env, OMP_NUM_THREADS="1")
    rng = np.random.default_rng(7)

    def command(max_steps=400):
        return [sys.executable, "-m", "oft_training.cli.train", "--config", str(TINY_CONFIG),
                f"data.dataset={tiny_dataset}", f"training.output_dir={out}", f"training.max_steps={max_steps}",
                "training.checkpoint_every=1", "training.validate_every=1000", "training.batch_size=2"]

    mid_write = 0
    kills = ("while a checkpoint is staged", "while a checkpoint is staged", "at a random moment")
    for kill, when in enumerate(kills):
        before = latest_checkpoint(out)
        process = subprocess.Popen(command() + (["--resume"] if kill else []), env=env, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 120
            while latest_checkpoint(out) == before:
                assert process.poll() is None, process.stderr.read()[-2000:]
                assert time.monotonic() < deadline, "no new checkpoint"
                time.sleep(0.01)
            if when == "at a random moment":
                time.sleep(rng.uniform(0.05, 0.6))
            else:  # the staging directory of the next checkpoint exists: the write is under way
                while not list((out / "checkpoints").glob(".step_*")):
                    assert process.poll() is None and time.monotonic() < deadline, "no checkpoint write seen"
                    time.sleep(0.001)
            process.kill()
            process.wait(timeout=30)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=30)
        mid_write += bool(list((out / "checkpoints").glob(".step_*")))
        for step in (out / "checkpoints").glob("step_*"):  # every one that looks complete is complete
            assert (step / "training_state.pt").is_file() and (step / "policy" / "manifest.json").is_file(), step
    assert mid_write >= 2, "the kills meant to land inside a checkpoint write missed it"
    newest = latest_checkpoint(out)
    load_policy(newest / "policy")
    step = int(newest.name.split("_")[1])
    resumed = subprocess.run(command(max_steps=step + 1) + ["--resume"], env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert [m["step"] for m in _metrics(out)][-1] == step + 1
    assert not list((out / "checkpoints").glob(".step_*"))  # the resumed run cleared the staging
    record_outcome(
        "Training killed while writing a checkpoint (SIGKILL)",
        "no partial checkpoint directory ever looks complete; --resume continues from the newest complete one",
        kills=len(kills), kills_during_a_checkpoint_write=mid_write, partial_checkpoints_seen_as_complete=0,
        resumed_from_step=step)


def test_training_learns_on_tiny_dataset(tiny_dataset, tmp_path):
    config = load_config(TINY_CONFIG, [
        f"data.dataset={tiny_dataset}", f"training.output_dir={tmp_path / 'run'}", "training.max_steps=100",
        "training.validate_every=50", "training.checkpoint_every=100", "training.batch_size=8",
        "training.augment=false", "optimizer.lr=3e-3", "optimizer.warmup_steps=10",
    ])
    result = train(config, progress=False)
    # Held-out episode (the last one), normalized action units.
    assert result.first_val_l1 > 0.3
    assert result.last_val_l1 < 0.35 * result.first_val_l1, (result.first_val_l1, result.last_val_l1)


def test_bad_input_unknown_config_key(tiny_dataset, tmp_path, capsys):
    out = tmp_path / "run"
    code = train_cli.main(["--config", str(TINY_CONFIG), f"data.dataset={tiny_dataset}",
                           f"training.output_dir={out}", "optimizer.learning_rate=1e-4"])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert code != 0 and "unknown key optimizer.learning_rate" in err and "known keys of optimizer" in err
    assert not out.exists()
    with pytest.raises(TrainConfigError, match="unknown section"):
        load_config(None, ["trainer.steps=3"])


def test_bad_input_action_dim_disagrees(tiny_dataset, tmp_path, capsys):
    out = tmp_path / "run"
    code = train_cli.main(["--config", str(TINY_CONFIG), f"data.dataset={tiny_dataset}",
                           f"training.output_dir={out}", "model.action_dim=7"])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert code != 0 and "action_dim 14 but config model.action_dim is 7" in err
    assert not out.exists()  # no partial checkpoint or run directory


def test_lr_schedule_shape():
    values = [lr_at(s, 1e-3, 1e-6, 10, 100) for s in range(100)]
    assert values[0] == pytest.approx(1e-4) and values[9] == pytest.approx(1e-3)
    assert all(a >= b for a, b in zip(values[9:], values[10:]))
    assert values[-1] == pytest.approx(1e-6, abs=1e-6)


def test_resume_reproduces_the_uninterrupted_run(tiny_dataset, tmp_path):
    """Same LR schedule and data order after a resume: the weights match a run that never stopped."""
    import shutil

    import torch

    out = tmp_path / "run"
    config = load_config(TINY_CONFIG, [
        f"data.dataset={tiny_dataset}", f"training.output_dir={out}", "training.max_steps=6",
        "training.checkpoint_every=3", "training.validate_every=100", "training.logger=none",
    ])
    train(config, progress=False)
    uninterrupted = torch.load(out / "checkpoints" / "step_0000006" / "training_state.pt", weights_only=False)
    shutil.rmtree(out / "checkpoints" / "step_0000006")  # as if the run died after step 3's checkpoint
    result = train(config, resume=True, progress=False)
    assert result.start_step == 3 and result.final_checkpoint.name == "step_0000006"
    resumed = torch.load(result.final_checkpoint / "training_state.pt", weights_only=False)
    assert resumed["model"].keys() == uninterrupted["model"].keys()
    for name, value in uninterrupted["model"].items():
        torch.testing.assert_close(resumed["model"][name], value, rtol=1e-5, atol=1e-6, msg=name)
    with pytest.raises(TrainConfigError, match="already holds checkpoints"):
        train(config, progress=False)


def test_first_cycle_steps_is_a_finished_run_resumed_longer(tiny_dataset, tmp_path):
    """optimizer.first_cycle_steps=N with max_steps M trains the same weights as a run of N steps
    resumed with max_steps M (the schedule's restart is where the longer cosine stands at N)."""
    import torch

    common = ["training.checkpoint_every=4", "training.validate_every=100", "training.logger=none",
              "training.log_every=1", "optimizer.warmup_steps=1"]
    extended = tmp_path / "extended"
    train(load_config(TINY_CONFIG, [f"data.dataset={tiny_dataset}", f"training.output_dir={extended}",
                                    "training.max_steps=4", *common]), progress=False)
    resumed = train(load_config(TINY_CONFIG, [f"data.dataset={tiny_dataset}", f"training.output_dir={extended}",
                                              "training.max_steps=8", *common]), resume=True, progress=False)
    one_go = train(load_config(TINY_CONFIG, [f"data.dataset={tiny_dataset}", f"training.output_dir={tmp_path / 'one'}",
                                             "training.max_steps=8", "optimizer.first_cycle_steps=4", *common]),
                   progress=False)
    a = torch.load(resumed.final_checkpoint / "training_state.pt", weights_only=False)["model"]
    b = torch.load(one_go.final_checkpoint / "training_state.pt", weights_only=False)["model"]
    for name, value in a.items():
        torch.testing.assert_close(b[name], value, rtol=1e-5, atol=1e-6, msg=name)
    opt = load_config(TINY_CONFIG, [f"data.dataset={tiny_dataset}"])["optimizer"]
    lrs = {e["step"]: e["train/lr"] for e in _metrics(tmp_path / "one") if "train/lr" in e}
    assert sorted(lrs) == list(range(1, 9))
    for step, lr in lrs.items():
        assert lr == pytest.approx(lr_at(step - 1, opt["lr"], opt["min_lr"], 1, 8, 4))
    assert lrs[5] > 2 * lrs[4]  # the second cycle starts well above where the first one ended


def test_first_cycle_steps_schedule_and_bounds(tiny_dataset):
    stitched = [lr_at(s, 1e-3, 1e-6, 10, 100, first_cycle_steps=40) for s in range(100)]
    assert stitched[:40] == [lr_at(s, 1e-3, 1e-6, 10, 40) for s in range(40)]
    assert stitched[40:] == [lr_at(s, 1e-3, 1e-6, 10, 100) for s in range(40, 100)]
    for bad in (5, 100, 2.5, "soon"):
        with pytest.raises(TrainConfigError, match="first_cycle_steps"):
            load_config(TINY_CONFIG, [f"data.dataset={tiny_dataset}", "optimizer.warmup_steps=10",
                                      "training.max_steps=100", f"optimizer.first_cycle_steps={bad}"])


def test_proprio_noise_only_in_training_batches():
    """training.proprio_noise_std blurs the proprio of training batches, reproducibly per generator;
    validation batches (train=False) and a zero std leave it exact."""
    import torch
    from oft_policy.model import OFTConfig
    from oft_policy.model.build import build_tokenizer
    from oft_training.batching import Batcher

    config = OFTConfig(backbone="tiny", camera_names=("cam_high",), chunk_size=2)
    tokenizer = build_tokenizer(config)
    proprio = torch.linspace(-1, 1, config.action_dim)
    samples = [{"images": [np.zeros((32, 32, 3), np.uint8)], "instruction": "pick", "proprio": proprio,
                "actions": torch.zeros(2, config.action_dim), "pad_mask": torch.zeros(2, dtype=torch.bool)}] * 64

    def batch(std, train, seed=0):
        return Batcher(config, tokenizer, torch.device("cpu"), std)(samples, train, torch.Generator().manual_seed(seed))

    noisy = batch(0.1, True)["proprio"] - proprio
    assert noisy.std().item() == pytest.approx(0.1, rel=0.1)
    assert torch.equal(batch(0.1, True)["proprio"], batch(0.1, True)["proprio"])  # same generator, same noise
    assert not torch.equal(batch(0.1, True, seed=1)["proprio"], batch(0.1, True)["proprio"])
    assert torch.equal(batch(0.1, False)["proprio"], proprio.expand(64, -1))
    assert torch.equal(batch(0.0, True)["proprio"], proprio.expand(64, -1))


def test_sim_recipe_trains_on_frozen_imagenet_features(tiny_dataset, tmp_path):
    """The transfer-cube recipe: EfficientNet-Lite0 stages keep their ImageNet weights; the rest learns."""
    import torch
    from oft_policy.model.efficientnet import EfficientNetLiteStages

    recipe = TINY_CONFIG.parent / "sim_transfer_cube.yaml"
    config = load_config(recipe, [
        f"data.dataset={tiny_dataset}", f"training.output_dir={tmp_path / 'run'}", "training.max_steps=4",
        "training.validate_every=1000", "training.checkpoint_every=4", "training.batch_size=2",
        "optimizer.warmup_steps=1", "optimizer.first_cycle_steps=0",
    ])
    assert config["model"]["tiny_vision"] == "efficientnet_lite0" and config["model"]["freeze_vision"]
    train(config, progress=False)
    policy = load_policy(tmp_path / "run" / "checkpoints" / "step_0000004" / "policy")
    imagenet = EfficientNetLiteStages()
    imagenet.load_imagenet_weights()
    trained = policy.model.vision_backbone
    assert all(torch.equal(a, b) for a, b in zip(imagenet.state_dict().values(), trained.featurizer.state_dict().values()))
    assert trained.film_shift.bias.abs().max() > 0  # zero at initialization: the trainable layers learned


def test_prefix_conditioned_training_masks_the_committed_rows_and_loads_for_inference(tiny_dataset, tmp_path):
    """model.max_prefix_steps: training batches carry 0..N committed rows each (validation none), the loss
    leaves them out, and the checkpoint continues committed actions at inference."""
    import torch
    from oft_training.batching import Batcher, loss_mask

    config = load_config(TINY_CONFIG, [
        f"data.dataset={tiny_dataset}", f"training.output_dir={tmp_path / 'run'}", "training.max_steps=3",
        "training.validate_every=1000", "training.checkpoint_every=3", "training.batch_size=2",
        "optimizer.warmup_steps=1", "model.max_prefix_steps=3",
    ])
    train(config, progress=False)
    policy = load_policy(tmp_path / "run" / "checkpoints" / "step_0000003" / "policy")
    assert policy.spec.max_prefix_steps == 3 and policy.model.prefix_projector.weight.abs().sum() > 0

    chunk = policy.config.chunk_size
    sample = {"images": [np.zeros((32, 32, 3), np.uint8)] * policy.config.num_cameras, "instruction": "pick",
              "proprio": torch.zeros(policy.config.action_dim), "actions": torch.zeros(chunk, policy.config.action_dim),
              "pad_mask": torch.zeros(chunk, dtype=torch.bool)}
    batcher = Batcher(policy.config, policy.tokenizer, torch.device("cpu"))
    train_batch = batcher([sample] * 64, True, torch.Generator().manual_seed(0))
    assert set(train_batch["prefix_steps"].tolist()) == {0, 1, 2, 3}
    assert torch.equal(loss_mask(train_batch)[:, :3].sum(1), train_batch["prefix_steps"])
    assert not batcher([sample] * 4, False)["prefix_steps"].any()

    images = {name: np.zeros((48, 64, 3), np.uint8) for name in policy.spec.camera_names}
    proprio = policy.stats.proprio.mean
    committed = policy.predict(images, "pick", proprio)[:2] + 0.05
    plain = policy.predict(images, "pick", proprio)
    continued = policy.predict(images, "pick", proprio, committed=committed)
    assert plain.shape == continued.shape and not np.allclose(plain, continued)
    with pytest.raises(ValueError, match="at most 3"):
        policy.predict(images, "pick", proprio, committed=np.zeros((4, policy.config.action_dim)))
