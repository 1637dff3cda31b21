"""Every numeric setting has a range, the big allocations are estimated first, and a training
that diverges stops with one line (issue 22, item 5)."""
from __future__ import annotations

import re
import typing
from dataclasses import fields
from pathlib import Path

import annotated_types as at
import pytest
import torch
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cxr_device.cli import main
from cxr_device.cohort import CohortSettings
from cxr_device.data import Augmentation
from cxr_device.errors import CxrDeviceError
from cxr_device.filters import Filters
from cxr_device.models import ModelSpec
from cxr_device.synth import SynthSettings, generate
from cxr_device.train_config import TrainConfig
from fda_submission.run_config import AssessSettings, EdaSettings, EvaluateSettings, load_run_config

from .test_pipeline import CONFIG

BASE = yaml.safe_load(CONFIG.replace("EPOCHS", "1"))
#: (where the keys sit in a run config, the class that types them)
SECTIONS = [(("train",), TrainConfig), (("train", "model"), ModelSpec), (("train", "augmentation"), Augmentation),
            (("evaluate",), EvaluateSettings), (("eda",), EdaSettings), (("data",), CohortSettings),
            (("data",), Filters), (("data", "synthetic"), SynthSettings), (("assess", 0), AssessSettings)]


def _number_type(annotation) -> tuple[type, dict] | None:
    """(int or float, {ge, gt, le, lt}) of a numeric field, None for any other field."""
    for arg in (annotation, *typing.get_args(annotation)):  # X, or the X of X | None
        if typing.get_origin(arg) is typing.Annotated:
            base, *meta = typing.get_args(arg)
            if base in (int, float):
                bounds = {}
                for m in meta:
                    for item in getattr(m, "metadata", [m]):
                        for name in ("ge", "gt", "le", "lt"):
                            if isinstance(item, getattr(at, name.capitalize())):
                                bounds[name] = getattr(item, name)
                return base, bounds
        if arg in (int, float):
            return arg, {}
    return None


def _numeric_settings() -> list[tuple[tuple, str, type, dict]]:
    out = []
    for where, cls in SECTIONS:
        hints = typing.get_type_hints(cls, include_extras=True)
        for f in fields(cls):
            found = _number_type(hints[f.name])
            if found:
                out.append((where, f.name, *found))
    return out


NUMERIC = _numeric_settings()


def test_every_numeric_setting_has_a_lower_and_an_upper_bound():
    assert len(NUMERIC) > 30
    unbounded = [f"{'.'.join(map(str, where))}.{name}" for where, name, _, bounds in NUMERIC
                 if not ({"ge", "gt"} & set(bounds) and {"le", "lt"} & set(bounds))]
    assert unbounded == []


def _out_of_range(kind: type, bounds: dict):
    """Values just and far outside the range (of the field's own type, or an int for a float)."""
    options = []
    hi = bounds.get("le", bounds.get("lt"))
    lo = bounds.get("ge", bounds.get("gt"))
    if kind is int:
        options += [st.integers(hi + 1, hi + 10**15), st.integers(lo - 10**15, lo - 1)]
    else:
        options += [st.floats(hi, 1e300, exclude_min="le" in bounds), st.floats(-1e300, lo, exclude_max="ge" in bounds),
                    st.integers(int(hi) + 1, 10**15)]
    return st.one_of(options)


def _config_with(tmp: Path, where: tuple, name: str, value) -> Path:
    document = yaml.safe_load(yaml.safe_dump(BASE))
    if where[0] == "assess":
        document["assess"] = [{"name": "x", "folders": "somewhere"}]
    section = document
    for key in where:
        section = section.setdefault(key, {}) if isinstance(key, str) else section[key]
    section[name] = value
    path = tmp / "run.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


@pytest.mark.requirement("REQ-INPUT-001")
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_any_out_of_range_value_is_refused_with_its_range_never_an_internal_error(tmp_path_factory, data):
    where, name, kind, bounds = data.draw(st.sampled_from(NUMERIC))
    value = data.draw(_out_of_range(kind, bounds))
    path = _config_with(tmp_path_factory.mktemp("bounds"), where, name, value)
    with pytest.raises(CxrDeviceError) as err:
        load_run_config(path)
    message = str(err.value)
    key = ".".join(f"[{k}]" if isinstance(k, int) else k for k in where).replace(".[", "[")
    assert f"{key}.{name}:" in message and "allowed: " in message, message
    for bound in bounds.values():
        assert (f"{bound:,}" if isinstance(bound, int) else f"{bound:g}") in message.split("allowed: ")[1], message


