"""Table 2's columns: a segmentation run's own scores under the thesis' column names.

Table 2 (and the pre-training tables of Tables 3-5) report overall accuracy,
mean recall (the FCN "mean accuracy", also Fig. 7's), frequency-weighted IU
and mean IU; binary runs add the recall of each class.
"""

from __future__ import annotations

import numpy as np

from jaxpu import metrics
from jaxpu import runs


# Table 2's columns (and Fig. 7's "mean accuracy" = mean recall), by score name.
SEGMENTATION_COLUMNS = {"overall_accuracy": "overall acc.", "mean_recall": "mean rec.",
                        "fw_iou": "f.w. IU", "mean_iou": "mean IU"}
BINARY_COLUMNS = {**SEGMENTATION_COLUMNS, "foreground_recall": "fg rec.",
                  "background_recall": "bg rec."}


def own_scores(result: runs.RunResult, k: int = 5) -> dict[str, list[float]]:
  """A run's scores on its own test split over its last `k` snapshots (Table 2's columns,
  plus per-class recall for binary runs), keyed by column name."""
  score_fn = (runs.binary_segmentation_scores if result.spec.num_classes == 1
              else metrics.segmentation_scores)
  columns = BINARY_COLUMNS if result.spec.num_classes == 1 else SEGMENTATION_COLUMNS
  scores = result.scores(score_fn, k)
  return {column: scores[name] for name, column in columns.items() if name in scores}


SNAPSHOT_STATISTICS = ("mean", "max")


def repeat_value(result: runs.RunResult, column: str, k: int = 5,
                 statistic: str = "mean") -> float:
  """One repeat's value of a column over the run's last `k` snapshots: their mean (the
  embedded protocol; Tables 3-5 of the thesis average them) or their highest ("max":
  Table 2 of the thesis reports the best of the last five snapshots)."""
  values = own_scores(result, k)[column]
  if statistic == "mean":
    return float(np.mean(values))
  if statistic == "max":
    return float(np.max(values))
  raise ValueError(f"Unknown snapshot statistic {statistic!r}; choose one of "
                   f"{SNAPSHOT_STATISTICS}.")
