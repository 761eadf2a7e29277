"""schemas.sheets: the pandera schemas over a prepared batch frame, as assets/validation.py calls them."""

import gc
import weakref

import numpy as np
import pandas as pd

from schemas.sheets import failure_cases, prepare
from schemas.values import _clean, clean_text


def _expenses(rows: list[tuple], levels: list[str]) -> pd.DataFrame:
    """A batch frame of 经费支出 as _batch_frame builds it: the cells, then the context columns."""
    cells = pd.DataFrame(rows, columns=["spent_on", "category", "funding_source", "amount", "voucher_no", "package_id"],
                         dtype=object)
    return cells.assign(
        package_id=cells["package_id"].astype(int), program_year=2023, level=pd.Categorical(levels),
        registered_units=pd.Categorical(["甲单位"] * len(rows)), registered_uscc=pd.Categorical([""] * len(rows)),
        excel_row=np.arange(3, 3 + len(rows)))


def test_frame_wide_checks_report_the_failing_cell_of_the_column_they_name():
    frame = _expenses([
        ("2023-06-01", "差旅费", "中央财政经费", "10.00", "V1", 1),  # not a municipal project's source: S005
        ("2023-06-02", "差旅费", "市级经费", "10.00", "V1", 1),  # V1 again in package 1: S007 on both rows
        ("2022-06-03", "差旅费", "市级经费", "10.00", "V2", 1),  # outside the year: S008
        ("2023-06-04", "差旅费", "市级经费", "10.005", "V3", 2),  # three decimals: S006
        ("2023-06-05", "差旅费", "市级经费", "10.00", "V1", 2),  # V1 in another package: fine
    ], ["municipal"] * 5)
    cases = failure_cases("经费支出", prepare(frame))
    found = sorted(zip(cases["check"], cases["column"], cases["index"].astype(int)))
    assert found == [("S005:funding_source", "funding_source", 0), ("S006:amount", "amount", 3),
                     ("S007:voucher_no", "voucher_no", 0), ("S007:voucher_no", "voucher_no", 1),
                     ("S008:spent_on", "spent_on", 2)]


def test_a_column_no_package_has_is_left_to_s001():
    frame = _expenses([("2023-06-01", "差旅费", "市级经费", "x", "V1", 1)], ["municipal"]).drop(columns="funding_source")
    cases = failure_cases("经费支出", prepare(frame))
    assert list(zip(cases["check"], cases["column"])) == [("S002:amount", "amount")]


def test_the_batch_frame_is_released_after_validation():
    """The frame-wide checks read the frame being validated; none of them may keep it (a batch's frame is
    tens of MiB, and a worker validates hundreds of batches)."""
    frame = prepare(_expenses([("2023-06-01", "差旅费", "中央财政经费", "10.00", "V1", 1)] * 3, ["municipal"] * 3))
    assert len(failure_cases("经费支出", frame)) == 6  # S005 and S007 (one voucher thrice) on each row
    released = weakref.ref(frame)
    del frame
    gc.collect()
    assert released() is None


def test_clean_text_is_the_same_per_distinct_value_and_per_cell():
    repeating = ["　差旅费 ", "ＡＢＣ１２３", "市级经费", None, ""] * 400  # long and repetitive: cleaned per distinct value
    unique = [f"ＶＯ-{i}　" for i in range(2000)]  # all different: cleaned per cell
    for cells in (repeating, unique):
        assert clean_text(pd.Series(cells, dtype=object)).tolist() == [_clean(cell) for cell in cells]
    assert clean_text(pd.Series(repeating[:5], dtype=object)).tolist() == ["差旅费", "ABC123", "市级经费", "", ""]
