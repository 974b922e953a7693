r"""Beyond the thesis: can a model be chosen without clean labels? The noisy-label criteria, measured.

A user whose labels miss objects picks a loss (or α, β, γ of the
generalised sigmoid loss) on validation labels that miss objects too. This
experiment measures, where the truth is known, whether the criteria of
`jaxpu.selection` (computed from the noisy validation labels alone) choose
as the clean labels would:

- candidates: at each unsegmented rate r (`unsegment_objects:r`, or a
  selection-biased mechanism of `mechanisms`: `unsegment_small:r` etc., on
  the training *and* the validation labels, the same noise seed), the losses of
  `experiments.binary_segmentation`'s sweep (`losses`: logistic,
  class-weighted, sigmoid, nnPU with the true and the BBE prior) and the
  cells of `experiments.saturation`'s generalised sigmoid grid (`alphas`,
  `betas`, `gammas`); three candidate sets: "losses", "sigmoid grid" and
  "all" (both together); each candidate is the last snapshot of its run;
- the truth: mean IU and foreground F1 of each candidate against the clean
  labels of the validation images (the test split of the embedded data);
- the criteria, against the noisy labels of the same images: labelled
  recall, Lee & Liu's recall² / P(ŷ=1), the PU AUC, the prior-corrected F1
  and IoU with π_U estimated by BBE (from the logistic run's logits on the
  validation images, `binary_segmentation.estimate_priors`) and, as an
  oracle, with the true π_U of the noisy validation labels; and the naive
  choice, the mean IU against the noisy labels as if they were clean;
- per repeat and candidate set: Spearman's ρ between each criterion and
  each clean score over the candidates, and the regret (the best clean score
  minus the clean score of the criterion's pick); the "random pick" row is
  the expected regret of choosing uniformly at random (ρ 0 by definition).
  Mean ± std over the repeats (seeds seed + r: initialisation, order and the
  noise of both label sets).

Outputs in the workdir: `results.md` / `results.json` (the tables
"agreement" and "candidates"), `evaluations/` (each candidate's confusion
matrices and PU AUC, reused on resume) and the run folders.

  python -m experiments.selection_criteria                 # cpu, 2 rates × 3 repeats
  python -m experiments.selection_criteria --config.rates=0.5 --workdir=/tmp/criteria

Settings: `experiments/configs/selection_criteria.py`.
"""

from __future__ import annotations

import os
from typing import Sequence


from experiments import binary_segmentation
from experiments import common
from experiments import saturation
from jaxpu import fileio
from jaxpu import predict as predict_lib
from jaxpu import report
from jaxpu import segmentation_runs as seg
from jaxpu import selection
from jaxpu.data import noise
from jaxpu.data import pipeline
from jaxpu.thesis import rows as thesis_rows

SELECTION = ("repeats", "rates", "mechanisms", "losses", "alphas", "betas", "gammas")
SCAR = "unsegment_objects"
MECHANISMS = (SCAR,) + tuple(noise.SELECTION_BIASES)
TRUTHS = {"mean_iu": "mean IU", "fg_f1": "fg F1"}
# Criterion key → its row label (the prior-corrected ones with the BBE prior, or the true one).
CRITERIA = {"labelled_recall": "labelled recall", "lee_liu": "Lee & Liu",
            "pu_auc": "PU AUC", "corrected_f1": "corrected F1 (BBE π)",
            "corrected_iou": "corrected IoU (BBE π)",
            "oracle_corrected_f1": "corrected F1 (true π)",
            "noisy_mean_iu": "mean IU on noisy labels"}
RANDOM = "random pick"
AGREEMENT = report.TableSpec(
    "agreement", "How each criterion (noisy validation labels) ranks the candidates against "
    "the clean ranking: Spearman's ρ and the regret of its pick", ("unsegmented", "candidates",
                                                                   "criterion"),
    tuple(f"{k} {t}" for t in TRUTHS.values() for k in ("ρ", "regret")))
