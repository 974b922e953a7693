"""Tests for jaxpu.report: cells, records, Markdown layout, tables kept across calls."""

import json

import numpy as np
import pytest

from experiments import common as experiment
from jaxpu import report
from jaxpu.thesis import paper


def test_cell_statistics():
  cell = report.Cell("t", ("a",), "x", [0.2, 0.4, 0.6])
  assert cell.mean == pytest.approx(0.4)
  assert cell.std == pytest.approx(np.std([0.2, 0.4, 0.6], ddof=1))  # the sample std
  with pytest.raises(ValueError, match="no values"):
    report.Cell("t", ("a",), "x", [])


def test_write_results_roundtrip_and_comparison(tmp_path):
  spec = paper.paper_spec("table1")
  cells = [report.Cell("table1", ("50%R+U", "SoftmaxLoss"), "mean F1", [0.70, 0.72]),
           report.Cell("table1", ("50%R+U", "nnPU"), "mean F1", [0.6])]
  md = report.write_results(str(tmp_path), [spec], cells, {"seed": 3},
                            reference=paper.paper_cells("table1"))
  assert "| 50%R+U | SoftmaxLoss | – (paper: 0.79) | – (paper: 0.74) | – (paper: 0.83) " \
         "| 0.71 ± 0.01 (paper: 0.78) |" in md
  assert "| 50%R+U | nnPU | – | – | – | 0.60 |" in md
  # Rows the run did not measure are left out.
  assert "BootstrapHard" not in md
  records = json.loads((tmp_path / "results.json").read_text())
  assert records[0] == {"table": "table1", "title": spec.title,
                        "row_keys": list(spec.row_keys), "columns": list(spec.columns),
                        "row": ["50%R+U", "SoftmaxLoss"],
                        "column": "mean F1", "mean": pytest.approx(0.71),
                        "std": pytest.approx(np.std([0.70, 0.72], ddof=1)), "n": 2,
                        "values": [0.70, 0.72],
                        "config": {"seed": 3}}
  back = report.load_results(str(tmp_path))
  assert [(c.row, c.column, c.values) for c in back] == [
      (c.row, c.column, c.values) for c in cells]
  assert (tmp_path / "results.md").read_text() == md




def test_tables_of_earlier_calls_are_kept(tmp_path):
  """A second table run into the same workdir does not replace the first one's report."""
  t4 = report.TableSpec("table4", "Table 4 title", ("group", "row"), ("Fold1",))
  t5 = report.TableSpec("table5", "Table 5 title", ("group", "row"), ("Fold1",))
  first = experiment.Outputs(str(tmp_path), {"tables": ["table4"]})
  first.add("table4", ("Baseline", "RandomWeights"), "Fold1", [0.3, 0.32])
  first.write([t4])
  second = experiment.Outputs(str(tmp_path), {"tables": ["table5"]})
  second.add("table5", ("Baseline", "NoFalsePositive"), "Fold1", [0.4])
  md = second.write([t5])
  assert "**Table 5 title**" in md and "**Table 4 title**" in md
  assert "| Baseline | RandomWeights | 0.31 ± 0.01 |" in md
  assert {c.table for c in report.load_results(str(tmp_path))} == {"table4", "table5"}
  third = experiment.Outputs(str(tmp_path), {"tables": ["table4"]})  # table 4 again: replaced
  third.add("table4", ("Baseline", "RandomWeights"), "Fold1", [0.5])
  assert "| Baseline | RandomWeights | 0.50 |" in third.write([t4])
