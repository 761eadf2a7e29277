"""How fast the pipeline reads a 经费支出 sheet of N lines, against openpyxl (see bench/parts.py's
xlsx_measure, which `make bench` runs).

    python bench/xlsx_reader.py [lines]     (default 100000)
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]

from parts import xlsx_measure

if __name__ == "__main__":
    r = xlsx_measure(int(sys.argv[1]) if len(sys.argv) > 1 else 100_000)
    print(f"xlsx {r['lines']} lines: pipeline read {r['pipeline_s']:.2f} s (python-calamine grid alone {r['grid_s']:.2f} s), "
          f"openpyxl {r['openpyxl_s']:.2f} s: speed-up x{r['speedup']:.1f} (grid alone x{r['grid_speedup']:.1f})")
