"""Configurations and the device profile are typed at load: a value that does not fit is refused
before anything runs, with the file, the key path and the problem - never a traceback, never a
value rendered as something it is not."""
from __future__ import annotations

import time
from dataclasses import replace

import pytest
from pydantic import ValidationError

from cxr_device.cli import main
from cxr_device.cohort import CohortSettings
from cxr_device.errors import CxrDeviceError
from cxr_device.filters import Filters
from cxr_device.train_config import TrainConfig, load_config
from fda_submission.profile import load_profile
from fda_submission.run_config import load_run_config
from fda_submission.trace import load_requirements

from .test_pipeline import CONFIG

pytestmark = pytest.mark.requirement("REQ-INPUT-001")

RUN = CONFIG.replace("EPOCHS", "2").lstrip("\n")
BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{n}: &{n} [{', '.join([f'*{p}'] * 9)}]\n" for p, n in zip("abcdefgh", "bcdefghi"))


def _run(tmp_path, old: str, new: str):
    assert old in RUN
    path = tmp_path / "run.yaml"
    path.write_text(RUN.replace(old, new, 1))
    return path


def _refused(load, path, *words: str) -> str:
    with pytest.raises(CxrDeviceError) as err:
        load(path)
    message = str(err.value)
    assert message.startswith(f"{path}:"), message
    for word in words:
        assert word in message, message
    return message


def test_an_exponent_written_number_is_read_as_the_number_it_means(tmp_path):
    """PyYAML reads ``1e-4`` (no dot) as the string "1e-4"; it is the learning rate 0.0001."""
    config = load_run_config(_run(tmp_path, "lr: 0.002", "lr: 1e-4"))
    assert config.train["lr"] == pytest.approx(1e-4) and isinstance(config.train["lr"], float)
    path = tmp_path / "train.yaml"
    path.write_text("lr: 1e-4\nweight_decay: 5e-5\n")
    assert (load_config(path).lr, load_config(path).weight_decay) == (pytest.approx(1e-4), pytest.approx(5e-5))


@pytest.mark.parametrize("old, new, words", [
    ("epochs: 2", 'epochs: "ten"', ["train.epochs:", "valid integer", "'ten'"]),
    ("batch_size: 16", "batch_size: 16.7", ["train.batch_size:", "fractional part", "16.7"]),
    ("seed: 3", "seed: abc", ["seed:", "valid integer", "'abc'"]),
    ("seed: 3", "seed: -1", ["seed:", "greater than or equal to 0", "-1"]),
    ("workers: 0", "workers: 0\n  seed: -1", ["train.seed:", "greater than or equal to 0"]),
    ("lr: 0.002", "lr: .inf", ["train.lr:", "finite"]),
    ("model: {arch: small_cnn}", "model: small_cnn", ["train: model: expected a mapping", "'small_cnn'"]),
    ("model: {arch: small_cnn}", "model: {arch: small_cnn}\n  augmentation: {zoom: 1.5}", ["train.augmentation.zoom:"]),
    ("n_patients: 40", "n_patients: 40.5", ["data.synthetic.n_patients:", "fractional part"]),
    ("test_fraction: 0.25", "test_fraction: 0.25\n  views: PA", ["data.views:", "valid tuple", "'PA'"]),
    ("test_fraction: 0.25", "test_fraction: 0.25\n  min_age: -3", ["data.min_age:", "greater than or equal to 0"]),
    ("test_fraction: 0.25", "test_fraction: 0.25\n  val_prevalence: 1.5", ["data.val_prevalence:", "less than 1"]),
    ("pixel_sample: 5", "pixel_sample: many", ["eda.pixel_sample:", "valid integer"]),
    ("bootstrap: 100", "bootstrap: 5", ["evaluate.bootstrap:", "greater than or equal to 100"]),
    ("bootstrap: 100", "bootstrap: 100, target_sensitivity: 2", ["evaluate.target_sensitivity:", "less than or equal to 1"]),
    ("formats: [md, html]", "formats: md", ["submission.formats:", "valid list"]),
    ("formats: [md, html]", "formats: [md, docx]", ["submission.formats.1:", "'md', 'html' or 'pdf'", "'docx'"]),
])
def test_a_run_config_value_of_the_wrong_type_or_range_is_refused_at_load(tmp_path, old, new, words):
    _refused(load_run_config, _run(tmp_path, old, new), *words)


