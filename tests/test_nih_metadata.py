"""NIH metadata ingestion: every layout in circulation and every kind of bad row."""
from __future__ import annotations

import gzip

import pytest

from cxr_device import exclusions as ex
from cxr_device.ages import parse_age_years
from cxr_device.errors import MetadataError
from cxr_device.findings import FINDING_COLUMNS
from cxr_device.nih_metadata import read_nih_metadata

from .conftest import NIH_HEADER_2020, shared

GOOD_2020 = NIH_HEADER_2020 + """
00000001_000.png,Cardiomegaly,0,1,57,M,PA,2682,2749,0.143,0.143
00000001_001.png,Pneumonia|Infiltration,1,1,58,M,AP,2894,2729,0.143,0.143
00000002_000.png,No Finding,0,2,80,F,PA,2500,2048,0.171,0.171
"""


@pytest.mark.requirement("REQ-COHORT-004")
def test_2020_layout_types_and_columns(write_csv):
    table = read_nih_metadata(write_csv(GOOD_2020))
    f = table.frame
    assert list(f["image_id"]) == ["00000001_000.png", "00000001_001.png", "00000002_000.png"]
    assert f["patient_id"].dtype.kind == "i" and list(f["patient_id"]) == [1, 1, 2]
    assert f["age_years"].dtype.kind == "f" and list(f["age_years"]) == [57.0, 58.0, 80.0]
    assert list(f["pneumonia"]) == [0, 1, 0]
    assert list(f["infiltration"]) == [0, 1, 0] and list(f["no_finding"]) == [0, 0, 1]
    assert set(FINDING_COLUMNS) <= set(f.columns)
    # the bracketed header becomes two properly named columns
    assert list(f["original_width"]) == [2682, 2894, 2500]
    assert list(f["original_height"]) == [2749, 2729, 2048]
    assert list(f["pixel_spacing_y"]) == [0.143, 0.143, 0.171]
    assert table.source["layout"] == "nih-2020"
    assert table.exclusions.counts() == {}


@pytest.mark.requirement("REQ-COHORT-004")
def test_2017_layout_unit_ages_implausible_ages_and_trailing_column(write_csv):
    text = NIH_HEADER_2020 + ",\n" + "\n".join([
        "00000001_000.png,Hernia,0,1,058Y,M,PA,2682,2749,0.143,0.143,",
        "00000003_000.png,No Finding,0,3,001M,F,AP,2500,2048,0.168,0.168,",
        "00000004_000.png,No Finding,0,4,003D,F,AP,2500,2048,0.168,0.168,",
        "00000005_000.png,Mass,0,5,148Y,M,PA,2500,2048,0.168,0.168,",
        "00000006_000.png,Mass,0,6,414,M,PA,2500,2048,0.168,0.168,",
    ]) + "\n"
    table = read_nih_metadata(write_csv(text))
    ages = dict(zip(table.frame["image_id"], table.frame["age_years"]))
    assert ages["00000001_000.png"] == 58.0
    assert ages["00000003_000.png"] == pytest.approx(1 / 12, abs=1e-4)
    assert ages["00000004_000.png"] == pytest.approx(3 / 365.25, abs=1e-4)
    assert table.exclusions.counts() == {ex.IMPLAUSIBLE_AGE: 2}
    details = table.exclusions.frame()
    assert set(details["image_id"]) == {"00000005_000.png", "00000006_000.png"}
    assert details["detail"].str.contains("148|414").all()
    assert list(details["source_line"]) == [5, 6]
    assert table.source["layout"] == "nih-2017"
    assert "unnamed" not in " ".join(table.frame.columns).lower()


@pytest.mark.requirement("REQ-COHORT-004")
def test_sample_release_renamed_columns_and_zero_padded_ids(write_csv):
    text = (
        "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,"
        "OriginalImageWidth,OriginalImageHeight,OriginalImagePixelSpacing_x,OriginalImagePixelSpacing_y\n"
        "00000013_005.png,Emphysema|Infiltration|Pleural_Thickening|Pneumothorax,5,00000013,060Y,M,AP,3056,2544,0.139,0.139\n"
        "00000032_037.png,Pneumonia,37,00000032,055Y,F,AP,2500,2048,0.168,0.168\n"
    )
    table = read_nih_metadata(write_csv(text))
    f = table.frame
    assert list(f["patient_id"]) == [13, 32]
    assert list(f["original_width"]) == [3056, 2500] and list(f["pixel_spacing_x"]) == [0.139, 0.168]
    assert list(f["pneumonia"]) == [0, 1] and list(f["pleural_thickening"]) == [1, 0]
    assert table.source["layout"] == "nih-sample"


def test_missing_required_columns_error_names_them(write_csv):
    path = write_csv("Image Index,Finding Labels,Patient ID\nx.png,No Finding,1\n")
    with pytest.raises(MetadataError) as err:
        read_nih_metadata(path)
    message = str(err.value)
    assert str(path) in message
    for name in ("Patient Age", "Patient Gender", "View Position"):
        assert name in message


