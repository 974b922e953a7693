"""experiments.train, experiments.predict / jaxpu.predict and the folder walk, at smoke scale."""

import hashlib
import json
import os
import re

import jax
import numpy as np
import PIL.Image
import pytest
import scipy.ndimage

from experiments import export_folder
from experiments import train
from experiments.configs import train as train_config
from jaxpu import checkpoint
from jaxpu import metrics
from jaxpu import predict
from jaxpu import train as train_lib
from jaxpu.data import folder
from jaxpu.data import pipeline
from tests.test_data_folder import write_folder


def smoke_config(directory, **changes):
  config = train_config.get_config("smoke")
  config.dataset = "folder"
  config.data.directory = directory
  for key, value in changes.items():
    target = config
    *parents, last = key.split(".")
    for part in parents:
      target = target[part]
    target[last] = value
  return config


def image_key(array) -> str:
  return hashlib.sha256(np.ascontiguousarray(array, np.float32).tobytes()).hexdigest()


def eval_argmax(run_dir, step, data):
  """{key of the network input: the evaluation step's argmax} over the validation batches,
  and the evaluation step's confusion matrix (`jaxpu.train.make_eval_step`)."""
  recipe = predict.load_recipe(run_dir)
  model = recipe.build_model()
  params = checkpoint.restore_params(run_dir, step)
  apply = jax.jit(lambda p, x: model.apply({"params": p}, x, train=False))  # eval_step's
  found = {}
  for batch in data.eval_iter():
    logits = np.asarray(apply(params, batch["image"]))
    masks = logits[..., 0] > 0 if recipe.binary else np.argmax(logits, -1)
    images, labels = np.asarray(batch["image"]), np.asarray(batch["label"])
    for image, label, mask in zip(images, labels, masks):
      if (label != 255).any():  # not the evaluation padding
        found[image_key(image)] = mask.astype(np.uint8)
  eval_step = train_lib.make_eval_step(model, recipe.num_outputs)
  return found, train_lib.evaluate(eval_step, params, data.eval_iter())


def check_predictions_match_eval(run_dir, step, data, directory, out_dir):
  """predict's PNGs of the validation images equal the evaluation step's argmax."""
  recipe = predict.load_recipe(run_dir)
  expected, eval_cm = eval_argmax(run_dir, step, data)
  scan = folder.scan_folder(directory)
  size = 2 if recipe.binary else recipe.num_outputs
  cm = np.zeros((size, size), np.int64)
  for name in scan.splits["val"]:
    entry = scan.entries[name]
    pixels = predict.read_image(entry.image)
    x = predict.normalise(recipe, predict.network_image(recipe, pixels)[None])[0]
    with PIL.Image.open(os.path.join(out_dir, name + ".png")) as png:
      assert png.mode == "P" and png.size == (pixels.shape[1], pixels.shape[0])
      assert np.array_equal(np.asarray(png.getpalette(), np.uint8).reshape(-1, 3)[:256],
                            predict.palette())
      mask = np.asarray(png)
    h, w = mask.shape
    np.testing.assert_array_equal(mask, expected[image_key(x)][:h, :w], err_msg=name)
    label = folder.read_index_png(entry.label, "label")
    cm += np.asarray(metrics.confusion_matrix(mask, np.where(label == 255, 255, label if not
                                                             recipe.binary else label > 0),
                                              size, where=label != 255))
  np.testing.assert_array_equal(cm, eval_cm)  # the same pixels, the same decisions


# ----------------------------------------------------------------------------
# The worked example: export → train → predict, choosing a snapshot by Lee & Liu.
# ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def walk(tmp_path_factory):
  root = tmp_path_factory.mktemp("walk")
  directory = str(root / "shapes")
  names = export_folder.export(directory, 40, min_size=24, max_size=40, unsegmented=0.5)
  workdir = str(root / "run")
  config = smoke_config(directory, loss="sigmoid_negative", select_by="lee_liu")
  train.run(config, workdir)
  out = str(root / "predicted")
  done = predict.predict_folder(workdir, os.path.join(directory, "images"), out, batch_size=8)
  return {"directory": directory, "names": names, "workdir": workdir, "out": out,
          "done": done, "config": config}


def test_export_writes_the_folder_layout(walk):
  assert {k: len(v) for k, v in walk["names"].items()} == {"train": 32, "val": 4, "test": 4}
  summary = folder.scan_folder(walk["directory"]).summary
  assert summary.all_class_names[0] == "background" and summary.num_classes == 21
  assert summary.split_source == "files" and 24 <= summary.max_side <= 40


