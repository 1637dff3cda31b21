"""Filters remove exactly the rows that violate them, each logged once."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cxr_device.errors import CxrDeviceError
from cxr_device.exclusions import ExclusionLog
from cxr_device.filters import Filters, apply_filters

rows = st.lists(
    st.tuples(st.one_of(st.none(), st.floats(0, 100, allow_nan=False)), st.sampled_from("MF"),
              st.sampled_from(["PA", "AP", "LL"])),
    min_size=1, max_size=80,
)
bounds = st.one_of(st.none(), st.floats(0, 100, allow_nan=False))
subsets = st.one_of(st.none(), st.lists(st.sampled_from(["PA", "AP", "LL"]), min_size=1, unique=True).map(tuple))


@settings(max_examples=200, deadline=None)
@given(rows, bounds, bounds, st.one_of(st.none(), st.sampled_from([("M",), ("F",), ("M", "F")])), subsets)
def test_filters_remove_exactly_the_violating_rows(data, lo, hi, sexes, views):
    frame = pd.DataFrame(data, columns=["age_years", "sex", "view"]).assign(
        image_id=lambda f: [f"{i}.png" for i in range(len(f))])
    frame["age_years"] = frame["age_years"].astype(float)
    if lo is not None and hi is not None and lo > hi:
        lo, hi = hi, lo
    if frame["age_years"].isna().all() and (lo is not None or hi is not None):
        return  # refusing an age filter on ageless data is tested below
    log = ExclusionLog()
    out = apply_filters(frame, Filters(lo, hi, sexes, views), log)

    def ok(r):
        age = r.age_years
        if (lo is not None or hi is not None) and np.isnan(age):
            return False
        return ((lo is None or age >= lo) and (hi is None or age <= hi)
                and (sexes is None or r.sex in sexes) and (views is None or r.view in views))

    expected = {r.image_id for r in frame.itertuples() if ok(r)}
    assert set(out["image_id"]) == expected
    removed = log.frame()
    assert sorted(removed["image_id"]) == sorted(set(frame["image_id"]) - expected)  # each once


def test_filter_on_a_field_the_dataset_lacks_is_refused():
    frame = pd.DataFrame({"image_id": ["a"], "age_years": [np.nan], "sex": [""], "view": [""]})
    with pytest.raises(CxrDeviceError, match="records no age"):
        apply_filters(frame, Filters(min_age=18), ExclusionLog())
    with pytest.raises(CxrDeviceError, match="records no sex"):
        apply_filters(frame, Filters(sexes=("M",)), ExclusionLog())


def test_min_above_max_is_refused():
    frame = pd.DataFrame({"image_id": ["a"], "age_years": [40.0], "sex": ["M"], "view": ["PA"]})
    with pytest.raises(CxrDeviceError, match="above --max-age"):
        apply_filters(frame, Filters(min_age=60, max_age=20), ExclusionLog())
