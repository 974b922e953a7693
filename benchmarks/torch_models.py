"""PyTorch counterparts of the jaxpu models, for the train-step comparison only.

Same layers, shapes, parameter counts, loss and optimizer as `jaxpu.models`
and `jaxpu.train` (NCHW tensors as PyTorch wants them; `channels_last` is a
memory format, not a different model). PyTorch is an optional dependency:
this module imports it at call time, and `benchmarks/train_step.py` skips the
comparison when it is missing.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

TORCH_MODES = ("eager", "channels_last", "compile")


def _channels(base: int, width: float, even: bool = False) -> int:
  if even:  # fcn_alexnet's grouped layers
    return max(2, 2 * int(round(base * width / 2)))
  return max(1, int(round(base * width)))


def _glorot(module):
  import torch  # pylint: disable=g-import-not-at-top
  for m in module.modules():
    if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
      torch.nn.init.xavier_uniform_(m.weight)
      if m.bias is not None:
        torch.nn.init.zeros_(m.bias)
  return module


def mlp(num_classes: int, hidden=(6, 6), in_features: int = 2):
  """§5.1.1's multilayer perceptron (ReLU)."""
  from torch import nn  # pylint: disable=g-import-not-at-top
  layers, width = [], in_features
  for units in hidden:
    layers += [nn.Linear(width, units), nn.ReLU()]
    width = units
  layers.append(nn.Linear(width, num_classes))
  return _glorot(nn.Sequential(*layers))


def cifar_cnn(num_classes: int = 11, conv_dropout: float = 0.2, fc_dropout: float = 0.5):
  """Table 6: 3×3 convs 32-32/64-64/128-128, LeakyReLU(0.2), pool + dropout, FC 512."""
  from torch import nn  # pylint: disable=g-import-not-at-top
  layers, cin = [], 3
  for features in (32, 64, 128):
    for _ in range(2):
      layers += [nn.Conv2d(cin, features, 3, padding=1), nn.LeakyReLU(0.2)]
      cin = features
    layers += [nn.MaxPool2d(2), nn.Dropout(conv_dropout)]
  layers += [nn.Flatten(), nn.Linear(4 * 4 * 128, 512), nn.ReLU(), nn.Dropout(fc_dropout),
             nn.Linear(512, num_classes)]
  return _glorot(nn.Sequential(*layers))


def fcn_small(num_classes: int, width: float = 1.0, dropout_rate: float = 0.0):
  """`jaxpu.models.fcn_small`: three conv stages (stride 8), 3×3 and 1×1 128c, score, resize."""
  import torch  # pylint: disable=g-import-not-at-top
  from torch import nn  # pylint: disable=g-import-not-at-top

  class FCNSmall(nn.Module):

    def __init__(self):
      super().__init__()
      layers, cin = [], 3
      for features in (16, 32, 64):
        c = _channels(features, width)
        layers += [nn.Conv2d(cin, c, 3, padding=1), nn.ReLU(),
                   nn.Conv2d(c, c, 3, padding=1), nn.ReLU(),
                   nn.MaxPool2d(2, ceil_mode=True)]
        cin = c
      c = _channels(128, width)
      layers += [nn.Conv2d(cin, c, 3, padding=1), nn.ReLU(), nn.Dropout(dropout_rate),
                 nn.Conv2d(c, c, 1), nn.ReLU(), nn.Dropout(dropout_rate),
                 nn.Conv2d(c, num_classes, 1)]
      self.net = nn.Sequential(*layers)

    def forward(self, x):
      score = self.net(x)
      return torch.nn.functional.interpolate(score, size=x.shape[2:], mode="bilinear",
                                             align_corners=False)

  return _glorot(FCNSmall())


