"""The saturation study (thesis §6, open question 2), in-process at the smoke scale.

`experiments.saturation.run` with its smoke config (2-cell moons and
segmentation grids, two rates each, one repeat, a few steps; the
reproduce run's saturation section, tests/smoke.py): one row
per grid cell and rate, the figures, and a summary whose best cells are the
tables' maxima. The command line is tested in test_cli.py.
"""

import json
import math
import pathlib

import numpy as np
from PIL import Image
import pytest

from experiments import saturation
from experiments.configs import saturation as saturation_config
from jaxpu import fileio
from jaxpu import report
from tests import smoke


def _png_size(path):
  with Image.open(path) as image:
    assert image.format == "PNG"
    return image.size


@pytest.fixture(scope="module")
def smoke_run():
  """The saturation section of the smoke reproduce run (tests/smoke.py): the smoke config,
  run once per test run."""
  section = smoke.section("saturation")
  config = saturation_config.get_config("smoke")
  assert fileio.config_dict(section.config) == fileio.config_dict(config)
  return config, pathlib.Path(section.workdir), section.returned


def test_one_row_per_grid_cell_and_rate(smoke_run):
  config, workdir, cells = smoke_run
  records = json.loads((workdir / "results.json").read_text())
  assert len(records) == len(cells)
  for table, section, rates in (
      (saturation.MOONS, config.moons,
       [f"{1 - f:.0%}" for f in config.moons.labelled_fractions]),
      (saturation.SEGMENTATION, config.segmentation,
       [f"{r:.0%}" for r in config.segmentation.rates])):
    grid = saturation.grid(section)
    assert (1.0, 1.0, 1.0) in grid  # eq. 8 is one of the cells
    expected = {(rate,) + tuple(f"{v:g}" for v in cell) for rate in rates for cell in grid}
    ours = [r for r in records if r["table"] == table.table]
    for column in table.columns:
      rows = [tuple(r["row"]) for r in ours if r["column"] == column]
      assert sorted(rows) == sorted(expected), column  # each once
    for r in ours:
      assert r["n"] == config.repeats == len(r["values"])
      assert all(0 <= v <= 1 for v in r["values"] if not math.isnan(v))
  markdown = (workdir / "results.md").read_text()
  assert "| unlabelled | α | β | γ | AP | precision | recall | f1 |" in markdown
  assert "| unsegmented | α | β | γ | fg AP | fg rec. | fg prec. | mean IU |" in markdown
  for name in ("moons_heatmaps.png", "segmentation_heatmaps.png", "recall_precision.png"):
    width, height = _png_size(workdir / name)
    assert width > 300 and height > 300
    assert f"`{name}`" in markdown


def test_summary_names_each_tables_best_cell(smoke_run):
  _, workdir, _ = smoke_run
  cells = report.load_results(str(workdir))
  markdown = (workdir / "results.md").read_text()
  for table, word in ((saturation.MOONS.table, "unlabelled"),
                      (saturation.SEGMENTATION.table, "unsegmented")):
    for column in saturation.RANKING[table]:
      best = saturation.best_cells(cells, table, column)
      assert len(best) == 2  # both rates
      for rate, cell in best.items():
        means = [c.mean for c in cells
                 if c.table == table and c.column == column and c.row[0] == rate]
        assert cell.mean == np.nanmax(means)
        assert (f"- {rate} {word}, best by {column}: "
                f"{saturation._cell_name(cell.row)} ({column} {cell.mean:.3f}") in markdown
      assert (f"By {column}, the best cell stays at" in markdown
              or f"By {column}, the best cell moves from" in markdown)
  assert "eq. 8 (α = β = γ = 1):" in markdown


def test_best_cells():
  cells = [report.Cell("t", ("50%", "1", "1", "1"), "AP", [0.5, 0.7]),
           report.Cell("t", ("50%", "1", "2", "1"), "AP", [0.8, 0.8]),
           report.Cell("t", ("70%", "1", "1", "1"), "AP", [float("nan")]),
           report.Cell("t", ("70%", "1", "2", "1"), "AP", [0.1])]
  best = saturation.best_cells(cells, "t", "AP")
  assert best["50%"].row[2] == "2" and best["70%"].row[2] == "2"  # NaN never wins


@pytest.mark.parametrize("field,value,message", [
    ("moons.betas", (0.0, 1.0), r"--config\.moons\.betas=\(0\.0, 1\.0\): every value must be "
     r"a finite number > 0 .*e\.g\. --config\.moons\.betas=0\.5,1,2"),
    ("segmentation.gammas", (1.0, -2.0), r"--config\.segmentation\.gammas=.*> 0"),
    ("segmentation.alphas", (1.0, 1.0), r"--config\.segmentation\.alphas=.*once"),
    ("segmentation.rates", (0.5, 1.0), r"--config\.segmentation\.rates=.*in \(0, 1\)"),
    ("moons.labelled_fractions", (0.5, 0.0), r"--config\.moons\.labelled_fractions=.*\(0, 1\)"),
])
def test_bad_grid_fails_before_any_work_naming_the_field(tmp_path, field, value, message):
  config = saturation_config.get_config("smoke")
  section, name = field.split(".")
  config[section][name] = value
  with pytest.raises(ValueError, match=message):
    saturation.run(config, str(tmp_path / "w"))
  assert not (tmp_path / "w").exists()


def test_every_scale_validates_and_holds_eq8():
  for scale in ("smoke", "cpu"):
    config = saturation_config.get_config(scale)
    saturation.validate(config)
    for section in (config.moons, config.segmentation):
      assert (1.0, 1.0, 1.0) in saturation.grid(section)
  cpu = saturation_config.get_config("cpu")
  assert cpu.repeats == 3 and tuple(cpu.segmentation.rates) == (0.5, 0.7)
  assert tuple(cpu.moons.labelled_fractions) == (0.5, 0.3)
  assert cpu.segmentation.train.steps == 800 and cpu.moons.steps == 2000



def test_correlation_line_ranks_cells_by_slope():
  # Scores that fall as the slope rises: ρ = -1 with s.
  cells = [report.Cell("t", ("50%", "1", b, "1"), "AP", [1.0 - float(b) / 10])
           for b in ("0.5", "1", "2")]
  line = saturation._correlation_line(cells, "AP", "50%", "unlabelled")
  assert "Spearman ρ -1.00 with the boundary slope s" in line
  assert "best cell has s = 0.125" in line