def test_walk_selects_by_lee_liu_and_predicts(walk):
  workdir, out = walk["workdir"], walk["out"]
  run_dir = os.path.join(workdir, predict.TRAIN_RUN)
  recipe = predict.load_recipe(run_dir)
  records = json.load(open(os.path.join(workdir, "results.json")))
  snapshots = [r for r in records if r["table"] == "snapshots"]
  assert {r["column"] for r in snapshots} >= {"mean_iou", "labelled_recall", "lee_liu",
                                             "pu_auc"}
  selected = [r for r in snapshots if r["row"][2] == "selected"]
  assert {int(r["row"][0]) for r in selected} == {recipe.selected_step}
  best = max((r["values"][0], int(r["row"][0])) for r in snapshots if r["column"] == "lee_liu")
  assert recipe.selected_step == best[1] and recipe.select_by == "lee_liu"
  assert walk["done"]["step"] == recipe.selected_step and walk["done"]["images"] == 40
  assert open(os.path.join(out, "classes.txt")).read().splitlines() == ["background",
                                                                        "foreground"]
  for name in walk["names"]["test"]:
    with PIL.Image.open(os.path.join(walk["directory"], "images", name + ".png")) as image:
      size = image.size
    with PIL.Image.open(os.path.join(out, name + ".png")) as png:
      assert png.mode == "P" and png.size == size
    probs = np.load(os.path.join(out, name + ".npz"))["probabilities"]
    assert probs.shape == (size[1], size[0], 2)
    np.testing.assert_allclose(probs.sum(-1), 1, atol=1e-6)
  data = pipeline.make_segmentation_data(train.validate(walk["config"]).data)
  check_predictions_match_eval(run_dir, recipe.selected_step, data, walk["directory"], out)


def test_predict_images_matches_predict_folder(walk):
  path = os.path.join(walk["directory"], "images", walk["names"]["val"][0] + ".png")
  [result] = predict.predict_images(walk["workdir"], [path])
  with PIL.Image.open(os.path.join(walk["out"], walk["names"]["val"][0] + ".png")) as png:
    np.testing.assert_array_equal(result.mask, np.asarray(png))


def test_predict_errors_name_the_file_and_the_fix(walk, tmp_path):
  empty = tmp_path / "empty"
  empty.mkdir()
  with pytest.raises(predict.PredictError, match="holds no image"):
    predict.predict_folder(walk["workdir"], str(empty), str(tmp_path / "o1"))
  broken = tmp_path / "broken"
  broken.mkdir()
  (broken / "bad.png").write_bytes(b"not a png at all")
  with pytest.raises(predict.PredictError, match=re.escape(str(broken / "bad.png"))):
    predict.predict_folder(walk["workdir"], str(broken), str(tmp_path / "o2"))
  with pytest.raises(predict.PredictError, match="holds no spec.json"):
    predict.predict_folder(walk["directory"], os.path.join(walk["directory"], "images"),
                           str(tmp_path / "o3"))
  with pytest.raises(predict.PredictError, match=r"no checkpoint of step 3"):
    predict.predict_images(walk["workdir"], [np.zeros((8, 8, 3), np.uint8)], step=3)


# ----------------------------------------------------------------------------
# A folder of the user's kind: sizes, void outlines, partial instance maps; both models.
# ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def user_folder(tmp_path_factory):
  directory = str(tmp_path_factory.mktemp("user") / "photos")
  write_folder(directory, num_images=100, seed=3, sizes=(20, 40))
  return directory


def unsegmented_share(data) -> tuple[int, int]:
  """(objects left unlabelled, objects) over one epoch of training batches: the connected
  components of the true foreground (boxes inside void outlines) whose label became 0."""
  unlabelled = total = 0
  iterator = data.train_iter(0)
  for _ in range(data.steps_per_epoch):
    batch = next(iterator)
    for label, true in zip(np.asarray(batch["label"]), np.asarray(batch["true_label"])):
      components, count = scipy.ndimage.label((true != 0) & (true != 255),
                                              np.ones((3, 3), bool))
      for k in range(1, count + 1):
        inside = components == k
        assert len(np.unique(label[inside])) == 1  # whole objects, never parts
        unlabelled += int((label[inside] == 0).all())
      total += count
  return unlabelled, total