def fcn_alexnet(num_classes: int, width: float = 1.0, dropout_rate: float = 0.5):
  """FCN-AlexNet (voc-fcn-alexnet): Caffe geometry, fixed bilinear upscore, crop 18."""
  import torch  # pylint: disable=g-import-not-at-top
  from torch import nn  # pylint: disable=g-import-not-at-top

  def c(base):
    return _channels(base, width, even=True)

  class FCNAlexNet(nn.Module):

    def __init__(self):
      super().__init__()
      pool = lambda: nn.MaxPool2d(3, 2, ceil_mode=True)
      lrn = lambda: nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=1.0)
      self.encoder = nn.Sequential(
          nn.Conv2d(3, c(96), 11, stride=4, padding=100), nn.ReLU(), pool(), lrn(),
          nn.Conv2d(c(96), c(256), 5, padding=2, groups=2), nn.ReLU(), pool(), lrn(),
          nn.Conv2d(c(256), c(384), 3, padding=1), nn.ReLU(),
          nn.Conv2d(c(384), c(384), 3, padding=1, groups=2), nn.ReLU(),
          nn.Conv2d(c(384), c(256), 3, padding=1, groups=2), nn.ReLU(), pool(),
          nn.Conv2d(c(256), c(4096), 6), nn.ReLU(), nn.Dropout(dropout_rate),
          nn.Conv2d(c(4096), c(4096), 1), nn.ReLU(), nn.Dropout(dropout_rate))
      self.score = nn.Conv2d(c(4096), num_classes, 1)
      self.upscore = nn.ConvTranspose2d(num_classes, num_classes, 63, stride=32,
                                        groups=num_classes, bias=False)
      factor, center = 32, 31.0
      k1 = 1 - np.abs(np.arange(63) - center) / factor
      kernel = torch.tensor(np.outer(k1, k1), dtype=torch.float32)
      with torch.no_grad():
        self.upscore.weight.copy_(kernel.expand(num_classes, 1, 63, 63))
      self.upscore.weight.requires_grad_(False)

    def forward(self, x):
      h, w = x.shape[2:]
      up = self.upscore(self.score(self.encoder(x)))
      return up[:, :, 18:18 + h, 18:18 + w]

  model = FCNAlexNet()
  _glorot(model.encoder)
  _glorot(model.score)
  return model


BUILDERS = {"mlp": mlp, "cifar_cnn": cifar_cnn, "fcn_small": fcn_small,
            "fcn_alexnet": fcn_alexnet}


def parameter_count(model) -> int:
  return sum(p.numel() for p in model.parameters() if p.requires_grad)


def make_train_step(name: str, num_classes: int, batch: dict, mode: str = "eager",
                    learning_rate: float = 1e-4, **options) -> Callable[[int], float]:
  """`run(n)`: n Adam steps of model `name` on `batch` (NumPy, jaxpu layout); returns the loss.

  The loss matches `jaxpu.train.make_loss_fn`: softmax cross-entropy over the
  valid (label != 255) elements for `num_classes >= 2`, the logistic loss
  for `num_classes == 1`. Images arrive NHWC and are transposed once to NCHW.

  Args:
    mode: "eager" (NCHW), "channels_last" (NCHW tensors in NHWC memory),
      "compile" (`torch.compile` of the model, channels-last for conv nets).
  """
  import torch  # pylint: disable=g-import-not-at-top
  if mode not in TORCH_MODES:
    raise ValueError(f"mode must be one of {TORCH_MODES}, got {mode!r}.")
  torch.manual_seed(0)
  model = BUILDERS[name](num_classes, **options)
  image = torch.from_numpy(np.ascontiguousarray(batch["image"]))
  label = torch.from_numpy(np.asarray(batch["label"]).astype(np.int64))
  convolutional = image.ndim == 4
  if convolutional:
    image = image.permute(0, 3, 1, 2).contiguous()
    if mode in ("channels_last", "compile"):
      model = model.to(memory_format=torch.channels_last)
      image = image.contiguous(memory_format=torch.channels_last)
  forward = torch.compile(model) if mode == "compile" else model
  optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad],
                               lr=learning_rate)
  if num_classes == 1:
    valid = (label != 255)
    target = torch.where(valid, label, 0).float()

    def loss_fn(logits):
      per_element = torch.nn.functional.binary_cross_entropy_with_logits(
          logits[:, 0], target, reduction="none")  # the single logit (channel) axis
      return (per_element * valid).sum() / valid.sum().clamp(min=1)
  else:
    def loss_fn(logits):
      return torch.nn.functional.cross_entropy(logits, label, ignore_index=255)

  model.train()

  def step():
    optimizer.zero_grad(set_to_none=True)
    loss = loss_fn(forward(image))
    loss.backward()
    optimizer.step()
    return loss

  def run(n: int) -> float:
    loss = None
    for _ in range(n):
      loss = step()
    return float(loss.item())

  return run
