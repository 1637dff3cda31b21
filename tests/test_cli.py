"""The console script: help everywhere, exit codes, and messages that name the problem."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from cxr_device.cli import main

from .conftest import NIH_HEADER_2020, shared

COMMANDS = ["synth", "cohort", "eda", "demo", "cache", "train", "check-dicom", "evaluate", "predict", "submission", "trace"]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])
    assert exit_.value.code == 0
    assert "usage: cxr-device " + command in capsys.readouterr().out


def test_console_script_is_installed():
    done = subprocess.run([sys.executable, "-m", "cxr_device", "--help"], capture_output=True, text=True)
    assert done.returncode == 0
    for command in COMMANDS:
        assert command in done.stdout


def test_usage_errors_exit_2(capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_:
        main(["cohort", "--out", str(tmp_path)])  # neither --metadata nor --folders
    assert exit_.value.code == 2
    assert main(["cohort", "--metadata", str(tmp_path / "nope.csv"), "--metadata-only", "--out", str(tmp_path)]) == 2
    assert "nope.csv" in capsys.readouterr().err


def test_missing_columns_exit_2_naming_them(tmp_path, capsys):
    meta = tmp_path / "m.csv"
    meta.write_text("Image Index,Patient ID\na.png,1\n")
    assert main(["cohort", "--metadata", str(meta), "--metadata-only", "--out", str(tmp_path / "c")]) == 2
    assert "'Patient Age'" in capsys.readouterr().err


@pytest.mark.requirement("REQ-COHORT-002")
def test_bad_rows_write_the_cohort_and_exit_1(tmp_path, capsys):
    meta = tmp_path / "m.csv"
    good = [f"{p:08d}_000.png,{'Pneumonia' if p % 3 == 0 else 'No Finding'},0,{p},{20 + p},M,PA,1,1,0.1,0.1"
            for p in range(1, 21)]
    meta.write_text("\n".join([NIH_HEADER_2020, *good, "00000099_000.png,No Finding,0,99,4x,M,PA,1,1,0.1,0.1"]) + "\n")
    code = main(["cohort", "--metadata", str(meta), "--metadata-only", "--out", str(tmp_path / "c")])
    captured = capsys.readouterr()
    assert code == 1
    assert "1 invalid row" in captured.err and "line 22" in captured.err and "'4x'" in captured.err
    summary = json.loads((tmp_path / "c" / "summary.json").read_text())
    assert summary["n_images"] == 20 and summary["n_invalid"] == 1


def test_demo_runs_every_step_and_its_dicoms_work(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path / "demo"), "--n-patients", "20", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "SYNTHETIC" in out and "test AUROC" in out and "-> submission" in out
    assert (tmp_path / "demo" / "cohort" / "cohort.csv").is_file()
    assert (tmp_path / "demo" / "eda" / "eda.json").is_file()
    assert (tmp_path / "demo" / "model" / "history.csv").is_file()
    assert (tmp_path / "demo" / "bundle" / "device.json").is_file()
    assert "NOT FOR SUBMISSION" in (tmp_path / "demo" / "submission" / "algorithm_description.html").read_text()
    assert main(["check-dicom", str(tmp_path / "demo" / "dicom"), "--quiet"]) == 1  # lateral and CT fail
    checked = capsys.readouterr().out
    assert "2 pass, 2 fail" in checked and "'LL'" in checked and "'CT'" in checked


def test_cohort_then_eda_on_real_images(tmp_path, capsys):
    metadata = shared("nih", "Data_Entry_2017_v2020.csv.gz")
    images = shared("nih", "images")
    assert main(["cohort", "--metadata", str(metadata), "--images", str(images),
                 "--out", str(tmp_path / "c")]) == 0
    assert "621 images" in capsys.readouterr().out
    assert main(["eda", "--cohort", str(tmp_path / "c"), "--out", str(tmp_path / "e"), "--pixel-sample", "10"]) == 0
    assert (tmp_path / "e" / "pixel_intensity_by_class.png").is_file()


def test_synth_bad_settings_exit_2(tmp_path, capsys):
    assert main(["synth", "--out", str(tmp_path), "--n-patients", "0"]) == 2
    assert "--n-patients" in capsys.readouterr().err
