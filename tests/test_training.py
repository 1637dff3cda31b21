"""Training on CPU: outputs, seeds, resume, imbalance options, config files, DDP with gloo."""
from __future__ import annotations

import os
import subprocess
import sys

import pandas as pd
import pytest
import torch
import yaml

from cxr_device.cohort import CohortSettings, build_cohort, write_cohort
from cxr_device.errors import CxrDeviceError
from cxr_device.models import ModelSpec
from cxr_device.train_config import TrainConfig, load_config
from cxr_device.training import HISTORY_COLUMNS, train

CONFIG = TrainConfig(model=ModelSpec(arch="small_cnn"), image_size=32, epochs=2, batch_size=8, lr=1e-3, workers=0)


@pytest.fixture(scope="module")
def cohort_dir(tmp_path_factory):
    from cxr_device.synth import SynthSettings, generate

    root = tmp_path_factory.mktemp("train")
    csv_path = generate(root / "data", SynthSettings(n_patients=24, seed=5, image_size=48), progress=False)
    return write_cohort(build_cohort(CohortSettings(metadata=str(csv_path), images=(str(root / "data"),), seed=1)),
                        root / "run" / "cohort")


def _weights(path):
    return torch.load(path, weights_only=True)["model"]


def test_outputs_of_a_run(cohort_dir, tmp_path):
    result = train(cohort_dir, tmp_path, CONFIG, progress=False)
    model_dir = tmp_path / "model"
    history = pd.read_csv(model_dir / "history.csv")
    assert list(history.columns) == HISTORY_COLUMNS and len(history) == 2
    assert history["train_loss"].notna().all() and history["images_per_s"].gt(0).all()
    assert history["val_auroc"].between(0, 1).all()
    for name in ("best.pt", "last.pt", "training_curves.png", "layers.json", "train_summary.json", "config.yaml"):
        assert (model_dir / name).is_file(), name
    saved = yaml.safe_load((model_dir / "config.yaml").read_text())
    assert saved["model"]["arch"] == "small_cnn" and saved["preprocessing"]["stored_size"] == 36
    assert result.n_unreadable == 0
    assert result.history["train_loss"].tolist() == pytest.approx(history["train_loss"].tolist())


@pytest.mark.requirement("REQ-TRAIN-001")
def test_same_seed_same_losses_other_seed_differs(cohort_dir, tmp_path):
    a = train(cohort_dir, tmp_path / "a", CONFIG, progress=False).history
    b = train(cohort_dir, tmp_path / "b", CONFIG, progress=False).history
    c = train(cohort_dir, tmp_path / "c", CONFIG.with_overrides(seed=1), progress=False).history
    assert a["train_loss"].tolist() == b["train_loss"].tolist()
    assert a["train_loss"].iloc[0] != c["train_loss"].iloc[0]


