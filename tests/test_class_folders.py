"""Pediatric class-folder datasets: patients from file names, both folder layouts."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from cxr_device import exclusions as ex
from cxr_device.class_folders import parse_patient, read_class_folders
from cxr_device.errors import DatasetError

from .conftest import shared


@pytest.mark.parametrize("stem, expected", [
    ("person123_bacteria_456", ("person-123", "bacteria")),
    ("person1_virus_7", ("person-1", "virus")),
    ("person1590_virus_2770_1", ("person-1590", "virus")),
    ("IM-0115-0001", ("im-0115", "normal")),
    ("IM-0117-0001-0002", ("im-0117", "normal")),
    ("NORMAL2-IM-1427-0001", ("normal2-1427", "normal")),
    ("NORMAL2-IM-0111-0001-0002", ("normal2-0111", "normal")),
])
def test_parse_patient(stem, expected):
    assert parse_patient(stem) == expected


@pytest.mark.parametrize("stem", ["scan_0001", "person_bacteria_1", "IM-", ""])
def test_parse_patient_unrecognised(stem):
    assert parse_patient(stem) is None


def _jpeg(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((8, 8), 128, np.uint8)).save(path)


def test_split_folder_layout_keeps_source_split(tmp_path):
    for rel in ["train/NORMAL/IM-0001-0001.jpeg", "train/PNEUMONIA/person1_bacteria_1.jpeg",
                "train/PNEUMONIA/person1_bacteria_2.jpeg", "val/normal/NORMAL2-IM-0002-0001.jpeg",
                "val/PNEUMONIA/person2_virus_3.jpeg", "test/NORMAL/IM-0003-0001.jpeg",
                "test/PNEUMONIA/person3_virus_4.jpeg"]:
        _jpeg(tmp_path / rel)
    (tmp_path / "train/NORMAL/notes.txt").write_text("not an image")
    table = read_class_folders(tmp_path)
    f = table.frame.set_index("image_id")
    assert len(f) == 7 and table.source["layout"] == "split folders"
    assert f.loc["train/PNEUMONIA/person1_bacteria_2.jpeg", "patient_id"] == "person-1"
    assert f.loc["val/normal/NORMAL2-IM-0002-0001.jpeg", "source_split"] == "val"
    assert f["pneumonia"].sum() == 4 and (f["no_finding"] == 1 - f["pneumonia"]).all()
    assert table.source["ignored_files"] == [str(tmp_path / "train/NORMAL/notes.txt")]


def test_unrecognised_names_are_excluded_not_dropped(tmp_path):
    _jpeg(tmp_path / "NORMAL/IM-0001-0001.jpeg")
    _jpeg(tmp_path / "PNEUMONIA/scan42.jpeg")
    table = read_class_folders(tmp_path)
    assert len(table.frame) == 1
    assert table.exclusions.counts() == {ex.UNRECOGNISED_FILE_NAME: 1}
    assert "scan42.jpeg" in table.exclusions.frame()["detail"].iloc[0]


def test_wrong_layout_is_a_clear_error(tmp_path):
    (tmp_path / "cats").mkdir()
    with pytest.raises(DatasetError, match="NORMAL and PNEUMONIA"):
        read_class_folders(tmp_path)
    with pytest.raises(DatasetError, match="not found"):
        read_class_folders(tmp_path / "missing")


def test_real_pediatric_train_split():
    table = read_class_folders(shared("kermany", "train"))
    f = table.frame
    assert len(f) == 5_216 and int(f["pneumonia"].sum()) == 3_875
    assert table.exclusions.counts() == {}
    assert f.groupby("patient_id")["pneumonia"].nunique().max() == 1  # a patient has one class
    assert set(f["subtype"]) == {"normal", "bacteria", "virus"}
