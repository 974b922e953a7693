"""The thesis' published numbers (Tables 1-5, `paper_results.json`) as table cells."""

from __future__ import annotations

import functools
import json
import os
from typing import Any

from jaxpu import report

_PAPER_FILE = os.path.join(os.path.dirname(__file__), "paper_results.json")


@functools.lru_cache(maxsize=1)
def paper_results() -> dict[str, Any]:
  """The thesis' published numbers (Tables 1-5), as stored in `paper_results.json`."""
  with open(_PAPER_FILE) as f:
    return json.load(f)


def tables() -> tuple[str, ...]:
  """The ids of the thesis' tables with published numbers ("table1" ... "table5")."""
  return tuple(paper_results()["tables"])


def paper_spec(table: str) -> report.TableSpec:
  """The layout of one of the thesis' tables ("table1" ... "table5")."""
  known = paper_results()["tables"]
  if table not in known:
    raise ValueError(f"Unknown paper table {table!r}; known: {sorted(known)}.")
  t = known[table]
  return report.TableSpec(table, t["title"], tuple(t["row_keys"]), tuple(t["columns"]))


def paper_cells(table: str) -> list[report.Cell]:
  """The thesis' numbers of one table as cells (mean, and std where published)."""
  t = paper_results()["tables"][table]
  cells = []
  for entry in t["rows"]:
    for column, value in zip(t["columns"], entry["values"]):
      mean, std = (value if isinstance(value, list) else (value, None))
      cells.append(report.ReferenceCell(table, tuple(entry["row"]), column, [mean], std))
  return cells


def reference_cells(table_ids) -> list[report.Cell]:
  """The thesis' cells of those of `table_ids` it published (for `results.md`)."""
  return [c for t in table_ids if t in paper_results()["tables"] for c in paper_cells(t)]


def format_paper_table(table: str) -> str:
  """The thesis' own table, in its layout (what `results.md` compares with)."""
  return report.format_table(paper_spec(table), [], paper_cells(table))
