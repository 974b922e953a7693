"""Which training feeds which row of the thesis' tables and figures.

Segmentation (§5.2-5.3): a row of Tables 3-5 / Fig. 7 names the pre-training
(`jaxpu.segmentation_runs.Training`: task, label corruption, loss) whose
encoder is fine-tuned (None: random initialisation, the RandomWeights
baseline / Fig. 7's 0). Rows that need the same pre-training share it:
Table 3's TrueLabels, Table 4's CompleteLabels and Fig. 7's "15" are one run;
Table 3's BinarizedLabels and Fig. 7's "1" another. Table 2 lists the binary
trainings of §5.2. Classification (§5.1): the rows of Table 1 (and Fig. 5)
and of the two-moons study (Figs. 3-4).
"""

from __future__ import annotations

import dataclasses
from typing import Iterable, Optional, Sequence

from jaxpu.segmentation_runs import Training
from jaxpu.segmentation_runs import binary_training

# ----------------------------------------------------------------------------
# §5.3: transfer tables (3, 4, 5) and Fig. 7.
# ----------------------------------------------------------------------------

TRUE_LABELS = Training("multiclass")
ALL_RANDOM_LABELS = Training("multiclass", "mislabel_objects:1.0")
HALF_RANDOM_LABELS = Training("multiclass", "mislabel_objects:0.5")
BINARIZED_LABELS = binary_training()
HALF_UNSEGMENTED = binary_training("unsegment_objects:0.5", "logistic")
CLASS_WEIGHTED = binary_training("unsegment_objects:0.5", "weighted_logistic",
                                 negative_weight=0.5)
SIGMOID_LOSS = binary_training("unsegment_objects:0.5", "sigmoid_negative")
NO_FALSE_POSITIVE = Training("target", None, "logistic")
HALF_FALSE_POSITIVE = Training("target", "false_positive_objects:0.5", "logistic")
MEANINGFUL_CATEGORIES = Training("categories")


def random_categories(k: int) -> Training:
  return Training(f"random_categories:{k}")


@dataclasses.dataclass(frozen=True)
class Row:
  """A row of a transfer table and the pre-training that feeds it (None: random init)."""
  table: str
  row: tuple[str, ...]
  training: Optional[Training]


def _rows(table, entries):
  return tuple(Row(table, row, training) for row, training in entries)


_RANDOM = (("Baseline", "RandomWeights"), None)
ROWS: dict[str, tuple[Row, ...]] = {
    "table3": _rows("table3", [
        _RANDOM,
        (("Baseline", "TrueLabels"), TRUE_LABELS),
        (("Objects Mislabelling", "AllRandomLabels"), ALL_RANDOM_LABELS),
        (("Objects Mislabelling", "HalfRandomLabels"), HALF_RANDOM_LABELS),
        (("Objects Mislabelling", "BinarizedLabels"), BINARIZED_LABELS)]),
    "table4": _rows("table4", [
        _RANDOM,
        (("Baseline", "CompleteLabels"), TRUE_LABELS),
        # Beyond the thesis: the binary pre-training on complete labels, so that the
        # unsegmentation comparisons differ in the unsegmented objects only.
        (("Baseline", "CompleteBinary"), BINARIZED_LABELS),
        (("Inexhaustive Segmentation", "HalfUnsegmented"), HALF_UNSEGMENTED),
        (("Inexhaustive Segmentation", "SigmoidLoss"), SIGMOID_LOSS)]),
    "table5": _rows("table5", [
        _RANDOM,
        (("Baseline", "NoFalsePositive"), NO_FALSE_POSITIVE),
        (("False positive segmentation", "HalfFalsePositive"), HALF_FALSE_POSITIVE)]),
    # Fig. 7: number of categories of the pre-training labels.
    "fig7": _rows("fig7", [
        (("meaningful", "0"), None),
        (("meaningful", "1"), BINARIZED_LABELS),
        (("meaningful", "4"), MEANINGFUL_CATEGORIES),
        (("meaningful", "15"), TRUE_LABELS),
        (("random", "4"), random_categories(4)),
        (("random", "7"), random_categories(7)),
        (("random", "11"), random_categories(11))]),
}
TABLES = tuple(ROWS)


def check_tables(tables: Sequence[str]) -> tuple[str, ...]:
  """`tables` as a tuple of known transfer-table ids, or a ValueError naming the bad one."""
  tables = tuple(tables)
  unknown = [t for t in tables if t not in ROWS]
  if unknown or not tables:
    raise ValueError(f"Unknown or no transfer table(s) {unknown or list(tables)}; choose from "
                     f"{list(TABLES)}, e.g. --config.tables=table3,table4.")
  return tuple(dict.fromkeys(tables))


