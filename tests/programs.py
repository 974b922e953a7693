"""A program run as `python -m <module> <args>` would run it, in this process.

`run_module` runs the module as `__main__` (`runpy`) with the command line in
`sys.argv`, from the folder `cwd`; an uncaught exception is exit status 1
with its traceback on stderr (as the interpreter does), and the flags the
program defines are removed afterwards (`own_flags`), so the next program
starts from the flags it found. This saves each program a Python start with
JAX and TensorFlow; the tests that check a program as a user starts it run it
in a subprocess.
"""

import contextlib
import io
import os
import runpy
import sys
import traceback
import warnings

from absl import flags

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@contextlib.contextmanager
def own_flags():
  """Removes the flags (and their modules' entries) that the block defines."""
  from absl import app  # pylint: disable=g-import-not-at-top
  app.define_help_flags()  # once per process: kept
  values = flags.FLAGS
  names = set(values)
  registries = (values.flags_by_module_dict(), values.flags_by_module_id_dict(),
                values.key_flags_by_module_dict())
  keys = [set(registry) for registry in registries]
  try:
    yield
  finally:
    for name in set(values) - names:
      delattr(values, name)
    for registry, before in zip(registries, keys):
      for key in set(registry) - before:
        del registry[key]


def run_module(module: str, *args: str, cwd: str = REPO, check: bool = True
               ) -> tuple[int, str, str]:
  """`python -m <module> *args` from `cwd`, in-process; returns (exit status, stdout,
  stderr). `check`: assert the status is 0 (the message shows the output's ends)."""
  argv = [os.path.join(REPO, *module.split(".")) + ".py", *args]
  out, err = io.StringIO(), io.StringIO()
  saved_argv, saved_cwd = sys.argv, os.getcwd()
  sys.argv = argv
  os.chdir(cwd)
  try:
    with own_flags(), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), \
        warnings.catch_warnings():
      warnings.simplefilter("ignore", RuntimeWarning)  # runpy: the module is imported already
      try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
        code = 0
      except SystemExit as e:  # absl's app.run ends with sys.exit
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
      except Exception:  # pylint: disable=broad-except
        traceback.print_exc()  # as the interpreter does, to stderr, and exits with 1
        code = 1
  finally:
    sys.argv = saved_argv
    os.chdir(saved_cwd)
  if check:
    assert code == 0, out.getvalue()[-3000:] + err.getvalue()[-5000:]
  return code, out.getvalue(), err.getvalue()
