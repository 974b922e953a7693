"""Result tables: `results.json` records and `results.md` tables in the paper's layout.

A result is a `Cell`: one number of one table (a row, a column) measured once per
repeat (or per repeat x snapshot, as Tables 3-5 of the thesis average over the
last five snapshots of three repeats). `write_results` stores every cell as a
record (row and column names, mean, std, the values, and the flags that
produced them) and renders each table as Markdown, next to the thesis' own
numbers (`paper_results.json`) when asked.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

_PAPER_FILE = os.path.join(os.path.dirname(__file__), "paper_results.json")


@dataclasses.dataclass(frozen=True)
class TableSpec:
  """The layout of a table: its id, title, row-key names and column names."""
  table: str
  title: str
  row_keys: tuple[str, ...]
  columns: tuple[str, ...]


@dataclasses.dataclass
class Cell:
  """One number of a table, measured once per repeat (or repeat x snapshot)."""
  table: str
  row: tuple[str, ...]
  column: str
  values: list[float]

  def __post_init__(self):
    self.row = tuple(self.row)
    self.values = [float(v) for v in np.ravel(self.values)]
    if not self.values:
      raise ValueError(f"Cell {self.table}/{self.row}/{self.column} has no values.")

  @property
  def mean(self) -> float:
    return float(np.mean(self.values))

  @property
  def std(self) -> float:
    """Population standard deviation (0 for a single value)."""
    return float(np.std(self.values))


@functools.lru_cache(maxsize=1)
def paper_results() -> dict[str, Any]:
  """The thesis' published numbers (Tables 1-5), as stored in `paper_results.json`."""
  with open(_PAPER_FILE) as f:
    return json.load(f)


def paper_spec(table: str) -> TableSpec:
  """The layout of one of the thesis' tables ("table1" ... "table5")."""
  tables = paper_results()["tables"]
  if table not in tables:
    raise ValueError(f"Unknown paper table {table!r}; known: {sorted(tables)}.")
  t = tables[table]
  return TableSpec(table, t["title"], tuple(t["row_keys"]), tuple(t["columns"]))


def paper_cells(table: str) -> list[Cell]:
  """The thesis' numbers of one table as cells (mean, and std where published)."""
  t = paper_results()["tables"][table]
  cells = []
  for entry in t["rows"]:
    for column, value in zip(t["columns"], entry["values"]):
      mean, std = (value if isinstance(value, list) else (value, None))
      cell = Cell(table, tuple(entry["row"]), column, [mean])
      cells.append(_PaperCell(cell.table, cell.row, cell.column, cell.values, std))
  return cells


@dataclasses.dataclass
class _PaperCell(Cell):
  published_std: float | None = None

  @property
  def std(self) -> float:
    return math.nan if self.published_std is None else self.published_std


def _fmt(cell: Cell | None, digits: int) -> str:
  if cell is None:
    return "–"
  if math.isnan(cell.std) or (len(cell.values) == 1 and not isinstance(cell, _PaperCell)):
    return f"{cell.mean:.{digits}f}"
  return f"{cell.mean:.{digits}f} ± {cell.std:.{digits}f}"


def _ordered(items: Iterable, first: Sequence) -> list:
  """`first` in its order, then the other items in the order first seen."""
  seen = []
  for item in list(first) + list(items):
    if item not in seen:
      seen.append(item)
  return seen


def format_table(spec: TableSpec, cells: Sequence[Cell],
                 paper: Sequence[Cell] | None = None, digits: int = 2) -> str:
  """Renders `cells` as a Markdown table in `spec`'s layout.

  Rows and columns follow the paper's order; rows and columns that the paper
  does not have (extensions such as nnPU) follow after. With `paper`, each
  cell shows the paper's number beside ours as "ours (paper: x)".
  """
  cells = [c for c in cells if c.table == spec.table]
  paper = [c for c in (paper or ()) if c.table == spec.table]
  rows = _ordered([c.row for c in cells], [c.row for c in paper])
  columns = _ordered([c.column for c in cells], spec.columns)
  ours = {(c.row, c.column): c for c in cells}
  theirs = {(c.row, c.column): c for c in paper}
  row_keys = list(spec.row_keys)
  width = max([len(r) for r in rows] + [len(row_keys)])
  row_keys += [""] * (width - len(row_keys))

  lines = [f"**{spec.title}**", "",
           "| " + " | ".join(row_keys + list(columns)) + " |",
           "|" + "---|" * (len(row_keys) + len(columns))]
  for row in rows:
    if not any((row, col) in ours for col in columns) and cells:
      continue  # A paper row this run did not measure.
    entries = list(row) + [""] * (width - len(row))
    for col in columns:
      if cells:
        text = _fmt(ours.get((row, col)), digits)
        if (row, col) in theirs:
          text += f" (paper: {_fmt(theirs[(row, col)], digits)})"
      else:
        text = _fmt(theirs.get((row, col)), digits)
      entries.append(text)
    lines.append("| " + " | ".join(entries) + " |")
  return "\n".join(lines) + "\n"


def format_paper_table(table: str) -> str:
  """The thesis' own table, in its layout (what `results.md` compares with)."""
  return format_table(paper_spec(table), [], paper_cells(table))


def records(cells: Sequence[Cell], flags: Mapping[str, Any]) -> list[dict[str, Any]]:
  """One JSON-ready record per cell: names, mean, std, values and the flags."""
  return [{"table": c.table, "row": list(c.row), "column": c.column,
           "mean": c.mean, "std": c.std, "n": len(c.values),
           "values": list(c.values), "flags": dict(flags)} for c in cells]


def write_results(workdir: str, specs: Sequence[TableSpec], cells: Sequence[Cell],
                  flags: Mapping[str, Any], compare_with_paper: bool = False,
                  preamble: str = "", epilogue: str = "") -> str:
  """Writes `results.json` and `results.md` to `workdir`; returns the Markdown.

  Args:
    workdir: output folder (created if missing).
    specs: the tables to render, in order.
    cells: every measured number.
    flags: the flags that produced them (stored with every record).
    compare_with_paper: show the thesis' numbers beside ours (when the
      dataset is the paper's; the embedded data has no published numbers).
    preamble, epilogue: Markdown placed before and after the tables.
  """
  os.makedirs(workdir, exist_ok=True)
  tables = paper_results()["tables"]
  parts = [preamble] if preamble else []
  for spec in specs:
    paper = paper_cells(spec.table) if compare_with_paper and spec.table in tables else None
    parts.append(format_table(spec, cells, paper))
  if epilogue:
    parts.append(epilogue)
  markdown = "\n".join(parts)
  _atomic_write(os.path.join(workdir, "results.json"),
                json.dumps(records(cells, flags), indent=1, default=str))
  _atomic_write(os.path.join(workdir, "results.md"), markdown)
  return markdown


def load_results(workdir: str) -> list[Cell]:
  """Reads back the cells of a `results.json`."""
  with open(os.path.join(workdir, "results.json")) as f:
    return [Cell(r["table"], tuple(r["row"]), r["column"], r["values"]) for r in json.load(f)]


def _atomic_write(path: str, text: str) -> None:
  tmp = f"{path}.tmp-{os.getpid()}"
  with open(tmp, "w") as f:
    f.write(text)
  os.replace(tmp, path)
