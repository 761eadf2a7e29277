"""How fast the workbook reader is against openpyxl on one 经费支出 sheet of N lines.

    python bench/xlsx_reader.py [lines]     (default 100000)

Both read every cell of the sheet into Python lists; the figure justifies python-calamine.
"""

from __future__ import annotations

import io
import sys
import time
from datetime import date, timedelta
from decimal import Decimal

import openpyxl

from adapters.workbook import Workbook
from etl.sample.builder import EXPENSE_HEADER, write_workbook


def sheet_bytes(lines: int) -> bytes:
    start = date(2023, 3, 1)
    rows = [EXPENSE_HEADER] + [
        [i, start + timedelta(days=i % 200), "差旅费", "市级经费", Decimal(i % 5000) + Decimal("0.25"), "上海某公司",
         f"记-2023-{i:07d}", "专家赴基层服务交通费"]
        for i in range(1, lines + 1)
    ]
    buffer = io.BytesIO()
    write_workbook({"经费支出": rows}, buffer)
    return buffer.getvalue()


def with_calamine(data: bytes) -> int:
    book = Workbook(data)
    return len(book.grid(book.find_sheet("经费支出")))


def with_openpyxl(data: bytes) -> int:
    book = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    return sum(1 for _ in book["经费支出"].iter_rows(values_only=True))


def timed(fn, data: bytes) -> tuple[float, int]:
    began = time.perf_counter()
    rows = fn(data)
    return time.perf_counter() - began, rows


def measure(lines: int) -> dict[str, float]:
    data = sheet_bytes(lines)
    calamine_s, rows_a = timed(with_calamine, data)
    openpyxl_s, rows_b = timed(with_openpyxl, data)
    assert rows_a == rows_b == lines + 1, (rows_a, rows_b)
    return {"lines": lines, "calamine_s": calamine_s, "openpyxl_s": openpyxl_s, "speedup": openpyxl_s / calamine_s}


if __name__ == "__main__":
    result = measure(int(sys.argv[1]) if len(sys.argv) > 1 else 100_000)
    print(f"xlsx {result['lines']} lines: calamine {result['calamine_s']:.2f} s, openpyxl {result['openpyxl_s']:.2f} s, "
          f"speed-up x{result['speedup']:.1f}")
