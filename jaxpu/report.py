"""Result tables: `results.json` records and `results.md` Markdown tables.

A result is a `Cell`: one number of one table (a row, a column) measured once per
repeat (or per repeat x snapshot). `write_results` stores every cell as a
record (table title, row and column names, mean, std, n, the values, and the
config that produced them) and renders each table as Markdown, optionally
next to reference numbers (e.g. the thesis' own, `jaxpu.thesis.paper`).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from jaxpu import fileio

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
    """Sample standard deviation over the repeats (ddof = 1, the convention of
    `jaxpu.thesis.claims`); 0.0 for a single value (the tables then print the
    mean alone)."""
    if len(self.values) < 2:
      return 0.0
    return float(np.std(self.values, ddof=1))


@dataclasses.dataclass
class ReferenceCell(Cell):
  """A published number: its mean and, where published, its std (NaN otherwise)."""
  published_std: float | None = None

  @property
  def std(self) -> float:
    return math.nan if self.published_std is None else self.published_std


def _fmt(cell: Cell | None, digits: int) -> str:
  if cell is None:
    return "–"
  if math.isnan(cell.std) or (len(cell.values) == 1 and not isinstance(cell, ReferenceCell)):
    return f"{cell.mean:.{digits}f}"
  return f"{cell.mean:.{digits}f} ± {cell.std:.{digits}f}"


def _ordered(items: Iterable, first: Sequence) -> list:
  """`first` in its order, then the other items in the order first seen."""
  seen = []
  for item in list(first) + list(items):
    if item not in seen:
      seen.append(item)
  return seen


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
  """A Markdown table: a header row, its rule and one line per row of strings."""
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  lines += ["| " + " | ".join(row) + " |" for row in rows]
  return "\n".join(lines)


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

  body = []
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
    body.append(entries)
  return f"**{spec.title}**\n\n" + markdown_table(row_keys + list(columns), body) + "\n"


def records(cells: Sequence[Cell], config: Mapping[str, Any],
            specs: Sequence[TableSpec] = ()) -> list[dict[str, Any]]:
  """One JSON-ready record per cell: table (and its layout), names, statistics, config."""
  by_table = {s.table: s for s in specs}
  out = []
  for c in cells:
    spec = by_table.get(c.table)
    layout = ({"title": spec.title, "row_keys": list(spec.row_keys),
               "columns": list(spec.columns)} if spec else {})
    out.append({"table": c.table, **layout, "row": list(c.row), "column": c.column,
                "mean": c.mean, "std": c.std, "n": len(c.values), "values": list(c.values),
                "config": dict(config)})
  return out


def write_results(workdir: str, specs: Sequence[TableSpec], cells: Sequence[Cell],
                  config: Mapping[str, Any], reference: Sequence[Cell] | None = None,
                  preamble: str = "", epilogue: str = "",
                  previous_specs: Sequence[TableSpec] = ()) -> str:
  """Writes `results.json` and `results.md` to `workdir`; returns the Markdown.

  Args:
    workdir: output folder (created if missing).
    specs: the tables to render, in order.
    cells: every measured number.
    config: the resolved config that produced them (stored with every record).
    reference: published numbers shown beside ours ("ours (paper: x)").
    preamble, epilogue: Markdown placed before and after the tables.
    previous_specs: the layouts of tables kept from an earlier results.json
      (`load_specs`), rendered after `specs`.
  """
  os.makedirs(workdir, exist_ok=True)
  previous = list(previous_specs)
  parts = [preamble] if preamble else []
  for spec in list(specs) + previous:
    parts.append(format_table(spec, cells, reference))
  if epilogue:
    parts.append(epilogue)
  markdown = "\n".join(parts)
  fileio.write_text(os.path.join(workdir, "results.json"),
                    json.dumps(records(cells, config, list(specs) + previous), indent=1,
                               default=str))
  fileio.write_text(os.path.join(workdir, "results.md"), markdown)
  return markdown


_RECORD_KEYS = ("table", "row", "column", "values")


def _read_records(workdir: str) -> list[dict[str, Any]]:
  """The records of `workdir/results.json`; a damaged file is an error naming it."""
  path = os.path.join(workdir, "results.json")
  fix = "delete it and run again (the run folders are reused, nothing is retrained)"
  records = fileio.read_json(path, default=[], what=fix)
  if not isinstance(records, list) or not all(
      isinstance(r, dict) and all(k in r for k in _RECORD_KEYS) and isinstance(r["values"], list)
      for r in records):
    raise ValueError(f"{path} is damaged: it must be a list of records with the fields "
                     f"{list(_RECORD_KEYS)}; {fix}.")
  return records


def load_results(workdir: str) -> list[Cell]:
  """Reads back the cells of a `results.json`."""
  return [Cell(r["table"], tuple(r["row"]), r["column"], r["values"])
          for r in _read_records(workdir)]


def load_results_if_any(workdir: str) -> list[Cell]:
  """`load_results`, or [] when the workdir has no results.json yet."""
  if not os.path.exists(os.path.join(workdir, "results.json")):
    return []
  return load_results(workdir)


def load_specs(workdir: str) -> list[TableSpec]:
  """The table layouts stored in a `results.json` (tables without one get a bare layout)."""
  specs: dict[str, TableSpec] = {}
  for r in _read_records(workdir):
    if r["table"] not in specs:
      specs[r["table"]] = TableSpec(r["table"], r.get("title", r["table"]),
                                    tuple(r.get("row_keys", ())), tuple(r.get("columns", ())))
  return list(specs.values())
