"""No traceback, ever: bad output locations, broken links, malicious checkpoints, FIFOs and
internal errors each end in one line (exit 2 or 1 for the user's input, 70 for a bug) - the
traceback only with --debug.
"""
from __future__ import annotations

import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from cxr_device.cli import EXIT_INTERNAL, main
from cxr_device.errors import CxrDeviceError
from cxr_device.imageio import ImageReadError, load_image
from cxr_device.training import load_trained

from .conftest import NIH_HEADER_2020

AS_ROOT = os.geteuid() == 0


def _one_line_error(capsys, *expected: str) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    assert len(err.strip().splitlines()) == 1, err
    for words in expected:
        assert words in err, err
    return err


@pytest.fixture
def metadata(tmp_path) -> Path:
    rows = [f"{p:08d}_000.png,{'Pneumonia' if p % 3 == 0 else 'No Finding'},0,{p},{20 + p},M,PA,1,1,0.1,0.1"
            for p in range(1, 21)]
    path = tmp_path / "meta.csv"
    path.write_text("\n".join([NIH_HEADER_2020, *rows]) + "\n")
    return path


@pytest.fixture
def dicom(make_dicom) -> Path:
    return make_dicom("chest.dcm", (np.random.default_rng(0).random((512, 512)) * 4095).astype(np.uint16),
                      bits_stored=12)


# --- (a) output locations that cannot be used ---------------------------------------------------
def _commands(trained_run: Path, metadata: Path, dicom: Path) -> dict[str, tuple[str, object]]:
    """command -> (what --out must be, argv for a given --out)."""
    from fda_submission.commands import demo_config_path

    bundle = str(trained_run / "bundle")
    return {
        "cohort": ("folder", lambda out: ["cohort", "--metadata", str(metadata), "--metadata-only", "--out", out]),
        "run": ("folder", lambda out: ["run", str(demo_config_path()), "--out", out, "--quiet"]),
        "submission": ("folder", lambda out: ["submission", "--run", str(trained_run), "--out", out]),
        "check-dicom": ("file", lambda out: ["check-dicom", str(dicom), "--out", out]),
        "predict": ("file", lambda out: ["predict", "--bundle", bundle, str(dicom), "--out", out]),
        "predict --heatmap": ("folder", lambda out: ["predict", "--bundle", bundle, str(dicom), "--heatmap", out]),
    }


def _bad_location(kind: str, expects: str, tmp_path: Path) -> tuple[Path, Path]:
    """(the --out to give, the path the message must name)."""
    a_file, a_folder = tmp_path / "taken.txt", tmp_path / "taken_dir"
    a_file.write_text("x")
    a_folder.mkdir()
    if kind == "wrong-kind":  # a file where a folder is expected, or the reverse
        out = a_file if expects == "folder" else a_folder
        return out, out
    if kind == "under-a-file":
        return a_file / "out", a_file
    if kind == "proc":
        return Path("/proc/cxr-device-test-out"), Path("/proc/cxr-device-test-out")
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    return locked / "out", locked


@pytest.mark.parametrize("kind", ["wrong-kind", "under-a-file", "proc", "unwritable"])
@pytest.mark.parametrize("command", ["cohort", "run", "submission", "check-dicom", "predict", "predict --heatmap"])
def test_unusable_output_locations_exit_2_naming_the_path(command, kind, trained_run, metadata, dicom, tmp_path,
                                                          capsys):
    if kind == "unwritable" and AS_ROOT:
        pytest.skip("running as root: a mode-0500 folder is writable anyway")
    expects, argv = _commands(trained_run, metadata, dicom)[command]
    out, named = _bad_location(kind, expects, tmp_path)
    assert main(argv(str(out))) == 2
    _one_line_error(capsys, str(named))


