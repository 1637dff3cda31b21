"""Image resolution: NIH download layout, flat folders, missing and orphan files."""
from __future__ import annotations

import pandas as pd
import pytest

from cxr_device import exclusions as ex
from cxr_device.errors import DatasetError
from cxr_device.image_index import attach_paths, index_images


def _touch(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")


def test_nih_layout_flat_folder_missing_rows_and_orphans(tmp_path):
    _touch(tmp_path / "nih/images_001/images/00000001_000.png")
    _touch(tmp_path / "nih/images_002/images/00000002_000.png")
    _touch(tmp_path / "flat/00000003_000.png")
    _touch(tmp_path / "flat/99999999_000.png")  # no row names it
    _touch(tmp_path / "flat/readme.txt")  # not an image: ignored
    frame = pd.DataFrame({"image_id": ["00000001_000.png", "00000002_000.png", "00000003_000.png", "00000004_000.png"],
                          "path": ""})
    index = index_images([tmp_path / "nih", tmp_path / "flat"])
    log = ex.ExclusionLog()
    kept, report = attach_paths(frame, index, log)
    assert list(kept["image_id"]) == ["00000001_000.png", "00000002_000.png", "00000003_000.png"]
    assert all(p.endswith(i) for p, i in zip(kept["path"], kept["image_id"]))
    assert log.counts() == {ex.NO_IMAGE_FILE: 1}
    assert report["n_rows_without_image"] == 1 and report["n_images_without_row"] == 1
    assert report["images_without_row"][0].endswith("99999999_000.png")
    assert index.roots[str(tmp_path / "nih")]["n_files"] == 2


def test_duplicate_files_are_reported_and_first_wins(tmp_path):
    _touch(tmp_path / "a/00000001_000.png")
    _touch(tmp_path / "b/00000001_000.png")
    index = index_images([tmp_path])
    assert list(index.duplicates) == ["00000001_000"]
    assert index.by_stem["00000001_000"].endswith("a/00000001_000.png")


def test_dicom_file_matches_png_row_by_stem(tmp_path):
    _touch(tmp_path / "00000001_000.dcm")
    kept, _ = attach_paths(pd.DataFrame({"image_id": ["00000001_000.png"], "path": ""}),
                           index_images([tmp_path]), ex.ExclusionLog())
    assert kept["path"].iloc[0].endswith(".dcm")


def test_missing_root_is_an_error(tmp_path):
    with pytest.raises(DatasetError, match="image folder not found"):
        index_images([tmp_path / "nope"])
