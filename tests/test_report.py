"""Tests for jaxpu.report: records, Markdown layout, the paper-numbers file."""

import json

import numpy as np
import pytest

from jaxpu import report


def test_paper_table1_layout_reproduced():
  md = report.format_paper_table("table1")
  lines = md.strip().splitlines()
  assert lines[2] == "| annotation | loss | acc. | mean prec. | mean rec. | mean F1 |"
  # Six rows in the thesis' order, with its numbers.
  body = lines[4:]
  assert len(body) == 6
  assert body[0] == "| R+N | CrossEntropy | 0.87 | 0.88 | 0.82 | 0.85 |"
  assert body[2] == "| 50%R+U | CrossEntropy | 0.66 | 0.94 | 0.38 | 0.49 |"
  assert body[5] == "| 50%R+U | BootstrapHard | 0.80 | 0.76 | 0.81 | 0.78 |"


def test_paper_table1_mean_f1_is_mean_of_per_class_f1_not_harmonic_mean():
  # Table 1's 50%R+U CrossEntropy row: the F1 of the mean precision and mean
  # recall would be 0.54; the thesis reports 0.49, so mean F1 averages per-class F1.
  row = [c for c in report.paper_cells("table1")
         if c.row == ("50%R+U", "CrossEntropy")]
  values = {c.column: c.mean for c in row}
  harmonic = 2 * values["mean prec."] * values["mean rec."] / (
      values["mean prec."] + values["mean rec."])
  assert harmonic == pytest.approx(0.54, abs=0.005)
  assert values["mean F1"] == 0.49


def test_paper_tables_3_to_5_have_mean_and_std():
  md = report.format_paper_table("table4")
  assert "| Inexhaustive Segmentation | SigmoidLoss | 0.30 ± 0.01 |" in md
  for table in ("table3", "table4", "table5"):
    spec = report.paper_spec(table)
    assert spec.columns == ("Fold1", "Fold2", "Fold3", "Fold4", "Average")
    # The published averages are the means of the folds (to rounding).
    cells = report.paper_cells(table)
    for row in {c.row for c in cells}:
      folds = [c.mean for c in cells if c.row == row and c.column.startswith("Fold")]
      average = [c.mean for c in cells if c.row == row and c.column == "Average"][0]
      assert np.mean(folds) == pytest.approx(average, abs=0.011)


def test_cell_statistics():
  cell = report.Cell("t", ("a",), "x", [0.2, 0.4, 0.6])
  assert cell.mean == pytest.approx(0.4)
  assert cell.std == pytest.approx(np.std([0.2, 0.4, 0.6]))
  with pytest.raises(ValueError, match="no values"):
    report.Cell("t", ("a",), "x", [])


def test_write_results_roundtrip_and_comparison(tmp_path):
  spec = report.paper_spec("table1")
  cells = [report.Cell("table1", ("50%R+U", "SoftmaxLoss"), "mean F1", [0.70, 0.72]),
           report.Cell("table1", ("50%R+U", "nnPU"), "mean F1", [0.6])]
  md = report.write_results(str(tmp_path), [spec], cells, {"seed": 3},
                            compare_with_paper=True)
  assert "| 50%R+U | SoftmaxLoss | – (paper: 0.79) | – (paper: 0.74) | – (paper: 0.83) " \
         "| 0.71 ± 0.01 (paper: 0.78) |" in md
  assert "| 50%R+U | nnPU | – | – | – | 0.60 |" in md
  # Rows the run did not measure are left out.
  assert "BootstrapHard" not in md
  records = json.loads((tmp_path / "results.json").read_text())
  assert records[0] == {"table": "table1", "row": ["50%R+U", "SoftmaxLoss"],
                        "column": "mean F1", "mean": pytest.approx(0.71),
                        "std": pytest.approx(0.01), "n": 2, "values": [0.70, 0.72],
                        "flags": {"seed": 3}}
  back = report.load_results(str(tmp_path))
  assert [(c.row, c.column, c.values) for c in back] == [
      (c.row, c.column, c.values) for c in cells]
  assert (tmp_path / "results.md").read_text() == md


def test_unknown_table_error_names_it():
  with pytest.raises(ValueError, match="table9"):
    report.paper_spec("table9")
