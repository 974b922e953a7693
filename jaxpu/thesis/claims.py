"""The thesis' claims, judged on paired repeats.

A claim is a list of comparisons between two cells of our tables (each cell
holds one value per repeat, in seed order: repeat r of every row used seed
+ r, the same images, label noise and, for the transfer tables, the same
fine-tuning subset). A comparison is judged on the paired differences
d_r = a_r - b_r:

    d̄ = mean_r d_r,   SE = std(d, ddof=1) / √n,   z = d̄ / SE

- a directional comparison (the thesis says a > b) is **supported** when
  d̄ > 0 and |d̄| > 2 SE, **contradicted** when d̄ < 0 and |d̄| > 2 SE, and
  **not separable** otherwise (also when n < 2: no SE);
- a similarity (the thesis says a ≈ b) is **contradicted** when |d̄| > 2 SE
  and **not separable** (consistent with the thesis) otherwise.

A claim is supported when all its directional comparisons are and no
similarity is contradicted, contradicted when any comparison is, and not
separable otherwise. A claim whose cells are missing is "not measured", or
"pending" while the experiment that measures it has not finished.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Callable, Iterable, Optional, Sequence

import numpy as np

SUPPORTED, CONTRADICTED, NOT_SEPARABLE, NOT_MEASURED, PENDING = (
    "supported", "contradicted", "not separable", "not measured", "pending")
THRESHOLD = 2.0  # standard errors


@dataclasses.dataclass(frozen=True)
class Paired:
  """Paired differences a - b over repeats."""
  mean: float
  se: float
  n: int

  @property
  def z(self) -> float:
    return self.mean / self.se if self.se > 0 else (math.inf * np.sign(self.mean)
                                                    if self.mean else 0.0)

  def __str__(self):
    se = f"{self.se:.3f}" if np.isfinite(self.se) else "n/a"
    return f"d = {self.mean:+.3f} ± {se} (SE, n = {self.n})"


def paired(a: Sequence[float], b: Sequence[float]) -> Paired:
  """Mean and standard error of the paired differences a_r - b_r."""
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  if a.shape != b.shape or a.ndim != 1 or a.size == 0:
    raise ValueError(f"paired differences need two equally long value lists (one per repeat), "
                     f"got {a.shape} and {b.shape}.")
  d = a - b
  se = float(np.std(d, ddof=1) / math.sqrt(d.size)) if d.size > 1 else math.nan
  return Paired(float(d.mean()), se, int(d.size))


def judge_difference(p: Paired, expected: str) -> str:
  """The verdict of one comparison: `expected` is ">" (a > b) or "≈" (a ≈ b)."""
  if expected not in (">", "≈"):
    raise ValueError(f"expected must be '>' or '≈', got {expected!r}.")
  separated = np.isfinite(p.se) and abs(p.mean) > THRESHOLD * p.se
  if not separated:
    return NOT_SEPARABLE
  if expected == "≈":
    return CONTRADICTED
  return SUPPORTED if p.mean > 0 else CONTRADICTED


def combine(verdicts: Sequence[tuple[str, str]]) -> str:
  """A claim's verdict from its comparisons' (expected, verdict) pairs."""
  if any(v == CONTRADICTED for _, v in verdicts):
    return CONTRADICTED
  directional = [v for e, v in verdicts if e == ">"]
  if directional and all(v == SUPPORTED for v in directional):
    return SUPPORTED
  return NOT_SEPARABLE


@dataclasses.dataclass(frozen=True)
class Verdict:
  claim: str
  paper: str
  status: str
  evidence: str


@dataclasses.dataclass(frozen=True)
class Comparison:
  """`a expected b` between two cells (table, row, column), e.g. SigmoidLoss > HalfUnsegmented."""
  label_a: str
  a: tuple
  expected: str
  label_b: str
  b: tuple


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


def judge(cells: Cells, claim: str, paper: str, comparisons: Sequence[Comparison],
          source: str) -> Verdict:
  """Judges `comparisons` on `cells`; "not measured" when any cell is missing."""
  parts, verdicts = [], []
  for c in comparisons:
    a, b = cells.get(*c.a), cells.get(*c.b)
    if a is None or b is None:
      return Verdict(claim, paper, NOT_MEASURED, f"{source} not run.")
    if len(a) != len(b):
      return Verdict(claim, paper, NOT_MEASURED,
                     f"{c.label_a} and {c.label_b} have different repeats ({len(a)} vs "
                     f"{len(b)}): cannot be paired.")
    p = paired(a, b)
    v = judge_difference(p, c.expected)
    verdicts.append((c.expected, v))
    parts.append(f"{c.label_a} {_fmt(a)} {c.expected} {c.label_b} {_fmt(b)}: {p}, "
                 f"{v}")
  return Verdict(claim, paper, combine(verdicts), "; ".join(parts))


def _t(table, row, column):
  return (table, row, column)


def _average(table, row):
  """The cell of a transfer table's "Average" column."""
  return (table, row, "Average")


