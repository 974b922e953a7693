"""experiments.second_path: verdicts that hold on two numeric paths."""

from experiments import second_path
from jaxpu import report


def test_second_path_table_reports_only_verdicts_that_hold_on_both(tmp_path):
  spec = report.TableSpec("table4", "Table 4", ("group", "model"), ("Fold1", "Average"))
  def write(workdir, sigmoid):
    cells = [report.Cell("table4", ("Baseline", "CompleteLabels"), "Average", [0.60, 0.62, 0.61]),
             report.Cell("table4", ("Baseline", "RandomWeights"), "Average", [0.40, 0.41, 0.42]),
             report.Cell("table4", ("I", "HalfUnsegmented"), "Average", [0.50, 0.52, 0.51]),
             report.Cell("table4", ("I", "SigmoidLoss"), "Average", sigmoid)]
    report.write_results(str(workdir), [spec], cells, {})
  write(tmp_path / "a", [0.55, 0.58, 0.56])   # clearly above HalfUnsegmented
  write(tmp_path / "b", [0.49, 0.56, 0.50])   # not separable on this path
  text = second_path.verdicts_table(str(tmp_path / "a"), str(tmp_path / "b"))
  line = [l for l in text.splitlines() if l.startswith("| The sigmoid loss protects")][0]
  assert "**supported** | **undecided** | **undecided (paths disagree: supported vs undecided)**" in line
  line = [l for l in text.splitlines() if l.startswith("| Unsegmented objects hurt the learned "
                                                        "representation |")][0]
  assert line.count("**supported**") == 3