def rows_for(tables: Sequence[str]) -> list[Row]:
  return [row for table in tables for row in ROWS[table]]


def trainings_for(rows: Iterable[Row]) -> list[Training]:
  """The distinct pre-trainings the rows need, in first-use order (one run each)."""
  out = []
  for row in rows:
    if row.training is not None and row.training not in out:
      out.append(row.training)
  return out


def training_names(rows: Iterable[Row]) -> dict[Training, str]:
  """A display name per pre-training: the names of the rows it feeds."""
  names: dict[Training, list[str]] = {}
  for row in rows:
    if row.training is not None:
      label = row.row[-1] if row.table != "fig7" else f"Fig7 {row.row[0]} {row.row[1]}"
      names.setdefault(row.training, [])
      if label not in names[row.training]:
        names[row.training].append(label)
  return {t: " / ".join(n) for t, n in names.items()}


# ----------------------------------------------------------------------------
# §5.2: Table 2 (binary segmentation with unsegmented objects).
# ----------------------------------------------------------------------------

# Table 2's loss names → (loss, kwargs): logistic, class-weighted logistic
# (eq. 6; background weight β, 0.5 in the thesis), class-dependent sigmoid
# loss (eq. 8).
TABLE2_LOSSES = ("LogisticLoss", "ClassWeighted", "SigmoidLoss")


def table2_loss(name: str, negative_weight: float = 0.5) -> tuple[str, dict]:
  """The `jaxpu.losses` name and arguments of a Table 2 loss."""
  return {"LogisticLoss": ("logistic", {}),
          "ClassWeighted": ("weighted_logistic", {"negative_weight": negative_weight}),
          "SigmoidLoss": ("sigmoid_negative", {})}[name]


def unsegmented(rate: float, loss_name: str, negative_weight: float = 0.5) -> Training:
  """Binary training with a fraction `rate` of the objects unsegmented, under a Table 2 loss."""
  loss, kwargs = table2_loss(loss_name, negative_weight)
  return binary_training(f"unsegment_objects:{rate:g}", loss, **kwargs)


# Beyond the thesis (§6, open question 3): nnPU (Kiryo et al. 2017) in the
# sweep, with the true prior of the training labels or one estimated from the
# sweep's own LogisticLoss run (experiments/binary_segmentation.py).
NNPU_TRUE_PRIOR = "nnPU (true π)"
NNPU_ESTIMATED_PRIOR = "nnPU (estimated π)"
SWEEP_NNPU = (NNPU_TRUE_PRIOR, NNPU_ESTIMATED_PRIOR)
SWEEP_LOSSES = TABLE2_LOSSES + SWEEP_NNPU
PRIOR_DECIMALS = 4  # a prior enters a run's identity rounded to this many decimals


def nnpu_unsegmented(rate: float, prior: float, surrogate: str = "logistic") -> Training:
  """Binary nnPU training (`jaxpu.losses.nnpu_risk`) with a fraction `rate` of the objects
  unsegmented; `prior` (the foreground share of the background-labelled pixels) is rounded
  to `PRIOR_DECIMALS` and kept inside (0, 1), as the risk requires.

  The logistic surrogate, as Table 1's nnPU row: with the sigmoid one and π ≈ 0.1 the
  segmentation network calls every pixel background within 50 steps and, the surrogate
  being flat there, never recovers (measured: loss stuck at π, foreground AP = the
  foreground's share)."""
  step = 10. ** -PRIOR_DECIMALS
  prior = min(1. - step, max(step, round(float(prior), PRIOR_DECIMALS)))
  return binary_training(f"unsegment_objects:{rate:g}", "nnpu_risk", prior=prior,
                         surrogate=surrogate)


def rate_label(rate: float) -> str:
  return f"{100 * rate:g}%Unseg."


def table2_rows(rate: float = 0.5, negative_weight: float = 0.5
                ) -> tuple[tuple[tuple[str, str], Training], ...]:
  """Table 2: complete labels, then each loss with `rate` of the objects unsegmented."""
  return ((("Complete", "LogisticLoss"), BINARIZED_LABELS),) + tuple(
      ((rate_label(rate), name), unsegmented(rate, name, negative_weight))
      for name in TABLE2_LOSSES)