@pytest.mark.parametrize("text, words", [
    ('epochs: "ten"', ["epochs:", "valid integer"]),
    ("batch_size: 16.7", ["batch_size:", "fractional part"]),
    ("seed: abc", ["seed:", "valid integer"]),
    ("seed: -1", ["seed:", "greater than or equal to 0"]),
    ("model: {arch: resnet18, head_hidden: 1.5}", ["model.head_hidden:", "fractional part"]),
    ("train: {batch_size: 16.7}", ["train.batch_size:", "fractional part"]),
    ("train: 3", ["train: expected a mapping"]),
])
def test_a_training_config_value_of_the_wrong_type_or_range_is_refused_at_load(tmp_path, text, words):
    path = tmp_path / "train.yaml"
    path.write_text(text + "\n")
    _refused(load_config, path, *words)


def test_settings_objects_check_their_types_when_built():
    """Flags reach the settings through the constructors and ``with_overrides``: the same types apply."""
    with pytest.raises(ValidationError, match="batch_size"):
        TrainConfig(batch_size=16.7)
    with pytest.raises(ValidationError, match="seed"):
        TrainConfig().with_overrides(seed=-1)
    with pytest.raises(ValidationError, match="images"):
        CohortSettings(metadata="m.csv", images="folder")  # would be read as the folders f, o, l, ...
    with pytest.raises(ValidationError, match="min_age"):
        replace(Filters(), min_age="old")
    assert TrainConfig(lr="1e-4").lr == pytest.approx(1e-4)


def test_cohort_fractions_over_one_are_refused_at_load_with_synthetic_data(tmp_path):
    path = _run(tmp_path, "val_fraction: 0.25\n  test_fraction: 0.25", "val_fraction: 0.6\n  test_fraction: 0.5")
    _refused(load_run_config, path, "data:", "--val-fraction 0.6 + --test-fraction 0.5 leave nothing for training")


def test_synthetic_data_and_given_data_together_are_refused(tmp_path):
    path = _run(tmp_path, "val_fraction: 0.25", "val_fraction: 0.25\n  metadata: meta.csv")
    _refused(load_run_config, path, "data.synthetic generates", "remove data.metadata")


@pytest.mark.parametrize("name", ["../../etc", "/abs/path", "a/b", "a\\b", "..", ".hidden", "a..b", "run name", ""])
def test_a_run_name_cannot_leave_the_runs_folder(tmp_path, name):
    _refused(load_run_config, _run(tmp_path, "name: tiny", f"name: '{name}'"), "name:", "letters, digits")


def test_plain_run_names_are_accepted_and_a_file_name_that_cannot_be_one_is_refused(tmp_path):
    for name in ("tiny", "nih_densenet121", "run-2.1"):
        assert load_run_config(_run(tmp_path, "name: tiny", f"name: {name}")).name == name
    path = tmp_path / "...yaml"  # its stem is "..": without name:, the run folder would be runs/..
    path.write_text(RUN.replace("name: tiny\n", ""))
    _refused(load_run_config, path, "name:", "letters, digits", "without name: the file name is used")