CANDIDATES = report.TableSpec(
    "candidates", "Every candidate (last snapshot): clean scores and criteria on the "
    "validation images", ("unsegmented", "candidate"),
    tuple(TRUTHS.values()) + tuple(CRITERIA.values()))


def validate(config) -> tuple[float, ...]:
  """Checks every setting before any data is built; returns the rates."""
  common.check_common(config)
  common.require(config.dataset in binary_segmentation.DATASETS, "dataset", config.dataset,
                 f"choose one of {binary_segmentation.DATASETS}")
  rates = common.numbers(config.rates)
  common.require(bool(rates) and len(set(rates)) == len(rates), "rates", config.rates,
                 "needs distinct rates, e.g. --config.rates=0.5,0.7")
  for rate in rates:
    common.require(isinstance(rate, (int, float)) and 0 < rate < 1, "rates", config.rates,
                   "every rate must be in (0, 1), e.g. --config.rates=0.5,0.7")
  mechanisms = common.names(config.mechanisms)
  unknown = sorted(set(mechanisms) - set(MECHANISMS))
  common.require(bool(mechanisms) and not unknown, "mechanisms", config.mechanisms,
                 f"choose some of {list(MECHANISMS)}")
  losses = common.names(config.losses)
  unknown = sorted(set(losses) - set(thesis_rows.SWEEP_LOSSES))
  common.require(not unknown, "losses", config.losses,
                 f"choose some of {list(thesis_rows.SWEEP_LOSSES)}")
  common.require(len(losses) + len(saturation.grid(config)) >= 3, "losses", config.losses,
                 "a ranking needs at least 3 candidates (losses and grid cells together)")
  for field, low in (("alphas", 0.0), ("betas", 0.0), ("gammas", 0.0)):
    for v in common.numbers(config[field]):
      common.require(isinstance(v, (int, float)) and v >= low and (field == "alphas" or v > 0),
                     field, config[field], "every value must be a finite number > 0 "
                     "(alphas: >= 0)")
  common.require(config.repeats >= 2, "repeats", config.repeats,
                 "needs >= 2 repeats for a spread")
  return rates


def candidate_sets(config, runner, mechanism: str, rate: float, seed: int) -> dict[str, list]:
  """Candidate set → [(name, Training)] with `mechanism` at `rate` for repeat `seed`
  (module docstring)."""
  weight = config.class_weighted_negative_weight
  corruption = f"{mechanism}:{rate:g}"
  losses = [(name, binary_segmentation.sweep_training(runner, rate, name, seed, weight,
                                                      corruption))
            for name in thesis_rows.SWEEP_LOSSES if name in common.names(config.losses)]
  cells = [(f"α{a:g} β{b:g} γ{g:g}", seg.binary_training(
      corruption, saturation.LOSS, alpha=a, beta=b, gamma=g))
           for a, b, g in saturation.grid(config)]
  return {"losses": losses, "sigmoid grid": cells, "all": losses + cells}


def validation_data(runner, corruption: str, seed: int):
  """The validation images with noisy labels ("label", the runs' corruption and noise
  seed) and clean ones ("true_label"), as NumPy batches."""
  spec = runner.data_spec(seg.binary_training(corruption), None, seed)
  return pipeline.make_segmentation_data(spec.replace(corrupt_eval=True, with_true_label=True),
                                         as_numpy=True)


def evaluation(workdir: str, result, data) -> dict:
  """`selection.evaluate` of a run's last snapshot on `data`, stored in
  `workdir/evaluations/` with the run's identity and step, reused on resume."""
  path = os.path.join(workdir, "evaluations", os.path.basename(result.run_dir) + ".json")
  identity = fileio.read_json(os.path.join(result.run_dir, predict_lib.SPEC_FILE))
  step = int(result.spec.steps)
  stored = fileio.read_json(path, what="delete it to evaluate the run again")
  if stored is not None and stored.get("identity") == identity and stored.get("step") == step:
    return stored["found"]
  apply = predict_lib.apply_fn(result.spec.build_model())
  found = selection.evaluate(apply, result.params(step), data.eval_iter(),
                             num_classes=result.spec.num_classes, clean_key="true_label")
  os.makedirs(os.path.dirname(path), exist_ok=True)
  fileio.write_json(path, {"identity": identity, "step": step, "found": found})
  return found


