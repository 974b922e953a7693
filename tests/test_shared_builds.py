"""tests/smoke.py's builds shared by the tests of a run: once, in any worker; a failure once."""

import os
import subprocess
import sys
import textwrap

import pytest

from tests import smoke


def test_a_build_runs_once_and_a_failure_is_reported_to_every_caller(tmp_path, monkeypatch):
  monkeypatch.setenv("JAXPU_TESTS_SHARED", str(tmp_path / "shared"))
  calls = []

  def build(path):
    calls.append(path)
    os.makedirs(path)
    with open(os.path.join(path, "x"), "w") as f:
      f.write("built")

  first = smoke.once("a", build)
  assert smoke.once("a", build) == first and len(calls) == 1
  assert open(os.path.join(first, "x")).read() == "built"

  def broken(path):
    calls.append(path)
    raise ValueError("the build broke")

  with pytest.raises(ValueError, match="the build broke"):
    smoke.once("b", broken)
  with pytest.raises(RuntimeError, match="(?s)failed earlier in this test run.*the build broke"):
    smoke.once("b", broken)
  assert len(calls) == 2  # not built again


def test_a_build_another_process_holds_is_waited_for(tmp_path, monkeypatch):
  """A second process asking for a folder the first is building waits and reuses it."""
  shared = tmp_path / "shared"
  monkeypatch.setenv("JAXPU_TESTS_SHARED", str(shared))
  repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  code = textwrap.dedent(f"""
      import os, sys, time
      sys.path.insert(0, {repo!r})
      from tests import smoke
      def build(path):
        os.makedirs(path)
        time.sleep(1.0)
        with open(os.path.join(path, "by"), "a") as f:
          f.write(sys.argv[1])
      print(open(os.path.join(smoke.once("k", build), "by")).read())
      """)
  env = dict(os.environ, JAXPU_TESTS_SHARED=str(shared))
  procs = [subprocess.Popen([sys.executable, "-c", code, name], env=env, text=True,
                            stdout=subprocess.PIPE) for name in ("p", "q")]
  outs = [p.communicate(timeout=60)[0].strip() for p in procs]
  assert all(p.returncode == 0 for p in procs)
  assert outs[0] == outs[1] and outs[0] in ("p", "q")  # one built, the other reused it
