"""JSON documents on disk: atomic writes, reads that name a damaged file, field-by-field differences.

Every file jaxpu writes that a later run reads (run identities, results,
manifests, reports) goes through `write_text` / `write_json`: the content is
written to a temporary file beside the target and renamed into place, so a
crash or a full disk leaves the old file (or none), never half a file. `differences` compares two documents (configs, run
identities) field by field, by their dotted names (`--config.a.b`).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import threading
from typing import Any, Iterable, Mapping, Optional


def write_text(path: str, text: str, *, fsync: bool = False) -> None:
  """Writes `text` to `path` atomically (temporary file + rename; `fsync`: flush to disk first).

  Raises:
    OSError: naming `path`, e.g. when the disk is full ("No space left on
      device"); the previous content of `path`, if any, is unchanged.
  """
  path = os.fspath(path)
  temporary = f"{path}.tmp-{os.getpid()}-{threading.get_ident()}"
  try:
    with open(temporary, "w") as f:
      f.write(text)
      if fsync:
        f.flush()
        os.fsync(f.fileno())
    os.replace(temporary, path)
  except OSError as e:
    why = "disk full" if e.errno == errno.ENOSPC else (e.strerror or str(e))
    raise type(e)(e.errno, f"could not write {path}: {why} (the previous content of the "
                  "file, if any, is unchanged)") from e
  finally:
    if os.path.exists(temporary):
      os.remove(temporary)


@contextlib.contextmanager
def file_lock(path: str):
  """Holds an exclusive `flock` on `path` (created with its folder) while the block runs;
  other processes that ask for the same lock wait."""
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with open(path, "w") as f:
    fcntl.flock(f, fcntl.LOCK_EX)
    try:
      yield
    finally:
      fcntl.flock(f, fcntl.LOCK_UN)


def write_json(path: str, value: Any, *, indent: Optional[int] = 1, sort_keys: bool = False,
               fsync: bool = False) -> None:
  """Writes `value` as JSON to `path` atomically (`write_text`)."""
  write_text(path, json.dumps(value, indent=indent, sort_keys=sort_keys), fsync=fsync)


def read_json(path: str, default: Any = None, *, what: str = "") -> Any:
  """The JSON value in `path` (`default` if the file does not exist).

  Raises:
    ValueError: the file is not valid JSON; the message names the file and
      what to do (`what`: e.g. "delete the run folder X to train it again").
  """
  if not os.path.exists(path):
    return default
  with open(path) as f:
    text = f.read()
  try:
    return json.loads(text)
  except json.JSONDecodeError as e:
    fix = what or f"delete {path} (or the folder holding it) to write it anew"
    raise ValueError(f"{path} is damaged: not valid JSON ({e}); {fix}.") from None


def config_dict(config: Any) -> dict[str, Any]:
  """A JSON-ready plain dict of a ConfigDict (or mapping); tuples become lists."""
  if hasattr(config, "to_dict"):
    config = config.to_dict()
  return json.loads(json.dumps(config, default=_jsonable))


def _jsonable(value):
  if isinstance(value, (set, frozenset)):
    return sorted(value)
  if hasattr(value, "tolist"):
    return value.tolist()
  return str(value)


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
  """{"a": {"b": 1}} → {"a.b": 1} (the dotted names of `--config.a.b`)."""
  out = {}
  for key, value in tree.items():
    name = f"{prefix}{key}"
    if isinstance(value, Mapping):
      out.update(flatten(value, name + "."))
    else:
      out[name] = value
  return out


def differences(old: Mapping[str, Any], new: Mapping[str, Any],
                ignore: Iterable[str] = ()) -> list[tuple[str, Any, Any]]:
  """(dotted field, old value, new value) of every differing field not under `ignore`."""
  old_flat, new_flat = flatten(config_dict(old)), flatten(config_dict(new))
  ignored = tuple(ignore)

  def skipped(name):
    return any(name == i or name.startswith(i + ".") for i in ignored)

  missing = object()
  return [(name, old_flat.get(name, missing), new_flat.get(name, missing))
          for name in sorted(set(old_flat) | set(new_flat))
          if not skipped(name) and old_flat.get(name, missing) != new_flat.get(name, missing)]


def show_value(value) -> str:
  """A value of `differences` as JSON ("(absent)" for a field one side lacks)."""
  return "(absent)" if not isinstance(value, (str, int, float, bool, list, dict, type(None))) \
      else json.dumps(value)
