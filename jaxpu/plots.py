"""The thesis' figures, drawn with matplotlib.

Figures are drawn on ``matplotlib.figure.Figure`` objects directly (no
``pyplot``), so nothing here touches the global backend or needs a display.
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
