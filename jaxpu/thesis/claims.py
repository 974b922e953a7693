"""The thesis' claims, judged on paired repeats.

A claim is a list of comparisons between two cells of our tables (each cell
holds one value per repeat, in seed order: repeat r of every row used seed
+ r, the same images, label noise and, for the transfer tables, the same
fine-tuning subset). A comparison is judged on the n paired differences
d_r = a_r - b_r, with one convention for the spread everywhere (ddof = 1,
as `jaxpu.report.Cell.std`):

    d̄ = mean_r d_r,   sd = std(d, ddof=1),   SE = sd / √n,   t = d̄ / SE  (n - 1 df)

Every comparison reports d̄, its t-based 90 % confidence interval
d̄ ± t₀.₉₅(n - 1)·SE, a p-value and n. All tests are at α = `ALPHA` = 0.05:

- a directional comparison (the thesis says a > b) is a one-sided paired
  t-test: **supported** when p(H1: mean d > 0) < α, **contradicted** when
  the opposite one-sided test, p(H1: mean d < 0), is < α, and **undecided**
  otherwise. Each of the two verdicts is wrong at most 5 % of the time;
- a similarity (the thesis says a ≈ b) is an equivalence test, TOST (two
  one-sided paired t-tests against ±`EQUIVALENCE_MARGIN`): **equivalent**
  when both H0: mean d ≤ -margin and H0: mean d ≥ +margin are rejected at α,
  i.e. the 90 % CI lies inside (-margin, +margin); **different** when a
  one-sided test of |mean d| > margin rejects at α on the side of d̄, i.e.
  the 90 % CI lies entirely outside [-margin, +margin]; **undecided**
  otherwise (the CI overlaps a margin).

Degenerate cases: with n < 2 there is no spread and no test (undecided, "n
= 1: no test"). With zero variance (all differences exactly equal, sd = 0)
the differences are known exactly and each one-sided test is decisive: its p
is 0 when d̄ lies strictly on its alternative's side and 1 otherwise. So
equal nonzero differences support (or contradict) a > b, all-zero
differences leave a > b undecided and make a ≈ b equivalent, and a constant
difference exactly on ±margin is neither equivalent nor different.

A claim combines its comparisons (`combine`): it is **supported** when all
its directional comparisons are supported and all its similarities are
equivalent, **contradicted** when any directional comparison is contradicted
or any similarity is different, and **undecided** otherwise. A claim whose
cells are missing is "not measured", or "pending" while the experiment that
measures it has not finished.

`agree` merges the verdicts of the same claims measured on two numeric paths
(e.g. the default build and XLA_FLAGS=--xla_cpu_max_isa=AVX): a verdict is
only reported if it holds on the second path too.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Callable, Iterable, Optional, Sequence

import numpy as np
from scipy import stats

ALPHA = 0.05  # every one-sided test; two one-sided tests make a 90 % interval
CONFIDENCE = 1 - 2 * ALPHA
# The thesis reports its tables (mean IU, F1, recall, precision: scores in [0, 1]) to
# two decimals, so ±0.02 is its own reporting resolution: two numbers it prints as
# "≈" can differ by this much without the thesis being able to tell them apart.
EQUIVALENCE_MARGIN = 0.02

# Verdicts of a comparison ("a > b": SUPPORTED, CONTRADICTED or UNDECIDED; "a ≈ b":
# EQUIVALENT, DIFFERENT or UNDECIDED) and of a claim (SUPPORTED, CONTRADICTED,
# UNDECIDED, NOT_MEASURED or PENDING).
SUPPORTED = "supported"
CONTRADICTED = "contradicted"
UNDECIDED = "undecided"
EQUIVALENT = "equivalent"
DIFFERENT = "different"
NOT_MEASURED = "not measured"
PENDING = "pending"

EXPECTATIONS = (">", "≈")


def _p_above(excess: float, se: float, df: int) -> float:
  """One-sided p-value of H1: mean d > c, where excess = d̄ - c: P(T ≥ excess / SE)
  for T ~ t(df). With SE = 0 (no spread) the test is decisive: 0 when excess > 0, else
  1."""
  if se == 0:
    return 0.0 if excess > 0 else 1.0
  return float(stats.t.sf(excess / se, df))


@dataclasses.dataclass(frozen=True)
class Paired:
  """The paired differences d = a - b over n repeats and their tests (`paired`).

  mean: d̄; sd: std(d, ddof=1); se: sd / √n; ci_low, ci_high: the t-based
  `confidence` (90 %) interval of the mean difference; p_greater / p_less:
  one-sided paired t-tests of H1: mean d > 0 / < 0; p_two_sided: the two-sided
  test of mean d = 0; p_equivalent: TOST against ±margin (the larger of the two
  one-sided p-values; < α iff the CI lies inside (-margin, margin));
  p_different: the one-sided test of |mean d| > margin on the side of d̄ (< α
  iff the CI lies outside [-margin, margin]). With n < 2 everything but mean
  and n is NaN.
  """
  mean: float
  sd: float
  se: float
  n: int
  ci_low: float
  ci_high: float
  p_greater: float
  p_less: float
  p_two_sided: float
  p_equivalent: float
  p_different: float
  margin: float = EQUIVALENCE_MARGIN
  confidence: float = CONFIDENCE

  @property
  def testable(self) -> bool:
    """Whether there are enough repeats for a test (n ≥ 2)."""
    return self.n >= 2

  @property
  def ci(self) -> tuple[float, float]:
    return self.ci_low, self.ci_high

  @property
  def t(self) -> float:
    """The paired t statistic d̄ / SE (±inf with zero variance, NaN with n < 2)."""
    if not self.testable:
      return math.nan
    if self.se == 0:
      return math.copysign(math.inf, self.mean) if self.mean else 0.0
    return self.mean / self.se

  def summary(self, expected: Optional[str] = None) -> str:
    """"d = +0.033 [90% CI +0.018, +0.048], p = 0.012, n = 3".

    Without `expected` p is the two-sided test's. With `expected` (">" or "≈") it is
    the p of the comparison's test, named: the test that decided the verdict, or the
    thesis' own hypothesis when undecided: p(d > 0) (or p(d < 0) when contradicted)
    for ">", p(d within ±margin) (TOST; or p(d outside ±margin) when different; no `|`, so the text fits a Markdown table) for "≈".
    """
    if not self.testable:
      return f"d = {self.mean:+.3f}, n = {self.n}: no test"
    name, p = "p", self.p_two_sided
    if expected is not None:
      verdict = judge_difference(self, expected)
      if expected == ">":
        name, p = (("p(d < 0)", self.p_less) if verdict == CONTRADICTED
                   else ("p(d > 0)", self.p_greater))
      else:
        name, p = ((f"p(d outside ±{self.margin:g})", self.p_different) if verdict == DIFFERENT
                   else (f"p(d within ±{self.margin:g})", self.p_equivalent))
    p_text = f"{name} = 0 (sd = 0)" if p == 0 else (
        f"{name} < 0.001" if p < 0.001 else f"{name} = {p:.3f}")
    return (f"d = {self.mean:+.3f} [{self.confidence:.0%} CI {self.ci_low:+.3f}, "
            f"{self.ci_high:+.3f}], {p_text}, n = {self.n}")

  def __str__(self):
    return self.summary()


def paired(a: Sequence[float], b: Sequence[float],
           margin: float = EQUIVALENCE_MARGIN) -> Paired:
  """The paired differences a_r - b_r, their 90 % CI and tests (see `Paired`)."""
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  if a.shape != b.shape or a.ndim != 1 or a.size == 0:
    raise ValueError(f"paired differences need two equally long value lists (one per repeat), "
                     f"got {a.shape} and {b.shape}.")
  if not margin > 0:
    raise ValueError(f"the equivalence margin must be positive, got {margin}.")
  d = a - b
  n = int(d.size)
  if n < 2:
    nan = math.nan
    return Paired(float(d[0]), nan, nan, n, nan, nan, nan, nan, nan, nan, nan, margin)
  if np.ptp(d) == 0:  # all differences exactly equal: zero variance, exact mean
    mean, sd = float(d[0]), 0.0
  else:
    mean, sd = float(d.mean()), float(np.std(d, ddof=1))
  df = n - 1
  se = sd / math.sqrt(n)
  half = float(stats.t.ppf(1 - ALPHA, df)) * se
  p_greater, p_less = _p_above(mean, se, df), _p_above(-mean, se, df)
  return Paired(
      mean=mean, sd=sd, se=se, n=n, ci_low=mean - half, ci_high=mean + half,
      p_greater=p_greater, p_less=p_less, p_two_sided=min(1.0, 2 * min(p_greater, p_less)),
      # TOST: H1 mean d > -margin and H1 mean d < +margin must both hold.
      p_equivalent=max(_p_above(mean + margin, se, df), _p_above(margin - mean, se, df)),
      # Different: H1 mean d > +margin or H1 mean d < -margin (at most one can reject).
      p_different=min(_p_above(mean - margin, se, df), _p_above(-mean - margin, se, df)),
      margin=margin)


def significant(p: Paired, alpha: float = ALPHA) -> bool:
  """Whether the paired difference is significant: a two-sided paired t-test rejects
  mean d = 0 at `alpha` (never with n < 2; always for equal nonzero differences)."""
  return p.testable and p.p_two_sided < alpha


def judge_difference(p: Paired, expected: str) -> str:
  """The verdict of one comparison: `expected` is ">" (a > b: SUPPORTED, CONTRADICTED or
  UNDECIDED) or "≈" (a ≈ b: EQUIVALENT, DIFFERENT or UNDECIDED); UNDECIDED with n < 2."""
  if expected not in EXPECTATIONS:
    raise ValueError(f"expected must be '>' or '≈', got {expected!r}.")
  if not p.testable:
    return UNDECIDED
  if expected == ">":
    if p.p_greater < ALPHA:
      return SUPPORTED
    return CONTRADICTED if p.p_less < ALPHA else UNDECIDED
  if p.p_equivalent < ALPHA:
    return EQUIVALENT
  return DIFFERENT if p.p_different < ALPHA else UNDECIDED


_OUTCOMES = {">": (SUPPORTED, CONTRADICTED, UNDECIDED), "≈": (EQUIVALENT, DIFFERENT, UNDECIDED)}


def combine(verdicts: Sequence[tuple[str, str]]) -> str:
  """A claim's verdict from its comparisons' (expected, verdict) pairs: CONTRADICTED when
  any '>' is contradicted or any '≈' different; SUPPORTED when every '>' is supported
  and every '≈' equivalent; UNDECIDED otherwise (also for no comparisons)."""
  for expected, verdict in verdicts:
    if verdict not in _OUTCOMES.get(expected, ()):
      raise ValueError(f"{verdict!r} is not a verdict of a {expected!r} comparison.")
  if any(v in (CONTRADICTED, DIFFERENT) for _, v in verdicts):
    return CONTRADICTED
  if verdicts and all(v in (SUPPORTED, EQUIVALENT) for _, v in verdicts):
    return SUPPORTED
  return UNDECIDED


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
  """Mean ± sample std (ddof 1; 0 for one value, as `jaxpu.report.Cell.std`)."""
  sd = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
  return f"{np.mean(values):.3f} ± {sd:.3f}"


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
    parts.append(f"{c.label_a} {_fmt(a)} {c.expected} {c.label_b} {_fmt(b)}: "
                 f"{p.summary(c.expected)}, {v}")
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


def unsegmented_objects_hurt_binary_transfer(cells: Cells) -> Verdict:
  avg = functools.partial(_average, "table4")
  return judge(cells, "Unsegmented objects hurt the learned representation, judged against the "
               "binary pre-training on complete labels (the same task and loss: only the "
               "unsegmented objects differ; beyond the thesis, which compared with the 16-class "
               "pre-training)",
               "Table 4: CompleteLabels 0.33 > HalfUnsegmented 0.29 (16-class baseline)",
               [Comparison("complete binary", avg("CompleteBinary"), ">",
                           "half unsegmented (logistic)", avg("HalfUnsegmented"))], "Table 4")


def sigmoid_recovers_binary_transfer(cells: Cells) -> Verdict:
  avg = functools.partial(_average, "table4")
  return judge(cells, "The sigmoid loss recovers all of the transferability lost to "
               "unsegmented objects, judged against the binary pre-training on complete "
               "labels (beyond the thesis)",
               "Table 4: SigmoidLoss 0.33 ≈ CompleteLabels 0.33 (16-class baseline)",
               [Comparison("sigmoid", avg("SigmoidLoss"), "≈", "complete binary",
                           avg("CompleteBinary"))], "Table 4")


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
    sigmoid_protects_transfer, sigmoid_recovers_transfer,
    unsegmented_objects_hurt_binary_transfer, sigmoid_recovers_binary_transfer,
    sigmoid_raises_recall, sigmoid_ranks_foreground_at_high_rates,
    false_positives_harmless, categorisation_matters_little, cross_entropy_collapses_on_pu,
    softmax_raises_recall)

RULE = (f"Each comparison is judged on the paired differences d over n repeats (the same "
        f"seed: the same images, label noise and fine-tuning subset), shown as d̄ with its "
        f"t-based {CONFIDENCE:.0%} confidence interval (sd with ddof 1), p and n: a > b is "
        f"**supported** when a one-sided paired t-test gives p(d > 0) < {ALPHA:g} "
        f"(**contradicted** when p(d < 0) < {ALPHA:g}), a ≈ b is **equivalent** when TOST "
        f"against a margin of ±{EQUIVALENCE_MARGIN:g} (the thesis' two-decimal resolution) "
        f"rejects at α = {ALPHA:g}, i.e. the {CONFIDENCE:.0%} CI lies inside "
        f"±{EQUIVALENCE_MARGIN:g} (**different** when it lies entirely outside), and anything "
        f"else, n = 1 included, is **undecided**. A claim is supported when all its "
        f"comparisons are supported or equivalent, contradicted when any is contradicted or "
        f"different, undecided otherwise.")

SECOND_PATH_RULE = ("A verdict is only reported if it holds on a second numeric path "
                    "(XLA_FLAGS=--xla_cpu_max_isa=AVX); where the two paths disagree the claim "
                    "is undecided.")


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


def disagreement(status_a: str, status_b: str) -> str:
  """The status of a claim whose two numeric paths disagree."""
  return f"{UNDECIDED} (paths disagree: {status_a} vs {status_b})"


def agree(verdicts_a: Sequence[Verdict], verdicts_b: Sequence[Verdict]) -> list[Verdict]:
  """Merges the verdicts of the same claims judged on two numeric paths (e.g. the default
  build as `verdicts_a` and XLA_FLAGS=--xla_cpu_max_isa=AVX as `verdicts_b`): a verdict
  is only reported if it holds on the second numeric path too.

  A claim keeps its status when both paths give the same one; a claim that one path
  has not measured (or is still pending there) takes that path's NOT_MEASURED or
  PENDING (PENDING first), since nothing confirms it; otherwise it is "undecided
  (paths disagree: X vs Y)" (`disagreement`). The evidence is `verdicts_a`'s, followed
  by `verdicts_b`'s where the statuses differ. Raises ValueError unless both lists
  judge the same claims; the result follows `verdicts_a`'s order.
  """
  by_claim = {v.claim: v for v in verdicts_b}
  claims_a = [v.claim for v in verdicts_a]
  if len(by_claim) != len(verdicts_b) or len(set(claims_a)) != len(claims_a) or \
      set(claims_a) != set(by_claim):
    raise ValueError("agree needs the verdicts of the same claims (each once) on both "
                     "paths.")
  merged = []
  for a in verdicts_a:
    b = by_claim[a.claim]
    if a.status == b.status:
      merged.append(a)
      continue
    statuses = {a.status, b.status}
    if PENDING in statuses:
      status = PENDING
    elif NOT_MEASURED in statuses:
      status = NOT_MEASURED
    else:
      status = disagreement(a.status, b.status)
    merged.append(dataclasses.replace(
        a, status=status, evidence=f"{a.evidence} Second numeric path ({b.status}): "
        f"{b.evidence}"))
  return merged
