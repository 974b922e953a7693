"""The thesis' claims, judged from measured table cells with their spread.

Each judge takes the cells of a run (`jaxpu.report.Cell`: values over repeats
× snapshots) and returns a `Verdict`: "supported", "partly supported", "not
supported" or "not measured", with the numbers it used. Two numbers differ
when their means differ by more than their combined spread
(`compare`): the spread is the standard deviation the tables print, never
smaller than `MIN_EFFECT`.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable, Iterable, Optional, Sequence

import numpy as np

MIN_EFFECT = 0.01
SUPPORTED, PARTLY, NOT_SUPPORTED, NOT_MEASURED = (
    "supported", "partly supported", "not supported", "not measured")


@dataclasses.dataclass(frozen=True)
class Verdict:
  claim: str
  paper: str
  status: str
  evidence: str


def compare(a: Sequence[float], b: Sequence[float], min_effect: float = MIN_EFFECT) -> str:
  """"higher", "lower" or "similar": mean(a) - mean(b) against sqrt(std_a² + std_b²).

  The difference counts only beyond the combined spread (at least
  `min_effect`): with a single value per side the spread is `min_effect`.
  """
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  if a.size == 0 or b.size == 0:
    raise ValueError("compare needs at least one value on each side.")
  diff = a.mean() - b.mean()
  spread = max(math.hypot(a.std(), b.std()), min_effect)
  if diff > spread:
    return "higher"
  if diff < -spread:
    return "lower"
  return "similar"


class Cells:
  """Look-up of cells by table, row (its trailing keys) and column."""

  def __init__(self, cells: Iterable):
    self._cells = {(c.table, tuple(c.row), c.column): c for c in cells}

  def rows(self, table: str) -> list[tuple[str, ...]]:
    out = []
    for t, row, _ in self._cells:
      if t == table and row not in out:
        out.append(row)
    return out

  def get(self, table: str, row, column: str) -> Optional[Sequence[float]]:
    """Values of the cell whose row ends with `row` (a name or a tuple of keys)."""
    key = (row,) if isinstance(row, str) else tuple(row)
    found = [c for (t, r, col), c in self._cells.items()
             if t == table and col == column and r[-len(key):] == key]
    if len(found) > 1:
      raise ValueError(f"Row {key} of {table} is ambiguous; give more of its keys.")
    return found[0].values if found else None


def _fmt(values: Sequence[float]) -> str:
  return f"{np.mean(values):.3f} ± {np.std(values):.3f}"


def _measured(*values) -> bool:
  return all(v is not None for v in values)


def pretraining_helps(cells: Cells) -> Verdict:
  claim = "Pre-training transfers: true-label pre-training beats random initialisation"
  paper = "Tables 3/4: TrueLabels 0.33 vs RandomWeights 0.29 (average mean IU)"
  true = cells.get("table3", "TrueLabels", "Average") or cells.get(
      "table4", "CompleteLabels", "Average")
  rand = (cells.get("table3", "RandomWeights", "Average")
          or cells.get("table4", "RandomWeights", "Average"))
  if not _measured(true, rand):
    return Verdict(claim, paper, NOT_MEASURED, "Table 3 or 4 not run.")
  c = compare(true, rand)
  status = SUPPORTED if c == "higher" else NOT_SUPPORTED
  return Verdict(claim, paper, status, f"true labels {_fmt(true)} vs random {_fmt(rand)}: {c}")


def binary_recovers_from_mislabeling(cells: Cells) -> Verdict:
  claim = "Binary labels recover from objects mislabelling"
  paper = ("Table 3: BinarizedLabels 0.32 ≈ TrueLabels 0.33 > AllRandomLabels 0.29, "
           "HalfRandomLabels 0.29")
  binary = cells.get("table3", "BinarizedLabels", "Average")
  true = cells.get("table3", "TrueLabels", "Average")
  mislabeled = {n: cells.get("table3", n, "Average")
                for n in ("AllRandomLabels", "HalfRandomLabels")}
  if not _measured(binary, true, *mislabeled.values()):
    return Verdict(claim, paper, NOT_MEASURED, "Table 3 not run.")
  vs = {n: compare(binary, v) for n, v in mislabeled.items()}
  vs_true = compare(binary, true)
  evidence = (f"binarized {_fmt(binary)}; " + "; ".join(
      f"{n} {_fmt(v)} (binarized {vs[n]})" for n, v in mislabeled.items())
              + f"; true labels {_fmt(true)} (binarized {vs_true})")
  higher = sum(c == "higher" for c in vs.values())
  above_means = all(np.mean(binary) > np.mean(v) for v in mislabeled.values())
  if higher == 2 and vs_true != "lower":
    status = SUPPORTED
  elif (higher >= 1 or above_means) and "lower" not in vs.values():
    status = PARTLY
  else:
    status = NOT_SUPPORTED
  return Verdict(claim, paper, status, evidence)


def sigmoid_recovers_transfer(cells: Cells) -> Verdict:
  claim = "The sigmoid loss recovers the transferability lost to unsegmented objects"
  paper = "Table 4: SigmoidLoss 0.33 ≈ CompleteLabels 0.33 > HalfUnsegmented 0.29"
  sigmoid = cells.get("table4", "SigmoidLoss", "Average")
  half = cells.get("table4", "HalfUnsegmented", "Average")
  complete = cells.get("table4", "CompleteLabels", "Average")
  if not _measured(sigmoid, half, complete):
    return Verdict(claim, paper, NOT_MEASURED, "Table 4 not run.")
  vs_half, vs_complete = compare(sigmoid, half), compare(sigmoid, complete)
  evidence = (f"sigmoid {_fmt(sigmoid)}, half unsegmented (logistic) {_fmt(half)} "
              f"(sigmoid {vs_half}), complete labels {_fmt(complete)} (sigmoid {vs_complete})")
  if vs_half == "higher" and vs_complete != "lower":
    status = SUPPORTED
  elif vs_half == "higher" or (vs_half == "similar" and np.mean(sigmoid) > np.mean(half)):
    status = PARTLY
  else:
    status = NOT_SUPPORTED
  return Verdict(claim, paper, status, evidence)


def sigmoid_raises_recall(cells: Cells) -> Verdict:
  claim = "The sigmoid loss raises recall under unsegmented objects"
  paper = ("Table 2: mean recall SigmoidLoss 0.75 > ClassWeighted 0.71 > LogisticLoss 0.60 "
           "(50% unsegmented)")
  get = lambda loss, col: cells.get("table2", ("50%Unseg.", loss), col)  # noqa: E731
  sigmoid, weighted = get("SigmoidLoss", "mean rec."), get("ClassWeighted", "mean rec.")
  logistic = get("LogisticLoss", "mean rec.")
  if not _measured(sigmoid, weighted, logistic):
    return Verdict(claim, paper, NOT_MEASURED, "Table 2 not run.")
  vs_w, vs_l = compare(sigmoid, weighted), compare(sigmoid, logistic)
  evidence = (f"mean recall: sigmoid {_fmt(sigmoid)}, class-weighted {_fmt(weighted)} "
              f"(sigmoid {vs_w}), logistic {_fmt(logistic)} (sigmoid {vs_l})")
  fg = get("SigmoidLoss", "fg rec."), get("ClassWeighted", "fg rec.")
  if _measured(*fg):
    evidence += f"; foreground recall {_fmt(fg[0])} vs class-weighted {_fmt(fg[1])}"
  if vs_w == "higher" and vs_l == "higher":
    status = SUPPORTED
  elif vs_l == "higher" and vs_w != "lower":
    status = PARTLY
  else:
    status = NOT_SUPPORTED
  return Verdict(claim, paper, status, evidence)


def sigmoid_ranks_foreground_at_high_rates(cells: Cells) -> Verdict:
  claim = ("(Beyond the thesis) Above 50% unsegmented, the sigmoid loss ranks foreground "
           "pixels at least as well as class weighting (foreground AP)")
  paper = "not in the thesis (50% only)"
  rates = sorted({row[0] for row in cells.rows("sweep") if _rate(row[0]) > 0.5}, key=_rate)
  pairs = {r: (cells.get("sweep", (r, "SigmoidLoss"), "fg AP"),
               cells.get("sweep", (r, "ClassWeighted"), "fg AP")) for r in rates}
  pairs = {r: p for r, p in pairs.items() if _measured(*p)}
  if not pairs:
    return Verdict(claim, paper, NOT_MEASURED, "No sweep above 50% (binary_segmentation --sweep).")
  vs = {r: compare(*p) for r, p in pairs.items()}
  evidence = "; ".join(f"{r}: sigmoid {_fmt(p[0])} vs weighted {_fmt(p[1])} ({vs[r]})"
                       for r, p in pairs.items())
  if "lower" in vs.values():
    status = NOT_SUPPORTED
  elif "higher" in vs.values():
    status = SUPPORTED
  else:
    status = PARTLY
  return Verdict(claim, paper, status, evidence)


def _rate(label: str) -> float:
  """"70%Unseg." → 0.7."""
  return float(label.split("%")[0]) / 100


def false_positives_harmless(cells: Cells) -> Verdict:
  claim = "False positive segmentations do little harm to the representations"
  paper = "Table 5: HalfFalsePositive 0.31 ≈ NoFalsePositive 0.31 > RandomWeights 0.29"
  half = cells.get("table5", "HalfFalsePositive", "Average")
  none = cells.get("table5", "NoFalsePositive", "Average")
  rand = cells.get("table5", "RandomWeights", "Average")
  if not _measured(half, none, rand):
    return Verdict(claim, paper, NOT_MEASURED, "Table 5 not run.")
  vs_none, vs_rand = compare(half, none), compare(half, rand)
  evidence = (f"half false positive {_fmt(half)}, none {_fmt(none)} (half {vs_none}), "
              f"random init {_fmt(rand)} (half {vs_rand})")
  if vs_none != "lower" and vs_rand == "higher":
    status = SUPPORTED
  elif vs_none != "lower":
    status = PARTLY
  else:
    status = NOT_SUPPORTED
  return Verdict(claim, paper, status, evidence)


FIG7_PRETRAINED = (("meaningful", "1"), ("meaningful", "4"), ("random", "4"),
                   ("random", "7"), ("random", "11"))


def categorisation_matters_little(cells: Cells) -> Verdict:
  claim = "The categorisation of the pre-training labels matters little"
  paper = "Fig. 7: 1, 4, 15 categories and random 4/7/11 all close, above random init"
  full = cells.get("fig7", ("meaningful", "15"), "mean IU")
  rand = cells.get("fig7", ("meaningful", "0"), "mean IU")
  others = {r: cells.get("fig7", r, "mean IU") for r in FIG7_PRETRAINED}
  if not _measured(full, rand, *others.values()):
    return Verdict(claim, paper, NOT_MEASURED, "Fig. 7 not run.")
  vs_full = {r: compare(v, full) for r, v in others.items()}
  vs_rand = [compare(v, rand) for v in list(others.values()) + [full]]
  lower = sum(c == "lower" for c in vs_full.values())
  evidence = (f"15 categories {_fmt(full)}, random init {_fmt(rand)}; " + "; ".join(
      f"{'RC' if r[0] == 'random' else ''}{r[1]}: {_fmt(v)} ({vs_full[r]} than 15)"
      for r, v in others.items()))
  if lower == 0 and all(c == "higher" for c in vs_rand):
    status = SUPPORTED
  elif lower <= 1:
    status = PARTLY
  else:
    status = NOT_SUPPORTED
  return Verdict(claim, paper, status, evidence)


def softmax_raises_recall(cells: Cells) -> Verdict:
  claim = "The class-dependent softmax loss raises recall over class weighting, precision kept"
  paper = "Table 1: mean recall 0.83 vs 0.75, mean precision 0.74 vs 0.75"
  rec = cells.get("table1", "SoftmaxLoss", "mean rec."), cells.get(
      "table1", "ClassWeighted", "mean rec.")
  prec = cells.get("table1", "SoftmaxLoss", "mean prec."), cells.get(
      "table1", "ClassWeighted", "mean prec.")
  if not _measured(*rec, *prec):
    return Verdict(claim, paper, NOT_MEASURED, "Table 1 not run.")
  vs_rec = compare(*rec)
  prec_drop = np.mean(prec[1]) - np.mean(prec[0])
  evidence = (f"mean recall {_fmt(rec[0])} vs {_fmt(rec[1])} ({vs_rec}); mean precision "
              f"{_fmt(prec[0])} vs {_fmt(prec[1])}")
  if vs_rec == "higher" and prec_drop <= 0.03:
    status = SUPPORTED
  elif vs_rec == "higher" or (vs_rec == "similar" and np.mean(rec[0]) > np.mean(rec[1])):
    status = PARTLY
  else:
    status = NOT_SUPPORTED
  return Verdict(claim, paper, status, evidence)


JUDGES: tuple[Callable[[Cells], Verdict], ...] = (
    pretraining_helps, binary_recovers_from_mislabeling, sigmoid_recovers_transfer,
    sigmoid_raises_recall, sigmoid_ranks_foreground_at_high_rates, false_positives_harmless, categorisation_matters_little,
    softmax_raises_recall)


def judge_all(cells: Iterable) -> list[Verdict]:
  lookup = Cells(cells)
  return [judge(lookup) for judge in JUDGES]