# --- (b) broken and looping links among the images ----------------------------------------------
def test_broken_and_looping_links_in_an_image_folder_are_listed_not_crashed_on(synth_dataset, tmp_path, capsys):
    csv_path, root = synth_dataset
    images = tmp_path / "images"
    images.mkdir()
    for png in sorted(root.rglob("*.png")):
        os.symlink(png, images / png.name)
    (images / "00000001_000.png").unlink()
    os.symlink(tmp_path / "gone.png", images / "00000001_000.png")  # a row's image: broken link
    (images / "00000002_000.png").unlink()
    os.symlink("00000002_000.png", images / "00000002_000.png")  # a row's image: a link to itself
    os.symlink("also_loop.png", images / "also_loop.png")  # no row names it
    out = tmp_path / "cohort"
    assert main(["cohort", "--metadata", str(csv_path), "--images", str(images), "--out", str(out)]) == 1
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err and "2 invalid row(s) excluded" in captured.err
    assert "broken symbolic link" in captured.err and "looping symbolic link" in captured.err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["exclusions"]["unreadable_image_file"] == 2
    assert sorted(Path(p).name for p in summary["images"]["unreadable_files"]) == [
        "00000001_000.png", "00000002_000.png", "also_loop.png"]


# --- (c) malicious and damaged checkpoints -------------------------------------------------------
class _RunsAShellCommand:
    """Unpickling this would call os.system; weights_only=True must refuse it, not run it."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.fixture
def run_copy(trained_run, tmp_path) -> Path:
    copy = tmp_path / "run"
    for part in ("cohort", "model", "cache"):
        if (trained_run / part).exists():
            shutil.copytree(trained_run / part, copy / part)
    return copy


def _write_payload(path: Path, marker: Path, how: str) -> None:
    if how == "torch.save":
        torch.save({"model": _RunsAShellCommand(marker), "epoch": 0}, path)
    else:
        path.write_bytes(pickle.dumps(_RunsAShellCommand(marker)))


@pytest.mark.parametrize("how", ["torch.save", "pickle"])
def test_a_checkpoint_that_would_run_code_is_refused_by_evaluate(run_copy, tmp_path, how, capsys):
    marker = tmp_path / "PWNED"
    _write_payload(run_copy / "model" / "best.pt", marker, how)
    assert main(["evaluate", "--run", str(run_copy), "--bootstrap", "100", "--quiet"]) == 2
    _one_line_error(capsys, str(run_copy / "model" / "best.pt"), "not a checkpoint written by cxr-device train, or unsafe")
    assert not marker.exists()


def test_a_resumed_training_refuses_a_checkpoint_that_would_run_code(run_copy, tmp_path, capsys):
    marker = tmp_path / "PWNED"
    _write_payload(run_copy / "model" / "last.pt", marker, "torch.save")
    assert main(["train", "--cohort", str(run_copy / "cohort"), "--out", str(run_copy),
                 "--config", str(run_copy / "model" / "config.yaml"), "--resume", "--quiet"]) == 2
    _one_line_error(capsys, str(run_copy / "model" / "last.pt"), "unsafe", "posix.system")
    assert not marker.exists()


@pytest.mark.parametrize("content, words", [
    (b"", "EOFError"),
    (b"garbage" * 20, "not a checkpoint written by cxr-device train"),
    (None, "no epoch"),  # a plain tensor file: loads, but is not ours
    ("other-arch", "does not fit the run's model"),
])
def test_damaged_or_foreign_checkpoints_are_precise_errors(run_copy, content, words):
    path = run_copy / "model" / "best.pt"
    if content is None:
        torch.save({"model": {"w": torch.zeros(2)}}, path)
    elif content == "other-arch":
        torch.save({"model": {"w": torch.zeros(2)}, "epoch": 1}, path)
    else:
        path.write_bytes(content)
    with pytest.raises(CxrDeviceError, match=words) as caught:
        load_trained(run_copy)
    assert str(path) in str(caught.value) and "weights_only" not in str(caught.value)


# --- (d) internal errors: one line, exit 70; the traceback with --debug --------------------------
def _boom(*_args, **_kwargs):
    raise RuntimeError("boom\nsecond line of the message")


def test_an_internal_error_is_one_line_and_exit_70(monkeypatch, dicom, capsys):
    monkeypatch.delenv("CXR_DEVICE_DEBUG", raising=False)
    monkeypatch.setattr("validation.commands.check_paths", _boom)
    assert main(["check-dicom", str(dicom)]) == EXIT_INTERNAL
    err = _one_line_error(capsys, "internal error (RuntimeError: boom)", "--debug")
    assert "second line" not in err


@pytest.mark.parametrize("argv_debug, env", [(["--debug"], None), ([], "1")], ids=["--debug", "CXR_DEVICE_DEBUG"])
def test_debug_shows_the_traceback_of_an_internal_error(monkeypatch, dicom, capsys, argv_debug, env):
    if env:
        monkeypatch.setenv("CXR_DEVICE_DEBUG", env)
    monkeypatch.setattr("validation.commands.check_paths", _boom)
    assert main(["check-dicom", str(dicom), *argv_debug]) == EXIT_INTERNAL
    err = capsys.readouterr().err
    assert "Traceback" in err and "RuntimeError: boom" in err


@pytest.mark.parametrize("debug", [[], ["--debug"]])
def test_os_errors_exit_2_when_they_name_a_path_and_70_when_not_whatever_debug(monkeypatch, dicom, capsys, debug):
    monkeypatch.delenv("CXR_DEVICE_DEBUG", raising=False)

    def unnamed(*_a, **_k):
        raise OSError(28, "No space left on device")

    def named(*_a, **_k):
        raise PermissionError(13, "Permission denied", "/srv/images/a.dcm")

    monkeypatch.setattr("validation.commands.check_paths", unnamed)
    assert main(["check-dicom", str(dicom), *debug]) == EXIT_INTERNAL
    capsys.readouterr()
    monkeypatch.setattr("validation.commands.check_paths", named)
    assert main(["check-dicom", str(dicom), *debug]) == 2
    assert "/srv/images/a.dcm: Permission denied" in capsys.readouterr().err


# --- (e) FIFOs never hang --------------------------------------------------------------------------
@pytest.fixture
def deadline():
    """Fail (instead of hanging the suite) when the test blocks for more than 20 s."""
    def expire(_signum, _frame):
        raise TimeoutError("blocked for 20 s: something opened a FIFO")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(20)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


def _cli(*argv: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "CXR_DEVICE_TRUSTED_KEY"}
    return subprocess.run([sys.executable, "-m", "cxr_device", *argv], capture_output=True, text=True, timeout=60,
                          check=False, env=env)


def test_predict_on_a_fifo_finishes_and_calls_it_unreadable(trained_run, tmp_path):
    fifo = tmp_path / "pipe.dcm"
    os.mkfifo(fifo)
    done = _cli("predict", "--bundle", str(trained_run / "bundle"), str(fifo), "--format", "json")
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    [result] = json.loads(done.stdout)["files"]
    assert result["status"] == "unreadable" and "not a regular file" in result["reason"]


def test_check_dicom_on_a_folder_with_a_fifo_finishes_and_calls_it_unreadable(dicom, tmp_path):
    os.mkfifo(dicom.parent / "pipe.dcm")
    done = _cli("check-dicom", str(dicom.parent), "--format", "json", "--workers", "2")
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    files = {Path(f["path"]).name: f for f in json.loads(done.stdout)["files"]}
    assert files["chest.dcm"]["status"] == "pass"
    assert files["pipe.dcm"]["status"] == "unreadable" and "not a regular file" in files["pipe.dcm"]["reason"]


@pytest.mark.parametrize("name", ["pipe.png", "pipe.dcm", "pipe.bin"])
def test_the_image_loader_of_the_cache_refuses_a_fifo(tmp_path, deadline, name):
    fifo = tmp_path / name
    os.mkfifo(fifo)
    with pytest.raises(ImageReadError, match="not a regular file"):
        load_image(fifo)