def candidate_values(found: dict, priors: dict) -> dict[str, float]:
  """The clean scores and every criterion of one evaluated candidate."""
  values = selection.clean_scores(found)
  values.update(selection.model_criteria(found, priors["BBE"]))
  values["oracle_corrected_f1"] = selection.criteria(found["noisy_cm"],
                                                     priors["test π"])["corrected_f1"]
  return values


def judge(candidates: Sequence[dict]) -> dict[tuple[str, str], dict[str, float]]:
  """(criterion row, clean score) → `selection.agreement` over the candidates of a repeat."""
  out = {}
  for truth in TRUTHS:
    clean = [c[truth] for c in candidates]
    for key, label in CRITERIA.items():
      out[label, truth] = selection.agreement([c[key] for c in candidates], clean)
    chance = selection.agreement(clean, clean)["random_regret"]
    out[RANDOM, truth] = {"rho": 0.0, "regret": chance}
  return out


def run(config, workdir: str) -> list[report.Cell]:
  rates = validate(config)
  runner = binary_segmentation.make_runner(config, workdir)  # validates config.train
  resolved = common.claim_workdir(workdir, config, selection=SELECTION,
                                  experiment="selection_criteria")
  outputs = common.Outputs(workdir, resolved)
  seeds = common.repeat_seeds(config)
  settings = [(m, r) for m in common.names(config.mechanisms) for r in rates]
  per_repeat = len(common.names(config.losses)) + len(saturation.grid(config))
  runner.progress = common.Progress(
      "selection_criteria", runner.pretrain.steps * per_repeat * len(seeds) * len(settings),
      per_repeat * len(seeds) * len(settings))
  weight = config.class_weighted_negative_weight
  for mechanism, rate in settings:
    corruption = f"{mechanism}:{rate:g}"
    label = f"{rate:.0%}" + ("" if mechanism == SCAR else f" ({mechanism})")
    values: dict = {}  # (table, row, column) → one value per repeat
    for seed in seeds:
      priors = binary_segmentation.estimate_priors(runner, rate, seed, weight, corruption)
      data = validation_data(runner, corruption, seed)
      sets = candidate_sets(config, runner, mechanism, rate, seed)
      evaluated = {name: candidate_values(
          evaluation(workdir, runner.train(training, None, seed), data), priors)
                   for name, training in sets["all"]}
      for name, found in evaluated.items():
        for key, column in {**TRUTHS, **CRITERIA}.items():
          values.setdefault((CANDIDATES.table, (label, name), column), []).append(found[key])
      for set_name, members in sets.items():
        if len(members) < 3:  # no ranking to speak of
          continue
        for (criterion, truth), found in judge([evaluated[n] for n, _ in members]).items():
          for k, word in (("rho", "ρ"), ("regret", "regret")):
            values.setdefault((AGREEMENT.table, (label, set_name, criterion),
                               f"{word} {TRUTHS[truth]}"), []).append(found[k])
    for (table, row, column), vals in values.items():
      outputs.add(table, row, column, vals)
  preamble = (
      "# Choosing a model without clean labels: do the noisy-label criteria rank like the "
      "clean labels?\n\n"
      f"Binary segmentation on `{config.dataset}` ({config.model}, {config.train.steps} steps), "
      "objects unsegmented at each rate in the training and the validation labels. Each "
      f"candidate is a run's last snapshot; mean ± std over {len(seeds)} repeats. ρ: "
      "Spearman's rank correlation with the clean score over the candidate set; regret: the "
      "best candidate's clean score minus that of the criterion's pick (0 = it picks the "
      "best).\n")
  markdown = outputs.write([AGREEMENT, CANDIDATES], preamble=preamble)
  print(markdown)
  return outputs.cells


if __name__ == "__main__":
  from experiments import cli  # pylint: disable=g-import-not-at-top
  cli.main("selection_criteria", run)
