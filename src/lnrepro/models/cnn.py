"""The convolutional comparison of Sec. 6.7: conv-conv-pool-conv-conv-pool-fc-logits.

The paper gives no architecture, only the claim: LN speeds training up over no normalization,
but BN beats both in convolutional nets. This small VGG-style net makes the claim measurable.
"""

from __future__ import annotations

import torch
from torch import nn

from lnrepro.errors import ConfigError
from lnrepro.nn.norm import Norm, as_norm


class ConvNet(nn.Module):
    """Two blocks of [conv3x3 -> norm -> ReLU] x 2 -> max-pool 2, then fc -> norm -> ReLU ->
    linear logits. Every conv and the hidden fc layer take the norm (`norm.conv_layer`,
    `norm.layer`); the logits take none (as the MLP's LN, Sec. 6.6).

    Conv LN: Eq. 3 applied to the whole conv layer: per case, mean and std over all C*H*W hidden
    units of the layer, per-channel gain and bias (`lnrepro.nn.norm.LayerNorm` on (N, C, H, W)).
    This is the paper's definition (all hidden units of a layer share the statistics); it is the
    variant whose assumption, "similar contributions" of all units, the paper says fails for
    conv layers (units near the borders are rarely on). Conv BN: per channel, over the batch and
    all positions (standard BatchNorm2d). `norm=rms`: RMSNorm where LN goes, the mean square
    over all C*H*W units of the case, per-channel gain and bias. `norm=wn`: weight norm
    (w = g v / ||v||, one g per output channel / unit, data-free init) on the layers BN
    normalises (every conv and the hidden fc), each keeping its own bias.

    Args:
        in_channels, image_size: of the input images (the data supplies them).
        channels: output channels of the two blocks (each block has two convs).
        hidden: width of the fc layer.
    """

    def __init__(
        self,
        in_channels: int,
        image_size: int,
        channels: tuple[int, int] = (32, 64),
        hidden: int = 256,
        num_classes: int = 10,
        norm: Norm | str = "ln",
    ):
        super().__init__()
        if image_size % 4:
            raise ConfigError(
                f"model.image_size must be divisible by 4 (two 2x2 pools), got {image_size}"
            )
        norm = as_norm(norm)
        self.in_channels, self.image_size = in_channels, image_size
        layers: list[nn.Module] = []
        prev = in_channels
        for c in channels:
            for _ in range(2):
                conv = nn.Conv2d(prev, c, 3, padding=1, bias=norm.keeps_bias)
                layers += [norm.wrap_weight(conv), norm.conv_layer(c), nn.ReLU()]
                prev = c
            layers.append(nn.MaxPool2d(2))
        side = image_size // 4
        fc = nn.Linear(prev * side * side, hidden, bias=norm.keeps_bias)
        layers += [
            nn.Flatten(),
            norm.wrap_weight(fc),
            norm.layer(hidden),
            nn.ReLU(),
            nn.Linear(hidden, num_classes),
        ]
        self.net = nn.Sequential(*(m for m in layers if not isinstance(m, nn.Identity)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, classes)
        if x.shape[1:] != (self.in_channels, self.image_size, self.image_size):
            raise ConfigError(
                f"the model expects images of shape ({self.in_channels}, {self.image_size}, "
                f"{self.image_size}), got {tuple(x.shape[1:])}"
            )
        return self.net(x)
