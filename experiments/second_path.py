r"""The thesis' claims judged on two runs of one experiment on two numeric paths.

A verdict is only reported if it holds on a second numeric path: different
CPUs run different XLA kernels, so a second run of the same command with
`XLA_FLAGS=--xla_cpu_max_isa=AVX` (another code path, other rounding) must
reach the same verdict. This reads the `results.json` of both workdirs, judges
every claim on each (`jaxpu.thesis.claims`), and prints both and the merged
verdict (`claims.agree`: the common verdict, or "undecided (paths disagree)").

  python -m experiments.transfer --workdir=runs/transfer
  XLA_FLAGS=--xla_cpu_max_isa=AVX python -m experiments.transfer --workdir=runs/transfer-avx
  python -m experiments.second_path runs/transfer runs/transfer-avx
"""

from __future__ import annotations

import sys

from jaxpu import report
from jaxpu.thesis import claims


def verdicts_table(workdir_a: str, workdir_b: str) -> str:
  """Markdown: each measured claim's verdict on both paths and the verdict that holds."""
  a = claims.judge_all(report.load_results(workdir_a))
  b = claims.judge_all(report.load_results(workdir_b))
  merged = claims.agree(a, b)
  by_claim_b = {v.claim: v for v in b}
  rows = [[v.claim, f"**{v.status}**", f"**{by_claim_b[v.claim].status}**",
           f"**{m.status}**", v.evidence]
          for v, m in zip(a, merged) if m.status != claims.NOT_MEASURED]
  return (claims.SECOND_PATH_RULE + "\n\n" + report.markdown_table(
      ["claim", f"`{workdir_a}`", f"`{workdir_b}`", "verdict on both",
       f"evidence (`{workdir_a}`)"],
      rows) + "\n")


def main(argv) -> None:
  if len(argv) != 3:
    raise SystemExit(f"usage: python -m experiments.second_path WORKDIR WORKDIR_AVX\n{__doc__}")
  print(verdicts_table(argv[1], argv[2]))


if __name__ == "__main__":
  main(sys.argv)