def pretraining_helps(cells: Cells) -> Verdict:
  table = "table4" if cells.get("table4", "CompleteLabels", "Average") else "table3"
  name = "CompleteLabels" if table == "table4" else "TrueLabels"
  return judge(cells, "Pre-training transfers: true-label pre-training beats random "
               "initialisation", "Tables 3/4: TrueLabels 0.33 vs RandomWeights 0.29 "
               "(average mean IU)",
               [Comparison("true labels", _t(table, name, "Average"), ">", "random init",
                           _t(table, "RandomWeights", "Average"))], "Table 3 or 4")


def binary_recovers_from_mislabeling(cells: Cells) -> Verdict:
  avg = functools.partial(_average, "table3")
  return judge(cells, "Binary labels recover from objects mislabelling",
               "Table 3: BinarizedLabels 0.32 ≈ TrueLabels 0.33 > AllRandomLabels 0.29, "
               "HalfRandomLabels 0.29",
               [Comparison("binarized", avg("BinarizedLabels"), ">", "all random",
                           avg("AllRandomLabels")),
                Comparison("binarized", avg("BinarizedLabels"), ">", "half random",
                           avg("HalfRandomLabels")),
                Comparison("binarized", avg("BinarizedLabels"), "≈", "true labels",
                           avg("TrueLabels"))], "Table 3")


def sigmoid_protects_transfer(cells: Cells) -> Verdict:
  avg = functools.partial(_average, "table4")
  return judge(cells, "The sigmoid loss protects the representation from unsegmented objects "
               "(better transfer than the logistic loss on the same labels)",
               "Table 4: SigmoidLoss 0.33 > HalfUnsegmented 0.29",
               [Comparison("sigmoid", avg("SigmoidLoss"), ">", "half unsegmented (logistic)",
                           avg("HalfUnsegmented"))], "Table 4")


def sigmoid_recovers_transfer(cells: Cells) -> Verdict:
  avg = functools.partial(_average, "table4")
  return judge(cells, "The sigmoid loss recovers all of the transferability lost to "
               "unsegmented objects", "Table 4: SigmoidLoss 0.33 ≈ CompleteLabels 0.33",
               [Comparison("sigmoid", avg("SigmoidLoss"), "≈", "complete labels",
                           avg("CompleteLabels"))], "Table 4")


def unsegmented_objects_hurt_transfer(cells: Cells) -> Verdict:
  avg = functools.partial(_average, "table4")
  return judge(cells, "Unsegmented objects hurt the learned representation",
               "Table 4: CompleteLabels 0.33 > HalfUnsegmented 0.29",
               [Comparison("complete labels", avg("CompleteLabels"), ">",
                           "half unsegmented (logistic)", avg("HalfUnsegmented"))], "Table 4")


def sigmoid_raises_recall(cells: Cells) -> Verdict:
  rec = lambda loss: _t("table2", ("50%Unseg.", loss), "mean rec.")  # noqa: E731
  return judge(cells, "The sigmoid loss raises recall under unsegmented objects",
               "Table 2: mean recall SigmoidLoss 0.75 > ClassWeighted 0.71 > LogisticLoss 0.60 "
               "(50% unsegmented)",
               [Comparison("sigmoid", rec("SigmoidLoss"), ">", "class-weighted",
                           rec("ClassWeighted")),
                Comparison("sigmoid", rec("SigmoidLoss"), ">", "logistic",
                           rec("LogisticLoss"))], "Table 2")


def _rate(label: str) -> float:
  """"70%Unseg." → 0.7."""
  return float(label.split("%")[0]) / 100


def sigmoid_ranks_foreground_at_high_rates(cells: Cells) -> Verdict:
  claim = ("(Beyond the thesis) Above 50% unsegmented, the sigmoid loss ranks foreground "
           "pixels better than class weighting (foreground AP)")
  rates = sorted({row[0] for row in cells.rows("sweep") if _rate(row[0]) > 0.5}, key=_rate)
  if not rates:
    return Verdict(claim, "not in the thesis (50% only)", NOT_MEASURED,
                   "No sweep above 50% (binary_segmentation with sweep=True).")
  return judge(cells, claim, "not in the thesis (50% only)",
               [Comparison(f"{r} sigmoid", _t("sweep", (r, "SigmoidLoss"), "fg AP"), ">",
                           "class-weighted", _t("sweep", (r, "ClassWeighted"), "fg AP"))
                for r in rates], "The sweep")


