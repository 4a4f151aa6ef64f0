"""The models the course trains (chapters 1–4).

- :class:`Net` — the source document's network, ``10 → 20 → 1`` with a ReLU.
- :class:`MLP` — a LeNet-300-100-style multilayer perceptron (LeCun et al. 1998; the model
  Han et al. 2015 prune), sized for 8×8 digits by default.
- :class:`SmallCNN` — a two-convolution network for small images.

``MLP`` and ``SmallCNN`` are ``nn.Sequential`` subclasses so that the structure of a model
is plain to see and structured pruning (chapter 3.2) can rebuild them layer by layer.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from course_lib import _checks


class Net(nn.Module):
    """The document's model (section 4.1): ``Linear(10, 20) → ReLU → Linear(20, 1)``."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(10, 20)
        self.fc2 = nn.Linear(20, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.fc1(x))
        return self.fc2(x)


class MLP(nn.Sequential):
    """``Flatten → [Linear → ReLU] × len(hidden) → Linear``.

    The default ``hidden=(300, 100)`` is LeNet-300-100; ``in_features=64`` fits 8×8 digits.
    """

    def __init__(
        self, in_features: int = 64, hidden: Sequence[int] = (300, 100), num_classes: int = 10
    ) -> None:
        _checks.positive_int("in_features", in_features)
        _checks.positive_int("num_classes", num_classes)
        hidden = _checks.ints("hidden", hidden, nonempty=False)
        layers: list[nn.Module] = [nn.Flatten()]
        width_in = in_features
        for width in hidden:
            layers += [nn.Linear(width_in, width), nn.ReLU()]
            width_in = width
        layers.append(nn.Linear(width_in, num_classes))
        super().__init__(*layers)
        self.in_features, self.hidden, self.num_classes = in_features, hidden, num_classes


class SmallCNN(nn.Sequential):
    """``[Conv3×3 → ReLU → MaxPool2] × 2 → Flatten → Linear``, for ``image_size``² inputs.

    With the defaults it takes ``(N, 1, 8, 8)`` digits: 8×8 → 4×4 → 2×2 feature maps.
    ``hidden=h`` puts a hidden layer ``Linear → ReLU`` of width ``h`` before the classifier
    (chapter 3.4.1 factorizes it).
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 10,
        channels: Sequence[int] = (16, 32),
        image_size: int = 8,
        hidden: int | None = None,
    ) -> None:
        _checks.positive_int("in_channels", in_channels)
        _checks.positive_int("hidden", hidden, allow_none=True)
        _checks.positive_int("num_classes", num_classes)
        _checks.positive_int("image_size", image_size)
        channels = _checks.ints("channels", channels)
        if len(channels) != 2:
            raise ValueError(f"channels must hold exactly 2 ints >= 1, got {channels!r}")
        c1, c2 = channels
        if image_size % 4:
            raise ValueError(f"image_size must be a multiple of 4, got {image_size}")
        side = image_size // 4
        super().__init__(
            nn.Conv2d(in_channels, c1, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            *([nn.Linear(c2 * side * side, hidden), nn.ReLU()] if hidden else []),
            nn.Linear(hidden or c2 * side * side, num_classes),
        )
