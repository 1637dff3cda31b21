"""The decoded-pixel cache: hit, miss, staleness, unreadable images, same bytes as decoding."""
from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from cxr_device.cache import BUILT, HIT, STALE, open_cache
from cxr_device.errors import CxrDeviceError
from cxr_device.imageio import load_image
from cxr_device.preprocessing import Preprocessing, to_stored

PRE = Preprocessing(image_size=32)


def _images(tmp_path, n=6):
    paths = []
    for i in range(n):
        path = tmp_path / f"img{i}.png"
        Image.fromarray(np.random.default_rng(i).integers(0, 255, (50, 40), dtype=np.uint8)).save(path)
        paths.append(str(path))
    return pd.DataFrame({"image_id": [f"img{i}.png" for i in range(n)], "path": paths})


def test_build_hit_and_same_bytes_as_decoding(tmp_path):
    frame = _images(tmp_path)
    built = open_cache(frame, PRE, tmp_path / "cache", workers=2)
    assert built.status == BUILT and built.pixels.shape == (6, PRE.stored_size, PRE.stored_size)
    again = open_cache(frame, PRE, tmp_path / "cache")
    assert again.status == HIT and again.folder == built.folder
    rows = again.rows(frame["image_id"])
    for path, row in zip(frame["path"], rows):
        np.testing.assert_array_equal(again.pixels[row], to_stored(load_image(path), PRE))


def test_changed_file_makes_the_cache_stale(tmp_path):
    frame = _images(tmp_path)
    open_cache(frame, PRE, tmp_path / "cache")
    Image.fromarray(np.zeros((50, 40), np.uint8)).save(frame["path"][2])
    os.utime(frame["path"][2], ns=(1, 1))  # a different modification time, whatever the clock
    cache = open_cache(frame, PRE, tmp_path / "cache")
    assert cache.status == STALE
    assert cache.pixels[cache.rows(frame["image_id"][2:3])[0]].max() == 0


def test_other_preprocessing_is_another_cache(tmp_path):
    frame = _images(tmp_path)
    a = open_cache(frame, PRE, tmp_path / "cache")
    b = open_cache(frame, Preprocessing(image_size=48), tmp_path / "cache")
    assert a.folder != b.folder and b.status == BUILT


def test_unreadable_images_are_recorded_not_fatal(tmp_path):
    frame = _images(tmp_path, 3)
    (tmp_path / "img1.png").write_bytes(b"broken")
    cache = open_cache(frame, PRE, tmp_path / "cache")
    assert list(cache.failed["image_id"]) == ["img1.png"]
    assert "img1.png" in cache.failed["reason"].iloc[0]


@pytest.mark.requirement("REQ-RUN-001")
def test_a_stale_cache_is_rebuilt_in_place_but_a_file_someone_put_there_is_never_deleted(tmp_path):
    frame = _images(tmp_path)
    folder = open_cache(frame, PRE, tmp_path / "cache").folder
    Image.fromarray(np.random.default_rng(9).integers(0, 255, (50, 40), dtype=np.uint8)).save(frame["path"][0])
    os.utime(frame["path"][0], ns=(2, 2))
    (folder / "notes.txt").write_text("mine")
    with pytest.raises(CxrDeviceError, match="notes.txt.*nothing was deleted"):
        open_cache(frame, PRE, tmp_path / "cache")
    assert (folder / "notes.txt").read_text() == "mine" and (folder / "meta.json").is_file()
    (folder / "notes.txt").unlink()
    assert open_cache(frame, PRE, tmp_path / "cache").status == STALE
    assert sorted(p.name for p in folder.iterdir()) == ["index.csv", "meta.json", "pixels.u8"]
