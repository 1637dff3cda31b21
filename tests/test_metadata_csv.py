"""Metadata files that would lose rows silently: unterminated quotes, header-only CSVs, empty class
folders. Every data line is a cohort row or an excluded row naming its line; the counts agree."""
from __future__ import annotations

import gzip
import json

import pandas as pd
import pytest

from cxr_device import exclusions as ex
from cxr_device.class_folders import read_class_folders
from cxr_device.cli import main
from cxr_device.errors import DatasetError, MetadataError
from cxr_device.nih_metadata import read_nih_metadata

from .conftest import NIH_HEADER_2020


def _row(i: int, labels: str = "No Finding") -> str:
    return f"{i:08d}_000.png,{labels},0,{i},{20 + i % 50},M,PA,2500,2048,0.143,0.143"


def _csv(rows: list[str], end: str = "\n") -> str:
    return NIH_HEADER_2020 + "\n" + "\n".join(rows) + end


def _image_ids(table) -> list[str]:
    return sorted(table.frame["image_id"])


@pytest.mark.parametrize("suffix", [".csv", ".csv.gz"])
def test_an_unterminated_quote_excludes_its_line_and_the_rows_after_it_are_read(tmp_path, suffix):
    rows = [_row(1), _row(2), _row(3, '"Pneumonia|Effusion'), _row(4), _row(5, "Pneumonia"), _row(6)]
    path = tmp_path / f"meta{suffix}"
    text = _csv(rows)
    if suffix.endswith(".gz"):
        with gzip.open(path, "wt") as handle:
            handle.write(text)
    else:
        path.write_text(text)
    table = read_nih_metadata(path)
    # today's csv module reads from the quote to the end of the file: rows 4-6 vanish into one field
    assert _image_ids(table) == [f"{i:08d}_000.png" for i in (1, 2, 4, 5, 6)]
    assert table.frame.set_index("image_id").loc["00000005_000.png", "pneumonia"] == 1
    bad = table.exclusions.frame()
    assert len(bad) == 1 and bad.loc[0, "reason"] == ex.MALFORMED_ROW and bad.loc[0, "source_line"] == 4
    assert bad.loc[0, "image_id"] == "00000003_000.png"
    assert "line 4: has an unterminated quote" in bad.loc[0, "detail"] and path.name in bad.loc[0, "detail"]
    assert "3 line(s) after it were read again" in bad.loc[0, "detail"]
    assert table.source["rows_read"] == len(rows) == len(table.frame) + len(bad)
    assert list(table.frame.sort_values("image_id")["source_line"]) == [2, 3, 5, 6, 7]


@pytest.mark.parametrize("end", ["\n", ""])
def test_an_unterminated_quote_on_the_last_line_is_reported(write_csv, end):
    table = read_nih_metadata(write_csv(_csv([_row(1), _row(2), _row(3)[:-5] + '"0.143'], end)))
    assert _image_ids(table) == ["00000001_000.png", "00000002_000.png"]
    bad = table.exclusions.frame()
    assert list(bad["source_line"]) == [4] and list(bad["reason"]) == [ex.MALFORMED_ROW]
    assert table.source["rows_read"] == 3


def test_a_quoted_line_break_and_a_quote_running_past_the_csv_field_limit(write_csv):
    # a field may not hold a line break: both halves are excluded, each with its own line
    broken = _row(2).replace("No Finding", '"No\nFinding"')
    many = [_row(i) for i in range(10, 2010)]  # ~150 KB after the quote: over the csv field-size limit
    table = read_nih_metadata(write_csv(_csv([_row(1), broken, _row(3), _row(4, '"Mass')] + many)))
    bad = table.exclusions.frame()
    assert list(bad["source_line"]) == [3, 4, 6]
    assert "unterminated quote" in bad.loc[0, "detail"] and "runs on to line 4" in bad.loc[0, "detail"]
    assert "found" in bad.loc[1, "detail"]  # the second half has too few fields
    assert len(table.frame) == 2 + len(many)
    assert table.source["rows_read"] == 5 + len(many) == len(table.frame) + len(bad)  # physical lines


def test_the_cohort_counts_every_line_of_a_file_with_a_broken_quote(tmp_path, capsys):
    rows = [_row(i, "Pneumonia" if i % 4 == 0 else "No Finding") for i in range(1, 41)]
    rows[9] = rows[9].replace("No Finding", '"No Finding')
    path = tmp_path / "meta.csv"
    path.write_text(_csv(rows))
    out = tmp_path / "cohort"
    assert main(["cohort", "--metadata", str(path), "--metadata-only", "--out", str(out)]) == 1
    summary = json.loads((out / "summary.json").read_text())
    exclusions = pd.read_csv(out / "exclusions.csv")
    assert summary["n_images"] == 39 and summary["n_excluded"] == 1 == len(exclusions)
    assert summary["source"]["rows_read"] == 40
    assert exclusions.loc[0, "source_line"] == 11 and "unterminated quote" in exclusions.loc[0, "detail"]
    assert "unterminated quote" in capsys.readouterr().err


@pytest.mark.parametrize("text", [NIH_HEADER_2020 + "\n", NIH_HEADER_2020, NIH_HEADER_2020 + "\n\n\n"])
def test_a_header_only_csv_names_the_file_and_says_there_are_no_rows(write_csv, text, capsys, tmp_path):
    path = write_csv(text, "Data_Entry_2017.csv")
    with pytest.raises(MetadataError, match="Data_Entry_2017.csv: no data rows after the header"):
        read_nih_metadata(path)
    assert main(["cohort", "--metadata", str(path), "--metadata-only", "--out", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and "no data rows" in err and "log" not in err
    assert not (tmp_path / "c").exists()


def test_a_header_with_an_unterminated_quote_is_an_error_naming_the_file(write_csv):
    path = write_csv('Image Index,"Finding Labels,Patient ID\n' + _row(1) + "\n")
    with pytest.raises(MetadataError, match=r"meta.csv: line 1 \(the header\) has an unterminated quote"):
        read_nih_metadata(path)


@pytest.mark.parametrize("layout", ["flat", "split"])
def test_class_folders_without_images_name_the_folder(tmp_path, layout, capsys):
    root = tmp_path / "chest_xray"
    base = root / "train" if layout == "split" else root
    for name in ("NORMAL", "PNEUMONIA"):
        (base / name).mkdir(parents=True)
    (base / "NORMAL" / "notes.txt").write_text("not an image")
    with pytest.raises(DatasetError, match="no image files") as err:
        read_class_folders(root)
    assert str(root) in str(err.value) and "1 other file(s) were ignored" in str(err.value)
    assert main(["cohort", "--folders", str(root), "--out", str(tmp_path / "c")]) == 2
    assert "no image files" in capsys.readouterr().err