@pytest.mark.parametrize("line, words", [
    ("  lr: 0.002", ["train.lr:", "allowed: above 0, up to 1", "1e+308"]),
    ("evaluate: {bootstrap: 100}", ["evaluate.bootstrap:", "allowed: from 100 to 100,000"]),
    ("  image_size: 32", ["train.image_size:", "allowed: from 32 to 2,048", "100000"]),
    ("  synthetic: {n_patients: 40, image_size: 64, prevalence: 0.3}",
     ["data.synthetic.n_patients:", "allowed: from 1 to 100,000"]),
])
def test_the_cases_of_the_issue_are_one_line_at_load_before_anything_runs(tmp_path, capsys, line, words):
    replacement = {"  lr: 0.002": "  lr: 1.0e+308", "evaluate: {bootstrap: 100}": "evaluate: {bootstrap: 1.0e+12}",
                   "  image_size: 32": "  image_size: 100000",
                   "  synthetic: {n_patients: 40, image_size: 64, prevalence: 0.3}":
                   "  synthetic: {n_patients: 1000000000000, image_size: 64, prevalence: 0.3}"}[line]
    text = CONFIG.replace("EPOCHS", "1")
    assert line in text
    (tmp_path / "run.yaml").write_text(text.replace(line, replacement))
    assert main(["run", str(tmp_path / "run.yaml"), "--out", str(tmp_path / "run"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert all(w in err for w in words) and len(err.splitlines()) == 1, err
    assert not (tmp_path / "run").exists()


def test_flags_get_the_range_too(tmp_path, capsys):
    assert main(["synth", "--out", str(tmp_path / "s"), "--n-patients", "1000000"]) == 2
    assert "--n-patients: " in (err := capsys.readouterr().err) and "allowed: from 1 to 100,000" in err
    assert main(["train", "--cohort", str(tmp_path), "--out", str(tmp_path / "r"), "--lr", "50"]) == 2
    assert "--lr: " in (err := capsys.readouterr().err) and "allowed: above 0, up to 1" in err
    assert main(["train", "--cohort", str(tmp_path), "--out", str(tmp_path / "r"), "--dropout", "1"]) == 2
    assert "--dropout: " in (err := capsys.readouterr().err) and "allowed: from 0, below 1" in err
    assert main(["cohort", "--folders", str(tmp_path), "--out", str(tmp_path / "c"), "--min-age", "500"]) == 2
    assert "--min-age: " in (err := capsys.readouterr().err) and "allowed: from 0 to 150" in err
    assert main(["evaluate", "--run", str(tmp_path), "--bootstrap", "1000000000000"]) == 2
    assert "bootstrap: " in (err := capsys.readouterr().err) and "allowed: from 100 to 100,000" in err


# --- estimates before the big allocations ---------------------------------------------------
def test_synthetic_data_larger_than_the_disk_is_refused_with_the_estimate(tmp_path, capsys):
    big = SynthSettings(n_patients=100_000, image_size=2048)  # about 1.2 TB of PNGs
    with pytest.raises(CxrDeviceError, match=r"synthetic data \(100,000 patients.*needs about 1\.2 TB of disk at .* "
                                             r"are free there; lower data.synthetic.n_patients"):
        generate(tmp_path / "data", big, progress=False)
    assert not (tmp_path / "data").exists()
    code = main(["synth", "--out", str(tmp_path / "cli"), "--n-patients", "100000", "--image-size", "2048"])
    err = capsys.readouterr().err
    assert code == 2 and "lower data.synthetic.n_patients" in err and not (tmp_path / "cli").exists()


def test_bootstrap_weights_beyond_the_memory_are_refused(monkeypatch):
    import numpy as np

    from validation.bootstrap import bootstrap

    monkeypatch.setattr("cxr_device.resources.available_memory", lambda: 2_000_000)
    probs, labels = np.linspace(0, 1, 100), np.arange(100) % 2
    assert bootstrap(probs, labels, np.arange(100), 0.5, 100, 0)["auroc"]["value"] is not None  # 100 fit
    with pytest.raises(CxrDeviceError, match=r"100,000 bootstrap replicates of 100 images needs about .* of memory "
                                             r"but this machine has 2.0 MB available; lower the bootstrap"):
        bootstrap(probs, labels, np.arange(100), 0.5, 100_000, 0, roc_band=True)


def test_a_pixel_cache_beyond_the_free_disk_is_refused_before_it_is_made(synth_dataset, tmp_path, monkeypatch):
    import pandas as pd

    from cxr_device.cache import PIXELS, open_cache
    from cxr_device.preprocessing import Preprocessing

    csv_path, root = synth_dataset
    frame = pd.DataFrame({"image_id": [p.name for p in sorted(root.rglob("*.png"))],
                          "path": [str(p) for p in sorted(root.rglob("*.png"))]})
    monkeypatch.setattr("cxr_device.resources.free_disk", lambda path: 10_000_000)
    with pytest.raises(CxrDeviceError, match=r"decoded-pixel cache \(123 images of 2304 x 2304 px, from image_size "
                                             r"2048\) needs about 652.9 MB of disk .* but 10.0 MB are free there; "
                                             r"lower train.image_size"):
        open_cache(frame, Preprocessing(image_size=2048), tmp_path / "cache")
    assert not list((tmp_path / "cache").rglob(PIXELS))


# --- a training that diverges ---------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_cohort(tmp_path_factory):
    from cxr_device.cohort import build_cohort, write_cohort

    root = tmp_path_factory.mktemp("diverge")
    csv_path = generate(root / "data", SynthSettings(n_patients=24, seed=5, image_size=48, prevalence=0.3),
                        progress=False)
    write_cohort(build_cohort(CohortSettings(metadata=str(csv_path), images=(str(root / "data"),), seed=1,
                                             val_fraction=0.25, test_fraction=0.25)), root / "cohort")
    return root / "cohort"


def _nan_weights(path: Path) -> Path:
    """A torchvision resnet18 state dict with one NaN in the first convolution: a damaged file."""
    from torchvision.models import resnet18

    state = resnet18(weights=None).state_dict()
    state["conv1.weight"][0, 0, 0, 0] = float("nan")
    torch.save(state, path)
    return path


@pytest.mark.requirement("REQ-TRAIN-001")
def test_training_stops_at_the_first_non_finite_loss_naming_epoch_step_and_lr(tiny_cohort, tmp_path, capsys):
    weights = _nan_weights(tmp_path / "damaged.pt")
    code = main(["train", "--cohort", str(tiny_cohort), "--out", str(tmp_path / "run"), "--arch", "resnet18",
                 "--weights", str(weights), "--image-size", "32", "--epochs", "2", "--batch-size", "4",
                 "--lr", "0.001", "--device", "cpu", "--workers", "0", "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert re.search(r"not finite .* at epoch 1, step 1 \(learning rate 0.001\)", err), err
    assert not (tmp_path / "run" / "model" / "best.pt").exists()


def test_a_loss_that_turns_nan_later_is_caught_at_its_step(tiny_cohort, tmp_path, monkeypatch):
    from cxr_device import recipe
    from cxr_device.models import ModelSpec
    from cxr_device.training import TrainingDiverged, train

    real, calls = recipe.BCELoss.forward, []

    def forward(self, logits, labels):
        calls.append(1)
        loss = real(self, logits, labels)
        return loss * float("inf") if len(calls) == 3 else loss

    monkeypatch.setattr(recipe.BCELoss, "forward", forward)
    config = TrainConfig(model=ModelSpec(arch="small_cnn"), image_size=32, epochs=2, batch_size=4, lr=1e-3, workers=0,
                         device="cpu")
    with pytest.raises(TrainingDiverged, match=r"epoch 1, step 3 \(learning rate 0\.001\)"):
        train(tiny_cohort, tmp_path / "run", config, progress=False)