@pytest.mark.requirement("REQ-TRAIN-001")
@pytest.mark.parametrize("cpu_bf16", [False, True], ids=["fp32", "cpu_bf16"])
def test_resume_reproduces_the_uninterrupted_run(cohort_dir, tmp_path, kill_training, cpu_bf16):
    config = CONFIG.with_overrides(epochs=3, cpu_bf16=cpu_bf16)
    full = train(cohort_dir, tmp_path / "full", config, progress=False).history
    arm, disarm = kill_training
    arm(2)  # killed during the second epoch
    with pytest.raises(KeyboardInterrupt):
        train(cohort_dir, tmp_path / "cut", config, progress=False)
    disarm()
    with pytest.raises(CxrDeviceError, match="--resume"):
        train(cohort_dir, tmp_path / "cut", config, progress=False)
    resumed = train(cohort_dir, tmp_path / "cut", config, resume=True, progress=False).history
    cols = ["epoch", "train_loss", "val_loss", "val_auroc"]
    pd.testing.assert_frame_equal(full[cols], resumed[cols])
    a, b = _weights(tmp_path / "full/model/last.pt"), _weights(tmp_path / "cut/model/last.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("imbalance", ["none", "balanced_sampler"])
def test_imbalance_options_train(cohort_dir, tmp_path, imbalance):
    history = train(cohort_dir, tmp_path, CONFIG.with_overrides(imbalance=imbalance, epochs=1), progress=False).history
    assert len(history) == 1 and history["train_loss"].notna().all()


def test_early_stopping(cohort_dir, tmp_path):
    result = train(cohort_dir, tmp_path, CONFIG.with_overrides(epochs=8, patience=1, lr=0.5), progress=False)
    assert result.stopped_early and len(result.history) < 8


def test_config_yaml_round_trip_and_errors(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model: {arch: resnet18, freeze: layer2}\nepochs: 4\naugmentation: {rotation_degrees: 5}\n")
    config = load_config(path)
    assert (config.model.arch, config.model.freeze, config.epochs, config.augmentation.rotation_degrees) == \
        ("resnet18", "layer2", 4, 5)
    path.write_text("model: {arch: resnet18, colour: red}\n")
    with pytest.raises(CxrDeviceError, match="model.colour"):
        load_config(path)
    path.write_text("epochz: 3\n")
    with pytest.raises(CxrDeviceError, match="epochz"):
        load_config(path)
    path.write_text("optimizer: lbfgs\n")
    with pytest.raises(CxrDeviceError, match="adamw or sgd"):
        load_config(path)


def test_cuda_requested_without_gpu_is_a_clear_error(cohort_dir, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(CxrDeviceError, match="no CUDA GPU"):
        train(cohort_dir, tmp_path, CONFIG.with_overrides(device="cuda"), progress=False)


def test_ddp_two_cpu_processes_with_gloo(cohort_dir, tmp_path):
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533",
               "-m", "cxr_device", "train", "--cohort", str(cohort_dir), "--out", str(tmp_path), "--arch", "small_cnn",
               "--image-size", "32", "--epochs", "2", "--batch-size", "4", "--workers", "0", "--device", "cpu",
               "--quiet"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    history = pd.read_csv(tmp_path / "model" / "history.csv")
    assert len(history) == 2 and history["train_loss"].notna().all()
    assert done.stdout.count("trained small_cnn") == 1  # rank 0 alone reports and writes
    summary = (tmp_path / "model" / "train_summary.json").read_text()
    assert '"processes": 2' in summary


def test_score_checkpoint_on_the_test_split(cohort_dir, tmp_path):
    from cxr_device.training import score_checkpoint

    train(cohort_dir, tmp_path, CONFIG, progress=False)
    score = score_checkpoint(cohort_dir, tmp_path, "test")
    test = pd.read_csv(cohort_dir / "cohort.csv").query("split == 'test'")
    assert score["n_images"] == len(test) and score["n_positive"] == test["pneumonia"].sum()
    assert 0.0 <= score["auroc"] <= 1.0 and score["loss"] > 0


def test_a_runs_saved_config_loads_back(cohort_dir, tmp_path):
    train(cohort_dir, tmp_path, CONFIG.with_overrides(epochs=1), progress=False)
    saved = tmp_path / "model" / "config.yaml"
    assert load_config(saved) == CONFIG.with_overrides(epochs=1)
    text = saved.read_text().replace("image_size: 32", "image_size: 48")
    saved.write_text(text)
    with pytest.raises(CxrDeviceError, match="does not follow from image_size"):
        load_config(saved)


@pytest.mark.requirement("REQ-TRAIN-001")
def test_cpu_bf16_trains_reproducibly_and_scores_in_32_bit(cohort_dir, tmp_path):
    """``cpu_bf16``: the training steps run in bf16 (the weights differ from a 32-bit run), the same
    seed gives the same weights, the summary says so, and the scores stay 32-bit."""
    from cxr_device.training import load_trained, predict_logits

    fast = CONFIG.with_overrides(cpu_bf16=True)
    train(cohort_dir, tmp_path / "a", fast, progress=False)
    train(cohort_dir, tmp_path / "b", fast, progress=False)
    train(cohort_dir, tmp_path / "fp32", CONFIG, progress=False)
    a, b, full = (_weights(tmp_path / n / "model" / "last.pt") for n in ("a", "b", "fp32"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], full[k]) for k in a if a[k].is_floating_point())
    summary = yaml.safe_load((tmp_path / "a" / "model" / "train_summary.json").read_text())
    assert summary["amp"] == "bf16"
    assert yaml.safe_load((tmp_path / "fp32" / "model" / "train_summary.json").read_text())["amp"] == "off"
    model, config, _ = load_trained(tmp_path / "a")
    assert config.cpu_bf16 is True
    images = torch.rand(4, 1, 32, 32)
    dataset = torch.utils.data.TensorDataset(images, torch.zeros(4))
    with torch.no_grad():
        expected = model.eval()(images).double().numpy()
    assert (predict_logits(model, dataset, torch.device("cpu"), config) == expected).all()