@pytest.mark.parametrize("text, words", [
    ("acceptance: {sensitivity: high}", ["acceptance.sensitivity:", "valid number", "'high'"]),
    ('exclusions_comorbidities: "not a list"', ["exclusions_comorbidities:", "valid list"]),
    ("include_comorbidities: [1, 2]", ["include_comorbidities.0:", "valid string"]),
    ("ground_truth_readers: -3", ["ground_truth_readers:", "greater than or equal to 1"]),
    ("ground_truth_readers: 2.5", ["ground_truth_readers:", "fractional part"]),
    ("acceptance: {auroc: 1.2}", ["acceptance.auroc:", "less than 1"]),
    ("acceptance: {specificity: 0}", ["acceptance.specificity:", "greater than 0"]),
    ("power: 1.5", ["power:", "less than 1"]),
    ("expected_prevalence: 0", ["expected_prevalence:", "greater than 0"]),
    ("expected_prevalence: 30", ["expected_prevalence:", "less than 1"]),
    ("version: 1.10", ["version:", "valid string", "quotes"]),
    ("device_name:", ["device_name:", "no value"]),
    ("acceptance: 0.8", ["acceptance: expected a mapping"]),
    ("acceptance: {sensitivity: 0.8, npv: 0.9}", ["acceptance: unknown key(s) npv"]),
    ("colour: blue", ["unknown key(s) colour", "allowed: acceptance"]),
    ("- device_name", ["expected a mapping"]),
])
def test_a_device_profile_value_of_the_wrong_type_is_refused_not_rendered(tmp_path, text, words):
    path = tmp_path / "profile.yaml"
    path.write_text(text + "\n")
    _refused(load_profile, path, *words)


def test_a_partial_profile_keeps_the_defaults_and_reads_numbers(tmp_path):
    path = tmp_path / "profile.yaml"
    path.write_text("acceptance: {sensitivity: '0.85'}\nexpected_prevalence: 0.3\n")
    profile = load_profile(path)
    assert profile["acceptance"] == {**load_profile()["acceptance"], "sensitivity": 0.85}
    assert profile["expected_prevalence"] == 0.3 and profile["device_name"] == load_profile()["device_name"]


def test_the_profile_and_rules_of_a_run_config_are_checked_at_load(tmp_path):
    (tmp_path / "profile.yaml").write_text("ground_truth_readers: -3\n")
    path = _run(tmp_path, "formats: [md, html]", "formats: [md, html], profile: profile.yaml")
    message = _refused(load_run_config, path, "submission.profile:", "ground_truth_readers:")
    assert str(tmp_path / "profile.yaml") in message
    path = _run(tmp_path, "bootstrap: 100", "bootstrap: 100, rules: missing_rules.yaml")
    _refused(load_run_config, path, "evaluate.rules:", "missing_rules.yaml")


@pytest.mark.parametrize("load, what", [(load_run_config, "run configuration"), (load_config, "training config"),
                                        (load_profile, "device profile")])
def test_a_yaml_alias_bomb_is_refused_quickly_naming_the_file_and_the_line(tmp_path, load, what):
    path = tmp_path / "bomb.yaml"
    path.write_text(BOMB)  # 9 ** 9 (387 million) strings if the aliases were expanded
    assert len(BOMB) < 600
    started = time.perf_counter()
    _refused(load, path, "line 2:", "aliases", what)
    assert time.perf_counter() - started < 2


def test_a_folder_or_a_missing_file_is_an_error_naming_it(tmp_path):
    _refused(load_run_config, tmp_path, "not a regular file")
    _refused(load_config, tmp_path / "none.yaml", "not found")
    _refused(load_profile, tmp_path / "none.yaml", "not found")


@pytest.mark.parametrize("text", ["- just text\n", "{id: REQ-1, text: t}\n", "- {id: X-1, text: t}\n",
                                  "- {id: REQ-1}\n", "- {id: REQ-1, text: [t]}\n",
                                  "- {id: REQ-1, text: a}\n- {id: REQ-1, text: b}\n"])
def test_a_malformed_requirements_file_is_an_error_naming_it(tmp_path, text):
    path = tmp_path / "requirements.yaml"
    path.write_text(text)
    _refused(load_requirements, path, "expected a list of {id: REQ-..., text: ...}")


def test_the_cli_refuses_a_bad_run_config_with_exit_2_and_no_traceback(tmp_path, capsys):
    path = _run(tmp_path, "seed: 3", "seed: abc")
    assert main(["run", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert f"{path}: seed:" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()  # refused before any step ran