# ----------------------------------------------------------------------------
# §5.1.1: two moons (Figs. 3-4).
# ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class MoonsRow:
  """A row of the two-moons study: labels (true or PU) and loss."""
  labels: str
  name: str
  loss: str
  loss_kwargs: tuple = ()
  true_labels: bool = False


def moons_rows(positive_weight: float = 1.0, negative_weight: float = 0.5
               ) -> tuple[MoonsRow, ...]:
  """The baseline on true labels, then logistic, weighted logistic (eq. 6, α, β) and
  sigmoid (eq. 8) losses on PU labels."""
  return (
      MoonsRow("true", "Logistic", "logistic", true_labels=True),
      MoonsRow("50% unlabelled", "Logistic", "logistic"),
      MoonsRow("50% unlabelled", f"WeightedLogistic({positive_weight:g}, {negative_weight:g})",
               "weighted_logistic",
               (("positive_weight", positive_weight), ("negative_weight", negative_weight))),
      MoonsRow("50% unlabelled", "Sigmoid", "sigmoid_negative"),
  )


# ----------------------------------------------------------------------------
# §5.1.2: Table 1 (and Fig. 5).
# ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ClassificationRow:
  """One trained model of Table 1 (or Fig. 5).

  `labels` is "clean" (R+N), "subset" (a random part of every class, clean)
  or "pu" (c R+U); the loss arguments are (name, value) pairs (nnPU's prior
  is added from the data by the experiment).
  """
  key: str
  name: str
  labels: str
  loss: str
  loss_kwargs: tuple = ()
  first_loss: Optional[str] = None
  first_loss_kwargs: tuple = ()

  def annotation(self, fraction: float, subset_fraction: float = 0.5) -> str:
    return {"clean": "R+N", "subset": f"{subset_fraction:.0%}(R+N)"}.get(
        self.labels, f"{fraction:.0%}R+U")


# "nnPU-estimated": nnPU with π estimated by BBE from the CrossEntropy PU
# row's held-out scores (beyond the thesis; experiments/cifar_pu.py).
NNPU_ESTIMATED_KEY = "nnPU-estimated"
TABLE1_KEYS = ("R+N", "50%(R+N)", "CrossEntropy", "ClassWeighted", "SoftmaxLoss",
               "BootstrapHard", "nnPU", "GeneralizedSoftmaxLoss", NNPU_ESTIMATED_KEY)


def class_weights(num_classes: int, non_relevant_weight: float = 0.5) -> tuple[float, ...]:
  """Eq. 7's weights: β for the non-relevant class 0, α_k = 1 otherwise."""
  return (non_relevant_weight,) + (1.0,) * (num_classes - 1)


def table1_rows(num_classes: int, non_relevant_weight: float = 0.5,
                bootstrap_beta: float = 0.8, generalized=(1.0, 0.5, 1.0),
                nnpu_surrogate: str = "logistic") -> list[ClassificationRow]:
  """Table 1's rows, then nnPU (π from the known labelled fraction), the generalised
  softmax loss (§6) and nnPU with π estimated from data (all three beyond the thesis)."""
  weights = (("class_weights", class_weights(num_classes, non_relevant_weight)),)
  alpha, beta, gamma = generalized
  row = ClassificationRow
  return [
      row("R+N", "CrossEntropy", "clean", "softmax_cross_entropy"),
      row("50%(R+N)", "CrossEntropy", "subset", "softmax_cross_entropy"),
      row("CrossEntropy", "CrossEntropy", "pu", "softmax_cross_entropy"),
      row("ClassWeighted", "ClassWeighted", "pu", "weighted_softmax_cross_entropy", weights),
      row("SoftmaxLoss", "SoftmaxLoss", "pu", "softmax_negative"),
      row("BootstrapHard", "BootstrapHard", "pu", "softmax_bootstrap_hard",
          (("beta", bootstrap_beta),), "weighted_softmax_cross_entropy", weights),
      row("nnPU", "nnPU", "pu", "softmax_nnpu_risk", (("surrogate", nnpu_surrogate),)),
      row("GeneralizedSoftmaxLoss", "GeneralizedSoftmaxLoss", "pu",
          "generalized_softmax_negative", (("alpha", alpha), ("beta", beta), ("gamma", gamma))),
      row(NNPU_ESTIMATED_KEY, "nnPU (estimated π)", "pu", "softmax_nnpu_risk",
          (("surrogate", nnpu_surrogate),)),
  ]
