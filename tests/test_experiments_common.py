"""experiments.common: workdir claims, config checks, progress."""

import json

import pytest

from experiments import common as experiment


def test_claim_workdir_writes_the_config_and_names_every_differing_field(tmp_path):
  config = {"seed": 0, "tables": ["table4"], "pretrain": {"steps": 800, "learning_rate": 3e-3}}
  stored = experiment.claim_workdir(str(tmp_path), config, selection=("tables",))
  assert json.loads((tmp_path / "config.json").read_text()) == stored == config
  # Fields that only select what runs may change; the others may not.
  experiment.claim_workdir(str(tmp_path), dict(config, tables=["table3"]), selection=("tables",))
  changed = {"seed": 1, "tables": ["table4"], "pretrain": {"steps": 400, "learning_rate": 3e-3}}
  with pytest.raises(ValueError) as info:
    experiment.claim_workdir(str(tmp_path), changed, selection=("tables",))
  message = str(info.value)
  assert "pretrain.steps: 800 (in the workdir) → 400 (now)" in message
  assert "seed: 0 (in the workdir) → 1 (now)" in message
  assert "tables" not in message


def test_unwritable_workdir_is_named(tmp_path):
  with pytest.raises(ValueError, match=r"Cannot create the workdir '/proc/foo'"):
    experiment.claim_workdir("/proc/foo", {"seed": 0})


def test_config_checks_name_the_field():
  from ml_collections import config_dict  # pylint: disable=g-import-not-at-top
  config = config_dict.ConfigDict(dict(seed=0, repeats=0))
  with pytest.raises(ValueError, match=r"--config\.repeats=0: must be a positive integer"):
    experiment.check_common(config)
  assert experiment.names("table3,table4") == ("table3", "table4")
  assert experiment.names(("table3", "fig7")) == ("table3", "fig7")
  assert experiment.repeat_seeds(config_dict.ConfigDict(dict(seed=5, repeats=3))) == [5, 6, 7]


def test_progress_weighs_the_eta_by_work(capsys, monkeypatch):
  clock = iter([100.0, 160.0])
  monkeypatch.setattr(experiment.time, "time", lambda: next(clock))
  progress = experiment.Progress("transfer", total=400, runs=5)
  progress("pre-training", 100)  # 60 s for 100 of 400 steps: 180 s to go
  assert "[transfer] 1/5 runs done (pre-training); 0:01:00 elapsed, ETA 0:03:00" in (
      capsys.readouterr().out)


def test_a_workdir_in_use_by_another_process_is_refused_naming_it(tmp_path):
  import subprocess  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  holder = subprocess.Popen(
      [sys.executable, "-c", "import sys, time; from experiments import common; "
       f"common.claim_workdir({str(tmp_path)!r}, {{'seed': 0}}); print('held', flush=True); "
       "time.sleep(60)"], stdout=subprocess.PIPE, text=True)
  try:
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(ValueError, match=rf"in use by process {holder.pid}; wait"):
      experiment.claim_workdir(str(tmp_path), {"seed": 0})
  finally:
    holder.kill()
    holder.wait()
  experiment.claim_workdir(str(tmp_path), {"seed": 0})  # free again: accepted
  experiment.claim_workdir(str(tmp_path), {"seed": 0})  # this process holds it: accepted


def test_a_damaged_config_json_is_named(tmp_path):
  (tmp_path / "config.json").write_text("[]")
  with pytest.raises(ValueError, match=r"config\.json is damaged: it holds list"):
    experiment.claim_workdir(str(tmp_path), {"seed": 0})


def test_a_misspelt_config_field_is_refused_before_the_workdir_is_claimed(tmp_path):
  from experiments.configs import transfer as transfer_config  # pylint: disable=g-import-not-at-top
  config = transfer_config.get_config("smoke")
  experiment.check_fields(config, "transfer")  # the config file's own fields: accepted
  config.finetune.learnig_rate = 1.0
  with pytest.raises(ValueError, match=r"finetune\.learnig_rate \(did you mean "
                                       r"finetune\.learning_rate"):
    experiment.claim_workdir(str(tmp_path / "w"), config, experiment="transfer")
  assert not (tmp_path / "w").exists()