def false_positives_harmless(cells: Cells) -> Verdict:
  avg = functools.partial(_average, "table5")
  return judge(cells, "False positive segmentations do little harm to the representations",
               "Table 5: HalfFalsePositive 0.31 ≈ NoFalsePositive 0.31 > RandomWeights 0.29",
               [Comparison("half false positive", avg("HalfFalsePositive"), ">", "random init",
                           avg("RandomWeights")),
                Comparison("half false positive", avg("HalfFalsePositive"), "≈",
                           "no false positive", avg("NoFalsePositive"))], "Table 5")


FIG7_PRETRAINED = (("meaningful", "1"), ("meaningful", "4"), ("random", "4"),
                   ("random", "7"), ("random", "11"))


def categorisation_matters_little(cells: Cells) -> Verdict:
  iu = lambda row: _t("fig7", row, "mean IU")  # noqa: E731
  name = lambda row: f"{'RC' if row[0] == 'random' else ''}{row[1]}"  # noqa: E731
  comparisons = [Comparison(name(r), iu(r), "≈", "15 categories", iu(("meaningful", "15")))
                 for r in FIG7_PRETRAINED]
  comparisons += [Comparison(name(r), iu(r), ">", "random init", iu(("meaningful", "0")))
                  for r in FIG7_PRETRAINED + (("meaningful", "15"),)]
  return judge(cells, "The categorisation of the pre-training labels matters little",
               "Fig. 7: 1, 4, 15 categories and random 4/7/11 all close, above random init",
               comparisons, "Fig. 7")


def softmax_raises_recall(cells: Cells) -> Verdict:
  t1 = lambda row, col: _t("table1", row, col)  # noqa: E731
  return judge(cells, "The class-dependent softmax loss raises recall over class weighting, "
               "precision kept", "Table 1: mean recall 0.83 vs 0.75, mean precision 0.74 vs "
               "0.75",
               [Comparison("softmax loss recall", t1("SoftmaxLoss", "mean rec."), ">",
                           "class-weighted", t1("ClassWeighted", "mean rec.")),
                Comparison("softmax loss precision", t1("SoftmaxLoss", "mean prec."), "≈",
                           "class-weighted", t1("ClassWeighted", "mean prec."))], "Table 1")


def cross_entropy_collapses_on_pu(cells: Cells) -> Verdict:
  t1 = lambda row, col: _t("table1", row, col)  # noqa: E731
  return judge(cells, "Cross entropy on PU labels loses recall (the motivation of §3)",
               "Table 1: mean recall 50%R+U CrossEntropy 0.38 < R+N 0.82",
               [Comparison("R+N recall", t1(("R+N", "CrossEntropy"), "mean rec."), ">",
                           "50%R+U", t1(("50%R+U", "CrossEntropy"), "mean rec."))], "Table 1")


JUDGES: tuple[Callable[[Cells], Verdict], ...] = (
    pretraining_helps, binary_recovers_from_mislabeling, unsegmented_objects_hurt_transfer,
    sigmoid_protects_transfer, sigmoid_recovers_transfer, sigmoid_raises_recall, sigmoid_ranks_foreground_at_high_rates,
    false_positives_harmless, categorisation_matters_little, cross_entropy_collapses_on_pu,
    softmax_raises_recall)

RULE = ("Each comparison is judged on the paired differences d over repeats (the same seed: "
        "the same images, label noise and fine-tuning subset): d̄ and its standard error SE = "
        "sd(d)/√n. A comparison the thesis states as a > b is **supported** when d̄ > 2 SE, "
        "**contradicted** when d̄ < -2 SE, **not separable** otherwise; one it states as a ≈ b "
        "is contradicted when |d̄| > 2 SE. A claim is supported when all its '>' comparisons "
        "are and none is contradicted.")


def judge_all(cells: Iterable, pending: Sequence[str] = ()) -> list[Verdict]:
  """Every claim's verdict; one that lacks cells while experiments are `pending` is
  marked pending (never judged)."""
  lookup = Cells(cells)
  verdicts = [judge_fn(lookup) for judge_fn in JUDGES]
  if pending:
    verdicts = [dataclasses.replace(v, status=PENDING,
                                    evidence=f"{v.evidence} Pending: {', '.join(pending)}.")
                if v.status == NOT_MEASURED else v for v in verdicts]
  return verdicts