@pytest.mark.parametrize(
    "row, reason, words",
    [
        ("00000009_000.png,No Finding,0,9,abc,M,PA,1,1,0.1,0.1", ex.UNPARSEABLE_AGE, "abc"),
        ("00000009_000.png,No Finding,0,9,40,X,PA,1,1,0.1,0.1", ex.UNKNOWN_SEX, "'X'"),
        ("00000009_000.png,No Finding,0,9,40,M,OBLIQUE,1,1,0.1,0.1", ex.UNKNOWN_VIEW, "OBLIQUE"),
        ("00000009_000.png,Pneumonitis,0,9,40,M,PA,1,1,0.1,0.1", ex.UNKNOWN_FINDING, "Pneumonitis"),
        ("00000009_000.png,,0,9,40,M,PA,1,1,0.1,0.1", ex.UNKNOWN_FINDING, "empty"),
        ("00000009_000.png,No Finding|Mass,0,9,40,M,PA,1,1,0.1,0.1", ex.CONTRADICTORY_FINDINGS, "No Finding"),
        ("00000009_000.png,No Finding,0,nine,40,M,PA,1,1,0.1,0.1", ex.INVALID_PATIENT_ID, "nine"),
        ("00000009_000.png,No Finding,0,9,40,M,PA", ex.MALFORMED_ROW, "found 7"),
        ("00000001_000.png,No Finding,0,1,40,M,PA,1,1,0.1,0.1", ex.DUPLICATE_IMAGE_ID, "line 2"),
    ],
)
@pytest.mark.requirement("REQ-COHORT-002")
def test_each_bad_row_is_excluded_with_its_reason(write_csv, row, reason, words):
    table = read_nih_metadata(write_csv(GOOD_2020 + row + "\n"))
    assert len(table.frame) == 3, "the good rows survive"
    assert table.exclusions.counts() == {reason: 1}
    bad = table.exclusions.frame().iloc[0]
    assert bad["source_line"] == 5
    assert words in bad["detail"] and "line 5" in bad["detail"]
    assert table.exclusions.n_invalid() == 1


def test_whitespace_and_case_are_normalised(write_csv):
    text = NIH_HEADER_2020 + "\n 00000001_000.png , pneumonia ,0, 1 , 57 , m , pa ,1,1,0.1,0.1\n"
    f = read_nih_metadata(write_csv(text)).frame
    assert f.loc[0, "image_id"] == "00000001_000.png"
    assert (f.loc[0, "sex"], f.loc[0, "view"], f.loc[0, "pneumonia"]) == ("M", "PA", 1)


def test_gzip_and_row_order_do_not_matter(tmp_path):
    lines = GOOD_2020.strip().splitlines()
    shuffled = "\n".join([lines[0]] + lines[:0:-1]) + "\n"
    gz = tmp_path / "meta.csv.gz"
    with gzip.open(gz, "wt") as handle:
        handle.write(shuffled)
    plain = tmp_path / "meta.csv"
    plain.write_text(GOOD_2020)
    a = read_nih_metadata(gz).frame.drop(columns="source_line")
    b = read_nih_metadata(plain).frame.drop(columns="source_line")
    assert a.equals(b)


@pytest.mark.parametrize("text", ["", "\n"])
def test_empty_file_is_an_error_naming_it(write_csv, text):
    path = write_csv(text)
    with pytest.raises(MetadataError, match="meta.csv"):
        read_nih_metadata(path)


def test_missing_and_binary_files_are_errors(tmp_path):
    with pytest.raises(MetadataError, match="not found"):
        read_nih_metadata(tmp_path / "nope.csv")
    binary = tmp_path / "image.csv"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe\x00\x00")
    with pytest.raises(MetadataError, match="image.csv"):
        read_nih_metadata(binary)


@pytest.mark.parametrize("raw, years", [("58", 58.0), ("058Y", 58.0), ("006M", 0.5), ("2W", 2 / 52.1775),
                                        ("010D", 10 / 365.25), (" 45y ", 45.0), ("4.5", 4.5)])
def test_parse_age_years(raw, years):
    assert parse_age_years(raw) == pytest.approx(years)


@pytest.mark.parametrize("raw", ["", "abc", "58X", "-3", "Y"])
def test_parse_age_years_rejects(raw):
    assert parse_age_years(raw) != parse_age_years(raw)  # NaN


def test_real_full_metadata():
    table = read_nih_metadata(shared("nih", "Data_Entry_2017_v2020.csv.gz"))
    f = table.frame
    assert len(f) == 112_120 and table.exclusions.counts() == {}
    assert f["patient_id"].nunique() == 30_805
    assert int(f["pneumonia"].sum()) == 1_431
    assert f["view"].value_counts().to_dict() == {"PA": 67_310, "AP": 44_810}
    assert (f["age_years"].min(), f["age_years"].max()) == (0.0, 95.0)
    assert f["image_id"].is_unique and f["image_id"].is_monotonic_increasing