@pytest.mark.parametrize("loss,changes", [
    ("sigmoid_negative", {"corrupt_eval": True, "select_by": "corrected_f1",
                          "prior": "estimate"}),
    ("softmax_negative", dict(select_by="lee_liu")),
])
def test_folder_models_with_corruption(user_folder, tmp_path, loss, changes):
  rate = 0.5
  config = smoke_config(user_folder, loss=loss, corruption=f"unsegment_objects:{rate}",
                        **changes)
  plan = train.validate(config)
  # The run's batches, with the validation labels as given (the folder's own, never
  # corrupted: `corrupt_eval` changes only the validation split).
  data = pipeline.make_segmentation_data(plan.data.replace(corrupt_eval=False))
  unlabelled, total = unsegmented_share(data)
  assert total > 120
  assert abs(unlabelled / total - rate) < 4 * np.sqrt(rate * (1 - rate) / total)

  workdir = str(tmp_path / "run")
  cells = train.run(config, workdir)
  run_dir = os.path.join(workdir, predict.TRAIN_RUN)
  recipe = predict.load_recipe(run_dir)
  assert recipe.binary == (loss == "sigmoid_negative")
  assert recipe.image_size == 40 and recipe.downsample == 1
  assert len(recipe.class_names) == (2 if recipe.binary else 5)
  columns = {c.column for c in cells if c.table == "snapshots"}
  assert {"mean_iou", "labelled_recall", "lee_liu", "pu_auc"} <= columns
  if "prior" in changes:  # estimated by BBE from the logistic model's validation scores
    assert {"corrected_precision", "corrected_f1", "corrected_iou"} <= columns
    estimate = json.load(open(os.path.join(workdir, train.PRIOR_FILE)))
    assert 0 <= estimate["BBE"] <= 1 and os.path.isdir(os.path.join(workdir, "runs",
                                                                     train.PRIOR_RUN))
    assert f"{estimate['BBE']:.4f}" in open(os.path.join(workdir, "results.md")).read()
  out = str(tmp_path / "predicted")
  predict.predict_folder(workdir, os.path.join(user_folder, "images"), out, batch_size=8)
  check_predictions_match_eval(run_dir, recipe.selected_step, data, user_folder, out)


# ----------------------------------------------------------------------------
# Pieces.
# ----------------------------------------------------------------------------


def test_palette_is_the_voc_colour_map():
  colours = predict.palette()
  assert colours.shape == (256, 3)
  assert colours[:4].tolist() == [[0, 0, 0], [128, 0, 0], [0, 128, 0], [128, 128, 0]]
  assert colours[255].tolist() == [224, 224, 192]


@pytest.mark.parametrize("changes,field", [
    (dict(dataset="imagenet"), "dataset"),
    (dict(loss="hinge"), "loss"),
    (dict(loss="nnpu_risk"), "prior"),
    (dict(loss="nnpu_risk", prior=1.5), "prior"),
    (dict(prior="estimate", dataset="synthetic"), "prior"),
    (dict(loss="softmax_negative", task="binary"), "task"),
    (dict(loss="logistic", task="multiclass"), "task"),
    (dict(corruption="unsegment_objects"), "corruption"),
    (dict(corrupt_eval=True), "corrupt_eval"),
    (dict(select_by="best"), "select_by"),
    (dict(select_by="lee_liu", dataset="synthetic"), "select_by"),
    (dict(select_by="corrected_f1"), "select_by"),
    (dict(**{"loss_options.alpha": 2.0}), "loss_options.alpha"),
    (dict(**{"loss_options.negative_weight": -1.0}), "loss_options"),
    (dict(loss="weighted_softmax_cross_entropy"), "loss_options.class_weights"),
    (dict(**{"train.steps": 0}), "train.steps"),
    (dict(**{"data.directory": "/nonexistent/folder"}), "data.directory"),
    (dict(**{"model_options.depth": 3}), "model"),
    (dict(init_from="/nonexistent/run"), "init_from"),
    (dict(fold=2), "fold"),
    (dict(dont_load=("encoder", "head")), "dont_load"),
    (dict(loss="nnpu_risk", prior=0.3, **{"train.loss_reduction": "sum_per_example"}),
     "train.loss_reduction"),
])
def test_config_errors_name_the_field(tmp_path, changes, field):
  config = smoke_config(str(tmp_path), **changes)
  workdir = str(tmp_path / "run")
  with pytest.raises(ValueError, match=re.escape(f"--config.{field}")):
    train.run(config, workdir)
  assert not os.path.exists(os.path.join(workdir, "config.json"))  # nothing claimed


def test_rerun_with_another_criterion_reuses_the_run(walk):
  run_dir = os.path.join(walk["workdir"], predict.TRAIN_RUN)
  before = os.path.getmtime(os.path.join(run_dir, "done.json"))
  config = smoke_config(walk["directory"], loss="sigmoid_negative", select_by="last")
  cells = train.run(config, walk["workdir"])  # select_by only chooses: no new training
  assert {c.row for c in cells if "selected" in c.row} == {("4", "kept", "selected")}
  assert predict.load_recipe(run_dir).selected_step == 4
  assert os.path.getmtime(os.path.join(run_dir, "done.json")) == before
