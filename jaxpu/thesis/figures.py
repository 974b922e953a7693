"""The thesis' figures (Figs. 2-7), drawn with matplotlib.

Figures are drawn on ``matplotlib.figure.Figure`` objects directly (no
``pyplot``), so nothing here touches the global backend or needs a display.
Figures of the experiments beyond the thesis are in `jaxpu.plots`.
"""

from typing import Dict, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np
from matplotlib import figure as mpl_figure

from jaxpu import losses

# Fig. 2's curves: name -> (loss function of (logits, labels), label). The
# weighted logistic uses the thesis' α = 1, β = 0.5.
FIG2_CURVES = {
    "logistic +": (losses.logistic, 1),
    "logistic -": (losses.logistic, 0),
    "weighted logistic - (α=1, β=0.5)": (
        lambda f, y: losses.weighted_logistic(f, y, 1., 0.5), 0),
    "sigmoid loss -": (losses.sigmoid_negative, 0),
}


def loss_curves(f: np.ndarray) -> Dict[str, Tuple[np.ndarray, np.ndarray]]:
  """Values and derivatives d loss / d f of Fig. 2's losses at the points f.

  Derivatives come from ``jax.vmap(jax.grad(...))`` of the library's own
  losses, evaluated per scalar logit.

  Returns:
    ``{name: (loss, derivative)}`` as float32 numpy arrays shaped like f.
  """
  f = jnp.asarray(f, dtype=jnp.float32)
  curves = {}
  for name, (loss_fn, label) in FIG2_CURVES.items():
    scalar_loss = lambda x, loss_fn=loss_fn, label=label: loss_fn(x, label)
    value = jax.vmap(scalar_loss)(f)
    derivative = jax.vmap(jax.grad(scalar_loss))(f)
    curves[name] = (np.asarray(value), np.asarray(derivative))
  return curves


def plot_loss_curves(path: str, f: Optional[np.ndarray] = None) -> str:
  """Draws Fig. 2 (losses left, derivatives w.r.t. f right) to ``path``.

  Args:
    path: output file; the format follows its extension (e.g. ``.png``).
    f: the model outputs to plot; default 401 points spanning [-5, 5].

  Returns:
    ``path``.
  """
  if f is None:
    f = np.linspace(-5., 5., 401)
  curves = loss_curves(f)
  styles = {"logistic +": ("tab:blue", "-"), "logistic -": ("tab:blue", "--"),
            "weighted logistic - (α=1, β=0.5)": ("tab:orange", "--"),
            "sigmoid loss -": ("tab:green", "--")}
  fig = mpl_figure.Figure(figsize=(11, 4.6), layout="constrained")
  loss_ax, grad_ax = fig.subplots(1, 2)
  for name, (value, derivative) in curves.items():
    color, linestyle = styles.get(name, (None, "-"))
    loss_ax.plot(f, value, color=color, linestyle=linestyle, label=name)
    grad_ax.plot(f, derivative, color=color, linestyle=linestyle, label=name)
  loss_ax.set(title="Loss", xlabel="f(x)", ylabel="loss", xlim=(f[0], f[-1]))
  grad_ax.set(title="Derivative w.r.t. f", xlabel="f(x)",
              ylabel="d loss / d f", xlim=(f[0], f[-1]))
  for ax in (loss_ax, grad_ax):
    ax.axhline(0., color="0.6", linewidth=0.8)
    ax.grid(alpha=0.3)
  fig.legend(*loss_ax.get_legend_handles_labels(), loc="outside lower center",
             ncols=len(curves))
  fig.savefig(path, dpi=120)
  return path


# ----------------------------------------------------------------------------
# Segmentation (§5.2-5.3): Fig. 6, Fig. 7 and the unsegmented-rate sweep.
# ----------------------------------------------------------------------------


