"""Every row that leaves a cohort is recorded here with its reason: nothing is dropped silently.

Reasons come in two kinds:

* *invalid* - the input itself is wrong (malformed CSV row, unparseable age, unknown finding,
  duplicate image id, ...). The cohort is still written, but the command exits 1 so a pipeline
  notices.
* *filtered* - the row is fine but the user's settings leave it out (age range, view, no image
  file under the given roots, class cap, undersampling).
"""
from __future__ import annotations

import pandas as pd

from .safe_text import spreadsheet_cell

# --- invalid input -------------------------------------------------------------------------
MALFORMED_ROW = "malformed_row"
DUPLICATE_IMAGE_ID = "duplicate_image_id"
INVALID_PATIENT_ID = "invalid_patient_id"
UNPARSEABLE_AGE = "unparseable_age"
IMPLAUSIBLE_AGE = "implausible_age"
UNKNOWN_SEX = "unknown_sex"
UNKNOWN_VIEW = "unknown_view"
UNKNOWN_FINDING = "unknown_finding"
CONTRADICTORY_FINDINGS = "contradictory_findings"
UNRECOGNISED_FILE_NAME = "unrecognised_file_name"
UNREADABLE_IMAGE_FILE = "unreadable_image_file"  # the row's file is a broken or looping link

INVALID_REASONS = frozenset(
    {
        MALFORMED_ROW,
        DUPLICATE_IMAGE_ID,
        INVALID_PATIENT_ID,
        UNPARSEABLE_AGE,
        IMPLAUSIBLE_AGE,
        UNKNOWN_SEX,
        UNKNOWN_VIEW,
        UNKNOWN_FINDING,
        CONTRADICTORY_FINDINGS,
        UNRECOGNISED_FILE_NAME,
        UNREADABLE_IMAGE_FILE,
    }
)

# --- filtered by settings ------------------------------------------------------------------
NO_IMAGE_FILE = "no_image_file"
AGE_UNKNOWN = "age_unknown"
AGE_BELOW_MIN = "age_below_min"
AGE_ABOVE_MAX = "age_above_max"
SEX_NOT_SELECTED = "sex_not_selected"
VIEW_NOT_SELECTED = "view_not_selected"
NOT_IN_OFFICIAL_LISTS = "not_in_official_lists"
CLASS_CAP = "class_cap"
BALANCE_TRAIN = "balance_train_undersampled"
VAL_PREVALENCE = "val_prevalence_subsampled"

COLUMNS = ["source_line", "image_id", "reason", "detail"]


class ExclusionLog:
    """Collects excluded rows (vectorised: whole frames at a time) in the order they were dropped."""

    def __init__(self) -> None:
        self._parts: list[pd.DataFrame] = []

    def add(self, rows: pd.DataFrame, reason: str, detail: str | pd.Series) -> None:
        """Record every row of ``rows`` (needs ``image_id``; ``source_line`` if known) as excluded."""
        if rows.empty:
            return
        part = pd.DataFrame(
            {
                "source_line": rows.get("source_line", pd.NA),
                "image_id": rows["image_id"].astype(str),
                "reason": reason,
                "detail": detail,
            },
            index=rows.index,
        )
        self._parts.append(part.reset_index(drop=True))

    def add_records(self, records: list[dict]) -> None:
        """Record rows that never became table rows (e.g. malformed CSV lines)."""
        if records:
            self._parts.append(pd.DataFrame.from_records(records, columns=COLUMNS))

    def frame(self, invalid_only: bool = False) -> pd.DataFrame:
        """All exclusions (or only the invalid-input ones) with columns ``source_line, image_id,
        reason, detail``."""
        if not self._parts:
            return pd.DataFrame(columns=COLUMNS)
        out = pd.concat(self._parts, ignore_index=True)
        out["source_line"] = pd.to_numeric(out["source_line"], errors="coerce").astype("Int64")
        return out[out["reason"].isin(INVALID_REASONS)] if invalid_only else out

    def frame_for_csv(self) -> pd.DataFrame:
        """:meth:`frame` as it may be written to ``exclusions.csv``: every text cell comes from the
        input (an Image Index ``=HYPERLINK(...)``), so none may run as a spreadsheet formula or
        carry control characters (:func:`~cxr_device.safe_text.spreadsheet_cell`)."""
        out = self.frame()
        for column in out.columns:
            if not pd.api.types.is_numeric_dtype(out[column]):  # text (object or pandas' str dtype)
                out[column] = out[column].map(lambda v: spreadsheet_cell(v) if isinstance(v, str) else v)
        return out

    def counts(self) -> dict[str, int]:
        """reason -> number of rows, sorted by reason."""
        if not self._parts:
            return {}
        reasons = pd.concat([p["reason"] for p in self._parts])
        return {str(k): int(v) for k, v in sorted(reasons.value_counts().items())}

    def n_invalid(self) -> int:
        """Rows excluded because the input was wrong (not because of the user's settings)."""
        return sum(n for reason, n in self.counts().items() if reason in INVALID_REASONS)
