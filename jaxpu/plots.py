"""Figures of the experiments beyond the thesis, drawn with matplotlib (the thesis' own
figures are `jaxpu.thesis.figures`).

Figures are drawn on ``matplotlib.figure.Figure`` objects directly (no
``pyplot``), so nothing here touches the global backend or needs a display.
"""

from typing import Dict, Sequence, Tuple

import numpy as np
from matplotlib import figure as mpl_figure


def plot_unsegmented_sweep(path: str,
                           curves: Dict[str, Dict[float, Dict[str, Tuple[float, float]]]]) -> str:
  """Scores vs the rate of unsegmented training objects, one line per loss.

  Args:
    path: output PNG.
    curves: loss name -> rate -> {score name: (mean, std)}; one panel per score.
  """
  names = sorted({s for by_rate in curves.values() for v in by_rate.values() for s in v})
  fig = mpl_figure.Figure(figsize=(4.5 * len(names), 4), layout="constrained")
  axes = np.atleast_1d(fig.subplots(1, len(names)))
  for ax, name in zip(axes, names):
    for loss, by_rate in curves.items():
      rates = sorted(r for r in by_rate if name in by_rate[r])
      ax.errorbar(rates, [by_rate[r][name][0] for r in rates],
                  [by_rate[r][name][1] for r in rates], fmt="-o", capsize=3, label=loss)
    ax.set(xlabel="fraction of training objects unsegmented", ylabel=name, title=name)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
  fig.savefig(path, dpi=120)
  return path


def plot_noise_levels(path: str, curves: Dict[str, Dict[str, Dict[float, Dict[str, Tuple[
    float, float]]]]], scores: Sequence[str] = ()) -> str:
  """Scores vs the fraction of objects a noise changes: a row per noise, a panel per score.

  Args:
    path: output PNG.
    curves: noise name -> loss name -> level (0 = clean labels) -> {score: (mean, std)}.
    scores: the panels' scores in this order (default: every score, sorted).
  """
  noises = sorted(curves)
  scores = list(scores) or sorted({s for by_loss in curves.values()
                                   for by_level in by_loss.values()
                                   for v in by_level.values() for s in v})
  fig = mpl_figure.Figure(figsize=(4.2 * len(scores), 3.6 * len(noises)), layout="constrained")
  axes = np.asarray(fig.subplots(len(noises), len(scores), squeeze=False))
  for row, noise_name in enumerate(noises):
    for ax, score in zip(axes[row], scores):
      for loss, by_level in curves[noise_name].items():
        levels = sorted(x for x in by_level if score in by_level[x])
        ax.errorbar(levels, [by_level[x][score][0] for x in levels],
                    [by_level[x][score][1] for x in levels], fmt="-o", capsize=3, label=loss)
      ax.set(xlabel=f"fraction of training objects with {noise_name}", ylabel=score,
             title=f"{noise_name}: {score}")
      ax.grid(alpha=0.3)
      ax.legend(fontsize=7)
  fig.savefig(path, dpi=110)
  return path


# ----------------------------------------------------------------------------
# Classification (§5.1): Figs. 3 and 4 (two moons) and Fig. 5 (CIFAR).
# ----------------------------------------------------------------------------


def plot_label_corruptions(path: str, examples, corruptions, title: str = "") -> str:
  """A grid of training images and their labels: original, then each corruption.

  Args:
    path: output file.
    examples: dicts with "image" ([H, W, 3] in [0, 1]) and "label" ([H, W];
      255 = void), e.g. segmentation examples of `jaxpu.data.synthetic`.
    corruptions: (title, fn) pairs, `fn(example) -> example` with the
      corrupted "label" (e.g. `jaxpu.data.noise.boundary_noise` bound).
    title: figure title.
  """
  import matplotlib  # pylint: disable=g-import-not-at-top
  cmap = matplotlib.colormaps["tab20"]
  palette = np.zeros((256, 3))
  palette[1:21] = cmap(np.arange(20))[:, :3]
  palette[15:17] = [(0.55, 0.0, 0.55), (0.0, 0.55, 0.55)]  # tab20's greys look like void
  palette[0], palette[255] = 0.97, 0.45  # background near white, void grey
  columns = [("original", None)] + list(corruptions)
  fig = mpl_figure.Figure(figsize=(1.9 * (len(columns) + 1), 1.9 * len(examples)))
  axes = fig.subplots(len(examples), len(columns) + 1, squeeze=False)
  for row, example in enumerate(examples):
    original = np.asarray(example["label"])
    axes[row, 0].imshow(np.asarray(example["image"]))
    for col, (name, fn) in enumerate(columns, start=1):
      label = original if fn is None else np.asarray(fn(example)["label"])
      axes[row, col].imshow(palette[label], interpolation="nearest")
      if fn is not None and np.any(label != original):  # the original outlines
        axes[row, col].contour(original % 255 > 0, levels=[0.5], colors="k", linewidths=0.6)
      if row == 0:
        axes[row, col].set_title(name, fontsize=8)
    if row == 0:
      axes[row, 0].set_title("image", fontsize=8)
  for ax in axes.ravel():
    ax.set_xticks([])
    ax.set_yticks([])
  if title:
    fig.suptitle(title, fontsize=9)
  fig.tight_layout()
  fig.savefig(path, dpi=130)
  return path