def plot_segmentation_examples(path: str, images: np.ndarray, truth: np.ndarray,
                               predictions: Dict[str, np.ndarray],
                               title: str = "") -> str:
  """Fig. 6: test images, their true masks and each model's predicted masks.

  Args:
    path: output PNG.
    images: ``[N, H, W, 3]`` images in [0, 1].
    truth: ``[N, H, W]`` labels (0 background, 1 foreground, 255 void).
    predictions: column title -> ``[N, H, W]`` predicted foreground masks.
    title: figure title.
  """
  n = len(images)
  columns = 2 + len(predictions)
  fig = mpl_figure.Figure(figsize=(1.9 * columns, 1.9 * n + 0.6), layout="constrained")
  axes = np.asarray(fig.subplots(n, columns, squeeze=False))
  shown_truth = np.where(truth == 255, 0.5, truth.astype(np.float32))
  for i in range(n):
    panels = [("image", np.clip(images[i], 0, 1), None), ("truth", shown_truth[i], "gray")]
    panels += [(name, pred[i].astype(np.float32), "gray") for name, pred in predictions.items()]
    for ax, (name, panel, cmap) in zip(axes[i], panels):
      ax.imshow(panel, cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
      ax.set_xticks([])
      ax.set_yticks([])
      if i == 0:
        ax.set_title(name, fontsize=9)
  if title:
    fig.suptitle(title, fontsize=10)
  fig.savefig(path, dpi=120)
  return path


def plot_categorisations(path: str, meaningful: Dict[int, Dict[str, Tuple[float, float]]],
                         random: Dict[int, Dict[str, Tuple[float, float]]]) -> str:
  """Fig. 7: fine-tuning score vs number of pre-training categories.

  Args:
    path: output PNG.
    meaningful: categories (0 = random init, 1 = binary, 4 = meaningful
      super-categories, 15 = true labels) -> {score name: (mean, std)}; drawn
      as a line with error bars.
    random: categories of a random categorisation -> {score name: (mean, std)};
      drawn as isolated error bars.
  """
  names = sorted({s for d in (meaningful, random) for v in d.values() for s in v})
  fig = mpl_figure.Figure(figsize=(5 * len(names), 4), layout="constrained")
  axes = np.atleast_1d(fig.subplots(1, len(names)))
  for ax, name in zip(axes, names):
    for points, style, label in ((meaningful, "-o", "meaningful"), (random, "s", "random (RC)")):
      ks = sorted(k for k in points if name in points[k])
      if ks:
        ax.errorbar(ks, [points[k][name][0] for k in ks], [points[k][name][1] for k in ks],
                    fmt=style, capsize=4, label=label)
    ax.set(xlabel="number of pre-training categories", ylabel=name, title=name)
    ax.grid(alpha=0.3)
    ax.legend()
  fig.savefig(path, dpi=120)
  return path


def pointwise_loss_and_derivative(loss_fn, logits: np.ndarray, labels: np.ndarray
                                  ) -> Tuple[np.ndarray, np.ndarray]:
  """Per-example loss and |d loss / d f| of a binary elementwise loss.

  Args:
    loss_fn: ``(logits, labels) -> per-element loss`` (e.g. a
      ``jaxpu.losses`` loss with its arguments bound).
    logits: ``[N]`` model outputs f.
    labels: ``[N]`` observed labels in {0, 1}.

  Returns:
    (loss, |derivative|), float32 ``[N]``; the derivative of each example's
    loss with respect to its own output, from ``jax.grad`` of the summed
    loss (the losses are elementwise).
  """
  logits = jnp.asarray(logits, jnp.float32)
  labels = jnp.asarray(labels)
  value = loss_fn(logits, labels)
  derivative = jax.grad(lambda f: jnp.sum(loss_fn(f, labels)))(logits)
  return np.asarray(value), np.abs(np.asarray(derivative))


def per_class_normalised(values: np.ndarray, labels: np.ndarray) -> np.ndarray:
  """``values / max(values of the same label)``: Figs. 3 and 4's marker sizes.

  Each label's values are scaled into [0, 1] separately (a class whose values
  are all 0 stays 0), so both classes use the whole range of marker sizes.
  """
  values = np.asarray(values, np.float64)
  labels = np.asarray(labels)
  out = np.zeros_like(values)
  for label in np.unique(labels):
    members = labels == label
    top = values[members].max()
    if top > 0:
      out[members] = values[members] / top
  return out


def plot_decision_regions(path: str, panels, title: str = "",
                          size_label: str = "per-class normalised loss") -> str:
  """Figs. 3 and 4: decision regions of binary classifiers with their training points.

  Background: the predicted probability of the positive class, red for
  negative, blue for positive, white at the decision boundary (0.5).
  Points: red circles are labelled positive, blue squares labelled negative
  (the thesis' markers), their area proportional to ``sizes``.

  Args:
    path: output PNG.
    panels: a sequence of dicts, one panel each, with keys ``title``;
      ``grid_x``, ``grid_y`` (``[H, W]`` coordinates) and ``probability``
      (``[H, W]``, σ(f) on the grid); ``points`` (``[N, 2]``), ``labels``
      (``[N]``, observed 0/1) and ``sizes`` (``[N]`` in [0, 1]).
    title: figure title.
    size_label: what the marker sizes show (for the caption line).
  """
  n = len(panels)
  fig = mpl_figure.Figure(figsize=(4.2 * n, 4.4), layout="constrained")
  axes = np.atleast_1d(fig.subplots(1, n))
  for ax, panel in zip(axes, panels):
    ax.contourf(panel["grid_x"], panel["grid_y"], panel["probability"],
                levels=np.linspace(0., 1., 21), cmap="RdBu", vmin=0., vmax=1.)
    ax.contour(panel["grid_x"], panel["grid_y"], panel["probability"], levels=[0.5],
               colors="k", linewidths=0.8)
    points, labels = np.asarray(panel["points"]), np.asarray(panel["labels"])
    sizes = 2. + 60. * np.asarray(panel["sizes"])
    for label, marker, color, name in ((0, "s", "tab:blue", "labelled negative"),
                                       (1, "o", "tab:red", "labelled positive")):
      members = labels == label
      ax.scatter(points[members, 0], points[members, 1], s=sizes[members], marker=marker,
                 c=color, edgecolors="k", linewidths=0.3, label=name)
    ax.set_title(panel["title"], fontsize=10)
    ax.set_xticks([])
    ax.set_yticks([])
  axes[0].legend(loc="lower left", fontsize=8)
  fig.suptitle((title + "\n" if title else "") + f"marker size: {size_label}; background: "
               "P(positive) (red 0, white 0.5, blue 1)", fontsize=10)
  fig.savefig(path, dpi=120)
  return path


def plot_f1_vs_labelled_fraction(path: str,
                                 curves: Dict[str, Dict[float, Tuple[float, float]]],
                                 ylabel: str = "mean F1") -> str:
  """Fig. 5: test mean F1 against the fraction of relevant examples labelled.

  Args:
    path: output PNG.
    curves: loss name -> labelled fraction -> (mean, std) over repeats.
    ylabel: the score shown.
  """
  fig = mpl_figure.Figure(figsize=(5.5, 4), layout="constrained")
  ax = fig.subplots()
  for name, by_fraction in curves.items():
    fractions = sorted(by_fraction)
    ax.errorbar(fractions, [by_fraction[f][0] for f in fractions],
                [by_fraction[f][1] for f in fractions], fmt="-o", capsize=3, label=name)
  ax.set(xlabel="fraction of relevant training examples labelled", ylabel=ylabel,
         title="Classification with varying labelled fraction")
  ax.grid(alpha=0.3)
  ax.legend()
  fig.savefig(path, dpi=120)
  return path