# ----------------------------------------------------------------------------
# Beyond the thesis (§6): the generalised sigmoid loss over a grid of α, β, γ.
# ----------------------------------------------------------------------------


def plot_heatmaps(path: str, panels, title: str = "") -> str:
  """Scores over a 2-D grid of hyperparameters, one heat map per panel.

  Each panel shows its values as colours and as numbers; the best (highest,
  NaN ignored) value of the panel is boxed. Every panel has its own colour
  scale (the panels show different scores).

  Args:
    path: output PNG.
    panels: rows of panels (a list of lists; rows may differ in length), each
      a dict with ``values`` (``[R, C]``, NaN where not measured),
      ``row_labels`` (R), ``col_labels`` (C), ``row_name``, ``col_name`` and
      ``title``.
    title: figure title.
  """
  nrows = len(panels)
  ncols = max(len(row) for row in panels)
  fig = mpl_figure.Figure(figsize=(3.4 * ncols, 3.0 * nrows + 0.6), layout="constrained")
  axes = np.asarray(fig.subplots(nrows, ncols, squeeze=False))
  for i, row in enumerate(panels):
    for j in range(ncols):
      ax = axes[i, j]
      if j >= len(row):
        ax.set_axis_off()
        continue
      panel = row[j]
      values = np.asarray(panel["values"], np.float64)
      finite = values[np.isfinite(values)]
      low, high = (finite.min(), finite.max()) if finite.size else (0., 1.)
      image = ax.imshow(values, cmap="viridis", vmin=low, vmax=max(high, low + 1e-9),
                        aspect="auto", interpolation="nearest")
      for (r, c), value in np.ndenumerate(values):
        if np.isfinite(value):
          dark = value < (low + high) / 2
          ax.text(c, r, f"{value:.3f}", ha="center", va="center", fontsize=8,
                  color="white" if dark else "black")
      if finite.size:
        r, c = np.unravel_index(np.nanargmax(values), values.shape)
        ax.add_patch(_rectangle((c - 0.5, r - 0.5), 1, 1, fill=False, edgecolor="red",
                                linewidth=2))
      ax.set_xticks(range(len(panel["col_labels"])), panel["col_labels"])
      ax.set_yticks(range(len(panel["row_labels"])), panel["row_labels"])
      ax.set(xlabel=panel["col_name"], ylabel=panel["row_name"])
      ax.set_title(panel["title"], fontsize=9)
      fig.colorbar(image, ax=ax, shrink=0.8)
  if title:
    fig.suptitle(title, fontsize=10)
  fig.savefig(path, dpi=110)
  return path


def _rectangle(*args, **kwargs):
  from matplotlib import patches  # pylint: disable=g-import-not-at-top
  return patches.Rectangle(*args, **kwargs)


def plot_recall_precision(path: str, panels, colour_label: str = "", title: str = "") -> str:
  """Recall against precision of every grid cell: the trade-off a loss' setting makes.

  Args:
    path: output PNG.
    panels: dicts, one panel each, with ``title``, ``xlabel``, ``ylabel``
      and per point ``x``, ``y`` (scores), ``colour`` (a number, shown on
      one colour scale per panel), ``group`` (a name per point; one marker
      shape per name) and ``highlight`` (bool; drawn as a large star).
    colour_label: what the colour shows.
    title: figure title.
  """
  markers = ("o", "s", "^", "D", "v", "P")
  n = len(panels)
  fig = mpl_figure.Figure(figsize=(5.2 * n, 4.6), layout="constrained")
  axes = np.atleast_1d(fig.subplots(1, n))
  for ax, panel in zip(axes, panels):
    x, y = np.asarray(panel["x"], np.float64), np.asarray(panel["y"], np.float64)
    colour = np.asarray(panel["colour"], np.float64)
    group = np.asarray(panel["group"], object)
    highlight = np.asarray(panel["highlight"], bool)
    low, high = (colour.min(), colour.max()) if colour.size else (0., 1.)
    scatter = None
    for k, name in enumerate(dict.fromkeys(group.tolist())):
      members = group == name
      scatter = ax.scatter(x[members], y[members], c=colour[members], cmap="plasma",
                           vmin=low, vmax=max(high, low + 1e-9), marker=markers[k % len(markers)],
                           edgecolors="k", linewidths=0.4, s=36, label=str(name))
      chosen = members & highlight
      if chosen.any():
        ax.scatter(x[chosen], y[chosen], marker="*", s=260, facecolors="none",
                   edgecolors="red", linewidths=1.4)
    if scatter is not None:
      fig.colorbar(scatter, ax=ax, label=colour_label, shrink=0.85)
    ax.set(xlabel=panel["xlabel"], ylabel=panel["ylabel"], title=panel["title"])
    ax.grid(alpha=0.3)
    legend = ax.legend(fontsize=8, title="rate", title_fontsize=8)
    for handle in getattr(legend, "legend_handles", None) or legend.legendHandles:
      handle.set_facecolor("0.75")  # the marker shape names the rate, not the colour
  if title:
    fig.suptitle(title, fontsize=10)
  fig.savefig(path, dpi=120)
  return path
