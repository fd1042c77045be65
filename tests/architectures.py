"""Reference architectures with published parameter counts, written with plain `torch.nn`.

The image models mirror torchvision's definitions (module names, hyperparameters, forward
order), so the counts match torchvision's model cards exactly without depending on
torchvision. Weights keep PyTorch's default initialisation: the tests only look at shapes,
counts and multiply-adds, and every builder works under `with torch.device("meta"):`.
"""

from __future__ import annotations

from collections import OrderedDict
from functools import partial
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

# The published counts live in a torch-free module that the benchmark harness reads without
# importing torch; the tests import them from here.
from published import PUBLISHED_GMACS as PUBLISHED_GMACS
from published import PUBLISHED_PARAMS as PUBLISHED_PARAMS
from torch import nn

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence


# --------------------------------------------------------------------------------------------
# Shared building blocks
# --------------------------------------------------------------------------------------------


def _make_divisible(v: float, divisor: int, min_value: int | None = None) -> int:
    """Round a channel count to a multiple of `divisor`, never dropping more than 10%."""
    if min_value is None:
        min_value = divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


class Conv2dNormActivation(nn.Sequential):
    """Convolution, optional normalisation and optional activation, as in torchvision.ops."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        groups: int = 1,
        norm_layer: Callable[[int], nn.Module] | None = nn.BatchNorm2d,
        activation_layer: Callable[..., nn.Module] | None = nn.ReLU,
        bias: bool | None = None,
    ) -> None:
        padding = (kernel_size - 1) // 2
        if bias is None:
            # A bias in front of a normalisation layer is cancelled by it, so it is wasted.
            bias = norm_layer is None
        layers: list[nn.Module] = [
            nn.Conv2d(
                in_channels, out_channels, kernel_size, stride, padding, groups=groups, bias=bias
            )
        ]
        if norm_layer is not None:
            layers.append(norm_layer(out_channels))
        if activation_layer is not None:
            layers.append(activation_layer(inplace=True))
        super().__init__(*layers)
        self.out_channels = out_channels


class SqueezeExcitation(nn.Module):
    """Channel attention from "Squeeze-and-Excitation Networks", as in torchvision.ops."""

    def __init__(
        self,
        input_channels: int,
        squeeze_channels: int,
        activation: Callable[..., nn.Module] = nn.ReLU,
        scale_activation: Callable[..., nn.Module] = nn.Sigmoid,
    ) -> None:
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(input_channels, squeeze_channels, 1)
        self.fc2 = nn.Conv2d(squeeze_channels, input_channels, 1)
        self.activation = activation()
        self.scale_activation = scale_activation()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Rescale each channel of `x` by a gate computed from its global average."""
        scale: torch.Tensor = self.avgpool(x)
        scale = self.fc2(self.activation(self.fc1(scale)))
        scale = self.scale_activation(scale)
        return scale * x


class StochasticDepth(nn.Module):
    """Randomly drop a residual branch per sample while training; identity in eval mode."""

    def __init__(self, p: float, mode: str = "row") -> None:
        super().__init__()
        if mode not in ("row", "batch"):
            raise ValueError(f"mode must be 'row' or 'batch', got {mode!r}")
        self.p = p
        self.mode = mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Zero a random subset of rows (or the whole batch) and rescale the survivors."""
        if not self.training or self.p == 0.0:
            return x
        survival_rate = 1.0 - self.p
        # "row" draws one decision per sample, "batch" one for the whole batch.
        shape = [x.shape[0]] + [1] * (x.ndim - 1) if self.mode == "row" else [1] * x.ndim
        noise = torch.empty(shape, dtype=x.dtype, device=x.device).bernoulli_(survival_rate)
        if survival_rate > 0.0:
            noise.div_(survival_rate)
        return x * noise


# --------------------------------------------------------------------------------------------
# ResNet
# --------------------------------------------------------------------------------------------


def _conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    """3x3 convolution with padding and no bias (a BatchNorm always follows it)."""
    return nn.Conv2d(in_planes, out_planes, 3, stride=stride, padding=1, bias=False)


def _conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    """1x1 convolution with no bias (a BatchNorm always follows it)."""
    return nn.Conv2d(in_planes, out_planes, 1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a shortcut: the ResNet-18/34 block."""

    expansion: int = 1

    def __init__(
        self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None
    ) -> None:
        super().__init__()
        self.conv1 = _conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Residual branch plus (possibly projected) shortcut, then ReLU."""
        identity = x
        out: torch.Tensor = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        return self.relu(out)  # type: ignore[no-any-return]


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3, 1x1 expand: the ResNet-50+ block.

    The stride sits on the 3x3 convolution ("ResNet v1.5"), which is what torchvision and its
    published 4.089 GMACs use; the original paper put it on the first 1x1.
    """

    expansion: int = 4

    def __init__(
        self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None
    ) -> None:
        super().__init__()
        width = planes
        self.conv1 = _conv1x1(inplanes, width)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = _conv3x3(width, width, stride)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = _conv1x1(width, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Residual branch plus (possibly projected) shortcut, then ReLU."""
        identity = x
        out: torch.Tensor = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        return self.relu(out)  # type: ignore[no-any-return]


class ResNet(nn.Module):
    """ResNet from "Deep Residual Learning for Image Recognition", torchvision layout."""

    def __init__(
        self,
        block: type[BasicBlock | Bottleneck],
        layers: Sequence[int],
        num_classes: int = 1000,
    ) -> None:
        super().__init__()
        self.inplanes = 64
        self.conv1 = nn.Conv2d(3, self.inplanes, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(self.inplanes)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, 64, layers[0])
        self.layer2 = self._make_layer(block, 128, layers[1], stride=2)
        self.layer3 = self._make_layer(block, 256, layers[2], stride=2)
        self.layer4 = self._make_layer(block, 512, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512 * block.expansion, num_classes)

    def _make_layer(
        self, block: type[BasicBlock | Bottleneck], planes: int, blocks: int, stride: int = 1
    ) -> nn.Sequential:
        """One stage; only its first block changes resolution or width."""
        downsample: nn.Module | None = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                _conv1x1(self.inplanes, planes * block.expansion, stride),
                nn.BatchNorm2d(planes * block.expansion),
            )
        layers: list[nn.Module] = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * block.expansion
        layers.extend(block(self.inplanes, planes) for _ in range(1, blocks))
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of shape (N, num_classes)."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = torch.flatten(self.avgpool(x), 1)
        return self.fc(x)  # type: ignore[no-any-return]


def resnet18(num_classes: int = 1000) -> nn.Module:
    """ResNet-18: 11,689,512 parameters at 1000 classes."""
    return ResNet(BasicBlock, [2, 2, 2, 2], num_classes=num_classes)


def resnet50(num_classes: int = 1000) -> nn.Module:
    """ResNet-50 (v1.5): 25,557,032 parameters at 1000 classes."""
    return ResNet(Bottleneck, [3, 4, 6, 3], num_classes=num_classes)


# --------------------------------------------------------------------------------------------
# VGG
# --------------------------------------------------------------------------------------------

# Configuration "D" of the VGG paper; "M" is a 2x2 max-pool.
# fmt: off
_VGG16_CFG: list[int | str] = [
    64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M",
]
# fmt: on


class VGG(nn.Module):
    """VGG from "Very Deep Convolutional Networks", torchvision layout (no BatchNorm)."""

    def __init__(self, features: nn.Module, num_classes: int = 1000, dropout: float = 0.5) -> None:
        super().__init__()
        self.features = features
        # Pooling to 7x7 keeps the 25088-wide classifier valid for any input size.
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(
            nn.Linear(512 * 7 * 7, 4096),
            nn.ReLU(True),
            nn.Dropout(p=dropout),
            nn.Linear(4096, 4096),
            nn.ReLU(True),
            nn.Dropout(p=dropout),
            nn.Linear(4096, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of shape (N, num_classes)."""
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))  # type: ignore[no-any-return]


def _vgg_features(cfg: Sequence[int | str]) -> nn.Sequential:
    """Flat Sequential of 3x3 conv + ReLU and max-pools, indexed like torchvision's."""
    layers: list[nn.Module] = []
    in_channels = 3
    for v in cfg:
        if isinstance(v, str):
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            layers += [nn.Conv2d(in_channels, v, kernel_size=3, padding=1), nn.ReLU(inplace=True)]
            in_channels = v
    return nn.Sequential(*layers)


def vgg16(num_classes: int = 1000) -> nn.Module:
    """VGG-16 (configuration D): 138,357,544 parameters at 1000 classes."""
    return VGG(_vgg_features(_VGG16_CFG), num_classes=num_classes)


# --------------------------------------------------------------------------------------------
# MobileNetV2
# --------------------------------------------------------------------------------------------


class InvertedResidual(nn.Module):
    """Expand, depthwise 3x3, linear projection: the MobileNetV2 block."""

    def __init__(self, inp: int, oup: int, stride: int, expand_ratio: int) -> None:
        super().__init__()
        self.stride = stride
        hidden_dim = round(inp * expand_ratio)
        self.use_res_connect = stride == 1 and inp == oup
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(
                Conv2dNormActivation(inp, hidden_dim, kernel_size=1, activation_layer=nn.ReLU6)
            )
        layers += [
            Conv2dNormActivation(
                hidden_dim,
                hidden_dim,
                stride=stride,
                groups=hidden_dim,
                activation_layer=nn.ReLU6,
            ),
            # No activation after the projection: ReLU would destroy information in the
            # low-dimensional bottleneck (the "linear bottleneck" of the paper).
            nn.Conv2d(hidden_dim, oup, 1, 1, 0, bias=False),
            nn.BatchNorm2d(oup),
        ]
        self.conv = nn.Sequential(*layers)
        self.out_channels = oup

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Block output, with the shortcut when shapes allow it."""
        out: torch.Tensor = self.conv(x)
        return x + out if self.use_res_connect else out


class MobileNetV2(nn.Module):
    """MobileNetV2 from "Inverted Residuals and Linear Bottlenecks", torchvision layout."""

    def __init__(
        self, num_classes: int = 1000, width_mult: float = 1.0, dropout: float = 0.2
    ) -> None:
        super().__init__()
        input_channel = _make_divisible(32 * width_mult, 8)
        # The last stage never shrinks below 1280 channels, even for width_mult < 1.
        self.last_channel = _make_divisible(1280 * max(1.0, width_mult), 8)
        # t (expansion), c (channels), n (repeats), s (stride of the first repeat)
        setting = [
            [1, 16, 1, 1],
            [6, 24, 2, 2],
            [6, 32, 3, 2],
            [6, 64, 4, 2],
            [6, 96, 3, 1],
            [6, 160, 3, 2],
            [6, 320, 1, 1],
        ]
        features: list[nn.Module] = [
            Conv2dNormActivation(3, input_channel, stride=2, activation_layer=nn.ReLU6)
        ]
        for t, c, n, s in setting:
            output_channel = _make_divisible(c * width_mult, 8)
            for i in range(n):
                stride = s if i == 0 else 1
                features.append(InvertedResidual(input_channel, output_channel, stride, t))
                input_channel = output_channel
        features.append(
            Conv2dNormActivation(
                input_channel, self.last_channel, kernel_size=1, activation_layer=nn.ReLU6
            )
        )
        self.features = nn.Sequential(*features)
        self.classifier = nn.Sequential(
            nn.Dropout(p=dropout),
            nn.Linear(self.last_channel, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of shape (N, num_classes)."""
        x = self.features(x)
        x = F.adaptive_avg_pool2d(x, (1, 1))
        return self.classifier(torch.flatten(x, 1))  # type: ignore[no-any-return]


def mobilenet_v2(num_classes: int = 1000) -> nn.Module:
    """MobileNetV2 (width 1.0): 3,504,872 parameters at 1000 classes."""
    return MobileNetV2(num_classes=num_classes)


# --------------------------------------------------------------------------------------------
# EfficientNet
# --------------------------------------------------------------------------------------------


class MBConv(nn.Module):
    """Mobile inverted bottleneck with squeeze-excitation and SiLU (EfficientNet-B0..B7)."""

    def __init__(
        self,
        expand_ratio: int,
        kernel: int,
        stride: int,
        input_channels: int,
        out_channels: int,
        stochastic_depth_prob: float,
        norm_layer: Callable[[int], nn.Module],
    ) -> None:
        super().__init__()
        self.use_res_connect = stride == 1 and input_channels == out_channels
        layers: list[nn.Module] = []
        expanded_channels = _make_divisible(input_channels * expand_ratio, 8)
        if expanded_channels != input_channels:
            layers.append(
                Conv2dNormActivation(
                    input_channels,
                    expanded_channels,
                    kernel_size=1,
                    norm_layer=norm_layer,
                    activation_layer=nn.SiLU,
                )
            )
        layers.append(
            Conv2dNormActivation(
                expanded_channels,
                expanded_channels,
                kernel_size=kernel,
                stride=stride,
                groups=expanded_channels,
                norm_layer=norm_layer,
                activation_layer=nn.SiLU,
            )
        )
        # The squeeze width follows the block's input, not its expanded width.
        squeeze_channels = max(1, input_channels // 4)
        layers.append(
            SqueezeExcitation(
                expanded_channels, squeeze_channels, activation=partial(nn.SiLU, inplace=True)
            )
        )
        layers.append(
            Conv2dNormActivation(
                expanded_channels,
                out_channels,
                kernel_size=1,
                norm_layer=norm_layer,
                activation_layer=None,
            )
        )
        self.block = nn.Sequential(*layers)
        self.stochastic_depth = StochasticDepth(stochastic_depth_prob, "row")
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Block output, with a stochastically dropped residual when shapes allow it."""
        result: torch.Tensor = self.block(x)
        if self.use_res_connect:
            result = self.stochastic_depth(result)
            result += x
        return result


class EfficientNet(nn.Module):
    """EfficientNet from "Rethinking Model Scaling for CNNs", torchvision layout."""

    def __init__(
        self,
        setting: Sequence[tuple[int, int, int, int, int, int]],
        dropout: float,
        stochastic_depth_prob: float = 0.2,
        num_classes: int = 1000,
        last_channel: int | None = None,
    ) -> None:
        super().__init__()
        norm_layer: Callable[[int], nn.Module] = nn.BatchNorm2d
        first_out = setting[0][3]
        layers: list[nn.Module] = [
            Conv2dNormActivation(
                3,
                first_out,
                kernel_size=3,
                stride=2,
                norm_layer=norm_layer,
                activation_layer=nn.SiLU,
            )
        ]
        total_blocks = sum(cfg[5] for cfg in setting)
        block_id = 0
        for expand_ratio, kernel, stride, in_ch, out_ch, repeats in setting:
            stage: list[nn.Module] = []
            for i in range(repeats):
                # Drop probability grows linearly with depth, as in the paper.
                sd_prob = stochastic_depth_prob * block_id / total_blocks
                stage.append(
                    MBConv(
                        expand_ratio,
                        kernel,
                        stride if i == 0 else 1,
                        in_ch if i == 0 else out_ch,
                        out_ch,
                        sd_prob,
                        norm_layer,
                    )
                )
                block_id += 1
            layers.append(nn.Sequential(*stage))
        last_in = setting[-1][4]
        last_out = last_channel if last_channel is not None else 4 * last_in
        layers.append(
            Conv2dNormActivation(
                last_in, last_out, kernel_size=1, norm_layer=norm_layer, activation_layer=nn.SiLU
            )
        )
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(
            nn.Dropout(p=dropout, inplace=True),
            nn.Linear(last_out, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of shape (N, num_classes)."""
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))  # type: ignore[no-any-return]


def efficientnet_b0(num_classes: int = 1000) -> nn.Module:
    """EfficientNet-B0: 5,288,548 parameters at 1000 classes."""
    # expand_ratio, kernel, stride, input_channels, out_channels, num_layers
    setting = [
        (1, 3, 1, 32, 16, 1),
        (6, 3, 2, 16, 24, 2),
        (6, 5, 2, 24, 40, 2),
        (6, 3, 2, 40, 80, 3),
        (6, 5, 1, 80, 112, 3),
        (6, 5, 2, 112, 192, 4),
        (6, 3, 1, 192, 320, 1),
    ]
    return EfficientNet(setting, dropout=0.2, num_classes=num_classes)


# --------------------------------------------------------------------------------------------
# ConvNeXt
# --------------------------------------------------------------------------------------------


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of an NCHW tensor."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalise each pixel's channel vector."""
        x = x.permute(0, 2, 3, 1)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


class Permute(nn.Module):
    """`Tensor.permute` as a module, so it can sit inside an nn.Sequential."""

    def __init__(self, dims: Sequence[int]) -> None:
        super().__init__()
        self.dims = list(dims)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return `x` with its dimensions reordered."""
        return torch.permute(x, self.dims)


class CNBlock(nn.Module):
    """ConvNeXt block: depthwise 7x7, channels-last LayerNorm and MLP, scaled residual."""

    def __init__(self, dim: int, layer_scale: float, stochastic_depth_prob: float) -> None:
        super().__init__()
        # The MLP runs channels-last so plain nn.LayerNorm and nn.Linear act on channels.
        self.block = nn.Sequential(
            nn.Conv2d(dim, dim, kernel_size=7, padding=3, groups=dim, bias=True),
            Permute([0, 2, 3, 1]),
            nn.LayerNorm(dim, eps=1e-6),
            nn.Linear(dim, 4 * dim, bias=True),
            nn.GELU(),
            nn.Linear(4 * dim, dim, bias=True),
            Permute([0, 3, 1, 2]),
        )
        # A bare parameter owned by the block itself, not by any submodule: counters that
        # only walk leaf layers miss it.
        self.layer_scale = nn.Parameter(torch.ones(dim, 1, 1) * layer_scale)
        self.stochastic_depth = StochasticDepth(stochastic_depth_prob, "row")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Input plus the scaled, stochastically dropped branch."""
        result: torch.Tensor = self.layer_scale * self.block(x)
        result = self.stochastic_depth(result)
        return result + x


class ConvNeXt(nn.Module):
    """ConvNeXt from "A ConvNet for the 2020s", torchvision layout."""

    def __init__(
        self,
        dims: Sequence[int],
        depths: Sequence[int],
        stochastic_depth_prob: float = 0.0,
        layer_scale: float = 1e-6,
        num_classes: int = 1000,
    ) -> None:
        super().__init__()
        norm_layer = partial(LayerNorm2d, eps=1e-6)
        # Patchify stem: non-overlapping 4x4 patches.
        layers: list[nn.Module] = [
            Conv2dNormActivation(
                3,
                dims[0],
                kernel_size=4,
                stride=4,
                norm_layer=norm_layer,
                activation_layer=None,
                bias=True,
            )
        ]
        total_blocks = sum(depths)
        block_id = 0
        for i, (dim, depth) in enumerate(zip(dims, depths, strict=True)):
            stage: list[nn.Module] = []
            for _ in range(depth):
                sd_prob = stochastic_depth_prob * block_id / (total_blocks - 1.0)
                stage.append(CNBlock(dim, layer_scale, sd_prob))
                block_id += 1
            layers.append(nn.Sequential(*stage))
            if i + 1 < len(dims):
                layers.append(
                    nn.Sequential(
                        norm_layer(dim),
                        nn.Conv2d(dim, dims[i + 1], kernel_size=2, stride=2),
                    )
                )
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(
            norm_layer(dims[-1]), nn.Flatten(1), nn.Linear(dims[-1], num_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of shape (N, num_classes)."""
        x = self.avgpool(self.features(x))
        return self.classifier(x)  # type: ignore[no-any-return]


def convnext_tiny(num_classes: int = 1000) -> nn.Module:
    """ConvNeXt-T: 28,589,128 parameters at 1000 classes."""
    return ConvNeXt(
        dims=[96, 192, 384, 768],
        depths=[3, 3, 9, 3],
        stochastic_depth_prob=0.1,
        num_classes=num_classes,
    )


# --------------------------------------------------------------------------------------------
# Vision Transformer
# --------------------------------------------------------------------------------------------


class MLPBlock(nn.Sequential):
    """Transformer MLP: Linear, GELU, Dropout, Linear, Dropout (indices 0 to 4)."""

    def __init__(self, in_dim: int, mlp_dim: int, dropout: float) -> None:
        super().__init__(
            nn.Linear(in_dim, mlp_dim),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(mlp_dim, in_dim),
            nn.Dropout(dropout),
        )


class EncoderBlock(nn.Module):
    """Pre-norm transformer encoder block."""

    def __init__(
        self,
        num_heads: int,
        hidden_dim: int,
        mlp_dim: int,
        dropout: float,
        attention_dropout: float,
    ) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(hidden_dim, eps=1e-6)
        self.self_attention = nn.MultiheadAttention(
            hidden_dim, num_heads, dropout=attention_dropout, batch_first=True
        )
        self.dropout = nn.Dropout(dropout)
        self.ln_2 = nn.LayerNorm(hidden_dim, eps=1e-6)
        self.mlp = MLPBlock(hidden_dim, mlp_dim, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Attention then MLP, each with its own residual."""
        y: torch.Tensor = self.ln_1(x)
        y, _ = self.self_attention(y, y, y, need_weights=False)
        y = self.dropout(y) + x
        z: torch.Tensor = self.mlp(self.ln_2(y))
        return y + z


class Encoder(nn.Module):
    """Stack of encoder blocks; owns the learned position embedding."""

    def __init__(
        self,
        seq_length: int,
        num_layers: int,
        num_heads: int,
        hidden_dim: int,
        mlp_dim: int,
        dropout: float,
        attention_dropout: float,
    ) -> None:
        super().__init__()
        self.pos_embedding = nn.Parameter(torch.empty(1, seq_length, hidden_dim).normal_(std=0.02))
        self.dropout = nn.Dropout(dropout)
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        for i in range(num_layers):
            layers[f"encoder_layer_{i}"] = EncoderBlock(
                num_heads, hidden_dim, mlp_dim, dropout, attention_dropout
            )
        self.layers = nn.Sequential(layers)
        self.ln = nn.LayerNorm(hidden_dim, eps=1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Add positions, run every block, normalise."""
        x = x + self.pos_embedding
        return self.ln(self.layers(self.dropout(x)))  # type: ignore[no-any-return]


class VisionTransformer(nn.Module):
    """ViT from "An Image is Worth 16x16 Words", torchvision layout."""

    def __init__(
        self,
        image_size: int,
        patch_size: int,
        num_layers: int,
        num_heads: int,
        hidden_dim: int,
        mlp_dim: int,
        dropout: float = 0.0,
        attention_dropout: float = 0.0,
        num_classes: int = 1000,
    ) -> None:
        super().__init__()
        self.image_size = image_size
        self.patch_size = patch_size
        self.hidden_dim = hidden_dim
        self.conv_proj = nn.Conv2d(3, hidden_dim, kernel_size=patch_size, stride=patch_size)
        # One extra token for the class token: 14 * 14 + 1 = 197 at 224 px with 16 px patches.
        seq_length = (image_size // patch_size) ** 2 + 1
        self.class_token = nn.Parameter(torch.zeros(1, 1, hidden_dim))
        self.encoder = Encoder(
            seq_length, num_layers, num_heads, hidden_dim, mlp_dim, dropout, attention_dropout
        )
        self.seq_length = seq_length
        self.heads = nn.Sequential(OrderedDict(head=nn.Linear(hidden_dim, num_classes)))

    def _process_input(self, x: torch.Tensor) -> torch.Tensor:
        """Turn (N, 3, H, W) images into (N, H*W / p^2, hidden_dim) patch tokens."""
        n, _, h, w = x.shape
        if h != self.image_size or w != self.image_size:
            # The position embedding has a fixed length, so other sizes cannot work.
            raise ValueError(f"expected {self.image_size}x{self.image_size} input, got {h}x{w}")
        x = self.conv_proj(x)
        x = x.reshape(n, self.hidden_dim, -1)
        return x.permute(0, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of shape (N, num_classes), read from the class token."""
        x = self._process_input(x)
        batch_class_token = self.class_token.expand(x.shape[0], -1, -1)
        x = torch.cat([batch_class_token, x], dim=1)
        x = self.encoder(x)
        return self.heads(x[:, 0])  # type: ignore[no-any-return]


def vit_b_16(num_classes: int = 1000) -> nn.Module:
    """ViT-B/16 at 224 px: 86,567,656 parameters at 1000 classes."""
    return VisionTransformer(
        image_size=224,
        patch_size=16,
        num_layers=12,
        num_heads=12,
        hidden_dim=768,
        mlp_dim=3072,
        num_classes=num_classes,
    )


# --------------------------------------------------------------------------------------------
# LLaMA-shaped decoder
# --------------------------------------------------------------------------------------------


def _apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate the two halves of each head's features by position-dependent angles."""
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)


class Attention(nn.Module):
    """Causal multi-head self-attention with rotary positions and bias-free projections."""

    def __init__(self, dim: int, n_heads: int, rope_theta: float = 10000.0) -> None:
        super().__init__()
        if dim % n_heads != 0:
            raise ValueError(f"dim={dim} is not divisible by n_heads={n_heads}")
        self.n_heads = n_heads
        self.head_dim = dim // n_heads
        self.rope_theta = rope_theta
        self.wq = nn.Linear(dim, dim, bias=False)
        self.wk = nn.Linear(dim, dim, bias=False)
        self.wv = nn.Linear(dim, dim, bias=False)
        self.wo = nn.Linear(dim, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Attend causally over the sequence dimension of a (B, T, dim) input."""
        b, t, _ = x.shape
        q: torch.Tensor = self.wq(x)
        k: torch.Tensor = self.wk(x)
        v: torch.Tensor = self.wv(x)
        # -1, not n_heads: under tensor parallel a rank holds n_heads / degree of the heads.
        q, k, v = (y.view(b, t, -1, self.head_dim).transpose(1, 2) for y in (q, k, v))
        # Rotary angles are recomputed per call rather than cached in a buffer, so the module
        # holds nothing but parameters and builds on the meta device without special cases.
        inv_freq = self.rope_theta ** (
            -torch.arange(0, self.head_dim, 2, device=x.device, dtype=torch.float32) / self.head_dim
        )
        angles = torch.outer(torch.arange(t, device=x.device, dtype=torch.float32), inv_freq)
        cos = angles.cos().to(x.dtype)
        sin = angles.sin().to(x.dtype)
        q, k = _apply_rotary(q, cos, sin), _apply_rotary(k, cos, sin)
        out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.wo(out.transpose(1, 2).reshape(b, t, -1))  # type: ignore[no-any-return]


class FeedForward(nn.Module):
    """SwiGLU MLP: w2(silu(w1 x) * w3 x), all bias-free."""

    def __init__(self, dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.w1 = nn.Linear(dim, hidden_dim, bias=False)
        self.w2 = nn.Linear(hidden_dim, dim, bias=False)
        self.w3 = nn.Linear(dim, hidden_dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Gated MLP output, same width as the input."""
        return self.w2(F.silu(self.w1(x)) * self.w3(x))  # type: ignore[no-any-return]


class TransformerBlock(nn.Module):
    """Pre-norm decoder block with RMSNorm."""

    def __init__(self, dim: int, n_heads: int, hidden_dim: int, norm_eps: float) -> None:
        super().__init__()
        self.attention = Attention(dim, n_heads)
        self.feed_forward = FeedForward(dim, hidden_dim)
        self.attention_norm = nn.RMSNorm(dim, eps=norm_eps)
        self.ffn_norm = nn.RMSNorm(dim, eps=norm_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Attention then MLP, each with its own residual."""
        h: torch.Tensor = x + self.attention(self.attention_norm(x))
        return h + self.feed_forward(self.ffn_norm(h))  # type: ignore[no-any-return]


class Llama(nn.Module):
    """Decoder-only language model shaped like LLaMA (no KV cache, no grouped-query heads)."""

    def __init__(
        self,
        vocab: int,
        dim: int,
        n_layers: int,
        hidden: int,
        n_heads: int,
        tie_embeddings: bool = False,
        norm_eps: float = 1e-6,
    ) -> None:
        super().__init__()
        self.tok_embeddings = nn.Embedding(vocab, dim)
        self.layers = nn.ModuleList(
            TransformerBlock(dim, n_heads, hidden, norm_eps) for _ in range(n_layers)
        )
        self.norm = nn.RMSNorm(dim, eps=norm_eps)
        self.lm_head = nn.Linear(dim, vocab, bias=False)
        if tie_embeddings:
            # One shared tensor: `parameters()` yields it once, so the count drops by vocab*dim.
            self.lm_head.weight = self.tok_embeddings.weight

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Next-token logits of shape (B, T, vocab) for integer tokens of shape (B, T)."""
        h: torch.Tensor = self.tok_embeddings(tokens)
        for layer in self.layers:
            h = layer(h)
        return self.lm_head(self.norm(h))  # type: ignore[no-any-return]


def llama(
    vocab: int = 32000,
    dim: int = 4096,
    n_layers: int = 32,
    hidden: int = 11008,
    n_heads: int = 32,
    tie_embeddings: bool = False,
) -> nn.Module:
    """LLaMA-shaped decoder; the defaults are LLaMA-7B, 6,738,415,616 parameters.

    Build the default configuration under `with torch.device("meta"):`: it needs about
    27 GB as float32.
    """
    return Llama(vocab, dim, n_layers, hidden, n_heads, tie_embeddings=tie_embeddings)


# --------------------------------------------------------------------------------------------
# GPT-2-shaped decoder
# --------------------------------------------------------------------------------------------


class GPT2Block(nn.Module):
    """Pre-norm block of GPT-2: LayerNorm, fused-QKV causal attention, LayerNorm, GELU MLP."""

    def __init__(self, dim: int, n_heads: int, dropout: float) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.ln_1 = nn.LayerNorm(dim)
        self.c_attn = nn.Linear(dim, 3 * dim)
        self.c_proj = nn.Linear(dim, dim)
        self.ln_2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(
            nn.Linear(dim, 4 * dim), nn.GELU(approximate="tanh"), nn.Linear(4 * dim, dim)
        )
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Attention then MLP, each with its own residual, on a (B, T, dim) input."""
        b, t, d = x.shape
        q, k, v = self.c_attn(self.ln_1(x)).split(d, dim=2)
        q, k, v = (y.view(b, t, self.n_heads, d // self.n_heads).transpose(1, 2) for y in (q, k, v))
        attended = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.dropout(self.c_proj(attended.transpose(1, 2).reshape(b, t, d)))
        return x + self.dropout(self.mlp(self.ln_2(x)))  # type: ignore[no-any-return]


class GPT2(nn.Module):
    """Decoder-only language model shaped like GPT-2: learned positions, tied output head."""

    def __init__(
        self, vocab: int, context: int, dim: int, n_layers: int, n_heads: int, dropout: float
    ) -> None:
        super().__init__()
        self.wte = nn.Embedding(vocab, dim)
        self.wpe = nn.Embedding(context, dim)
        self.drop = nn.Dropout(dropout)
        self.h = nn.ModuleList(GPT2Block(dim, n_heads, dropout) for _ in range(n_layers))
        self.ln_f = nn.LayerNorm(dim)
        self.lm_head = nn.Linear(dim, vocab, bias=False)
        self.lm_head.weight = self.wte.weight

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Next-token logits of shape (B, T, vocab) for integer tokens of shape (B, T)."""
        positions = torch.arange(tokens.shape[1], device=tokens.device)
        h = self.drop(self.wte(tokens) + self.wpe(positions))
        for block in self.h:
            h = block(h)
        return self.lm_head(self.ln_f(h))  # type: ignore[no-any-return]


def gpt2(
    vocab: int = 50257,
    context: int = 1024,
    dim: int = 768,
    n_layers: int = 12,
    n_heads: int = 12,
    dropout: float = 0.0,
) -> nn.Module:
    """GPT-2-shaped decoder; the defaults are GPT-2 small, 124,439,808 parameters."""
    return GPT2(vocab, context, dim, n_layers, n_heads, dropout)


# --------------------------------------------------------------------------------------------
# Diffusion UNet with irregular blocks
# --------------------------------------------------------------------------------------------


class ResnetBlock2D(nn.Module):
    """GroupNorm, 3x3 conv, time-embedding shift, GroupNorm, 3x3 conv, 1x1 shortcut when the
    width changes: the block diffusers names `resnets.{j}`.

    Its parameters depend on its input width, so resnets at the same index of different
    blocks, or in one up block (whose inputs carry different skips), rarely match.
    """

    def __init__(
        self, in_channels: int, out_channels: int, temb_channels: int, groups: int
    ) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.time_emb_proj = nn.Linear(temb_channels, out_channels)
        self.norm2 = nn.GroupNorm(groups, out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.conv_shortcut = (
            nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else None
        )

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        """Residual block conditioned on the time embedding `temb` of shape (B, temb)."""
        h: torch.Tensor = self.conv1(F.silu(self.norm1(x)))
        h = h + self.time_emb_proj(F.silu(temb))[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        shortcut: torch.Tensor = x if self.conv_shortcut is None else self.conv_shortcut(x)
        return shortcut + h


class AttentionBlock2D(nn.Module):
    """Single-head self-attention over the pixels, with diffusers' names (`to_out.0`)."""

    def __init__(self, channels: int, groups: int) -> None:
        super().__init__()
        self.group_norm = nn.GroupNorm(groups, channels)
        self.to_q = nn.Linear(channels, channels)
        self.to_k = nn.Linear(channels, channels)
        self.to_v = nn.Linear(channels, channels)
        self.to_out = nn.ModuleList([nn.Linear(channels, channels), nn.Dropout(0.0)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """`x` plus attention of every pixel to every other."""
        b, c, h, w = x.shape
        t = self.group_norm(x).reshape(b, c, h * w).transpose(1, 2)
        out = F.scaled_dot_product_attention(self.to_q(t), self.to_k(t), self.to_v(t))
        for layer in self.to_out:
            out = layer(out)
        return x + out.transpose(1, 2).reshape(b, c, h, w)


class Resample2D(nn.Module):
    """Halve the resolution with a strided 3x3 conv, or double it (nearest) and convolve:
    diffusers' `Downsample2D`/`Upsample2D`, whose convolution is `downsamplers.0.conv`."""

    def __init__(self, channels: int, down: bool) -> None:
        super().__init__()
        self.down = down
        self.conv = nn.Conv2d(channels, channels, 3, stride=2 if down else 1, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Same channels, half or twice the height and width."""
        if not self.down:
            x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        return self.conv(x)  # type: ignore[no-any-return]


class UNetBlock(nn.Module):
    """One down or up block: resnets, optionally one attention after each, and a resampler.

    `in_channels[j]` is resnet j's input width, so an up block can give each resnet its own
    skip-concatenated width.
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        out_channels: int,
        temb_channels: int,
        groups: int,
        attention: bool,
        resample: str | None,
    ) -> None:
        super().__init__()
        self.resnets = nn.ModuleList(
            ResnetBlock2D(c, out_channels, temb_channels, groups) for c in in_channels
        )
        self.attentions = (
            nn.ModuleList(AttentionBlock2D(out_channels, groups) for _ in in_channels)
            if attention
            else None
        )
        self.downsamplers: nn.ModuleList | None = None
        self.upsamplers: nn.ModuleList | None = None
        if resample == "down":
            self.downsamplers = nn.ModuleList([Resample2D(out_channels, down=True)])
        elif resample == "up":
            self.upsamplers = nn.ModuleList([Resample2D(out_channels, down=False)])

    def _layer(self, j: int, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        """Resnet `j`, then attention `j` if the block attends."""
        out: torch.Tensor = self.resnets[j](x, temb)
        if self.attentions is not None:
            out = self.attentions[j](out)
        return out

    def down(self, x: torch.Tensor, temb: torch.Tensor, skips: list[torch.Tensor]) -> torch.Tensor:
        """Run the block, pushing every resnet's and the downsampler's output onto `skips`."""
        for j in range(len(self.resnets)):
            x = self._layer(j, x, temb)
            skips.append(x)
        if self.downsamplers is not None:
            x = self.downsamplers[0](x)
            skips.append(x)
        return x

    def up(self, x: torch.Tensor, temb: torch.Tensor, skips: list[torch.Tensor]) -> torch.Tensor:
        """Run the block, concatenating one popped skip onto each resnet's input."""
        for j in range(len(self.resnets)):
            x = self._layer(j, torch.cat([x, skips.pop()], dim=1), temb)
        if self.upsamplers is not None:
            x = self.upsamplers[0](x)
        return x


class UNetMidBlock(nn.Module):
    """Resnet, attention, resnet at the lowest resolution: diffusers' `mid_block`."""

    def __init__(self, channels: int, temb_channels: int, groups: int) -> None:
        super().__init__()
        self.resnets = nn.ModuleList(
            ResnetBlock2D(channels, channels, temb_channels, groups) for _ in range(2)
        )
        self.attentions = nn.ModuleList([AttentionBlock2D(channels, groups)])

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        """Same shape out as in."""
        x = self.resnets[0](x, temb)
        x = self.attentions[0](x)
        return self.resnets[1](x, temb)  # type: ignore[no-any-return]


class UNet(nn.Module):
    """A small diffusers-style `UNet2DModel` whose down blocks differ from each other.

    The blocks differ in width, in how many resnets they hold and in whether they attend, so
    the repetition in this model is irregular: grouping must merge only what really matches
    (`down_blocks.0.resnets.{0,1}.conv1`), never across blocks of different widths or counts.
    Each up block mirrors a down block with one resnet more, which is what consumes exactly
    the skips the down path pushed (diffusers' `layers_per_block + 1`).
    """

    def __init__(
        self,
        in_channels: int = 4,
        channels: Sequence[int] = (32, 64, 64),
        layers: Sequence[int] = (2, 2, 1),
        attention: Sequence[bool] = (False, True, True),
        groups: int = 8,
    ) -> None:
        super().__init__()
        if not len(channels) == len(layers) == len(attention):
            raise ValueError("channels, layers and attention need one entry per block")
        temb = 4 * channels[0]
        self.base_channels = channels[0]
        self.conv_in = nn.Conv2d(in_channels, channels[0], 3, padding=1)
        self.time_embedding = nn.ModuleDict(
            {"linear_1": nn.Linear(channels[0], temb), "linear_2": nn.Linear(temb, temb)}
        )
        skips = [channels[0]]  # the width of every activation the down path hands across
        width = channels[0]
        down: list[UNetBlock] = []
        for i, (out, n, attend) in enumerate(zip(channels, layers, attention, strict=True)):
            last = i == len(channels) - 1
            ins = [width] + [out] * (n - 1)
            down.append(UNetBlock(ins, out, temb, groups, attend, None if last else "down"))
            width = out
            skips += [out] * (n + (0 if last else 1))
        self.down_blocks = nn.ModuleList(down)
        self.mid_block = UNetMidBlock(width, temb, groups)
        up: list[UNetBlock] = []
        reverse = zip(channels[::-1], layers[::-1], attention[::-1], strict=True)
        for i, (out, n, attend) in enumerate(reverse):
            ins = []
            for _ in range(n + 1):
                ins.append(width + skips.pop())
                width = out
            last = i == len(channels) - 1
            up.append(UNetBlock(ins, out, temb, groups, attend, None if last else "up"))
        self.up_blocks = nn.ModuleList(up)
        self.conv_norm_out = nn.GroupNorm(groups, width)
        self.conv_out = nn.Conv2d(width, in_channels, 3, padding=1)

    def _time_embedding(self, timestep: torch.Tensor) -> torch.Tensor:
        """Sinusoidal features of the timesteps, then the two-layer MLP: (B,) → (B, temb)."""
        half = self.base_channels // 2
        freqs = 10000.0 ** (-torch.arange(half, device=timestep.device) / half)
        angles = timestep.float()[:, None] * freqs[None, :]
        features = torch.cat([angles.sin(), angles.cos()], dim=-1)
        h = self.time_embedding["linear_1"](features)
        return self.time_embedding["linear_2"](F.silu(h))  # type: ignore[no-any-return]

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor | None = None) -> torch.Tensor:
        """Predicted noise, shaped like `sample` (B, C, H, W); `timestep` (B,) defaults to 0.

        H and W must be divisible by 2 ** (blocks - 1).
        """
        if timestep is None:
            timestep = torch.zeros(sample.shape[0], device=sample.device)
        temb = self._time_embedding(timestep)
        x: torch.Tensor = self.conv_in(sample)
        skips = [x]
        for block in self.down_blocks:
            assert isinstance(block, UNetBlock)
            x = block.down(x, temb, skips)
        x = self.mid_block(x, temb)
        for block in self.up_blocks:
            assert isinstance(block, UNetBlock)
            x = block.up(x, temb, skips)
        return self.conv_out(F.silu(self.conv_norm_out(x)))  # type: ignore[no-any-return]


def unet(
    in_channels: int = 4,
    channels: Sequence[int] = (32, 64, 64),
    layers: Sequence[int] = (2, 2, 1),
    attention: Sequence[bool] = (False, True, True),
) -> nn.Module:
    """A small diffusion UNet with irregular blocks: a test of grouping's honesty, not a
    published model. Runs forward on (B, 4, 32, 32) and timesteps (B,), also on meta."""
    return UNet(in_channels, channels, layers, attention)


# --------------------------------------------------------------------------------------------
# LoRA adapters
# --------------------------------------------------------------------------------------------


class LoRALinear(nn.Module):
    """A frozen Linear plus a trainable low-rank update, named as PEFT names it
    (`base_layer`, `lora_A`, `lora_B`; PEFT nests the last two under an adapter name).

    `lora_B` starts at zero, so the wrapped layer computes what the original did.
    """

    def __init__(self, base_layer: nn.Linear, rank: int, alpha: float) -> None:
        super().__init__()
        weight = base_layer.weight
        self.base_layer = base_layer
        self.lora_A = nn.Linear(
            base_layer.in_features, rank, bias=False, device=weight.device, dtype=weight.dtype
        )
        self.lora_B = nn.Linear(
            rank, base_layer.out_features, bias=False, device=weight.device, dtype=weight.dtype
        )
        nn.init.zeros_(self.lora_B.weight)
        self.scaling = alpha / rank

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The frozen layer's output plus the scaled low-rank update."""
        out: torch.Tensor = self.base_layer(x)
        update: torch.Tensor = self.lora_B(self.lora_A(x))
        return out + update * self.scaling


def lora(
    base: nn.Module, rank: int = 8, targets: tuple[str, ...] = ("wq", "wv"), alpha: float = 16.0
) -> nn.Module:
    """`base` with every parameter frozen and each Linear whose attribute name is in `targets`
    wrapped in a `LoRALinear`: a fine-tuned model whose trainable part is a sliver of its
    total, repeated in every block. Modifies and returns `base`."""
    base.requires_grad_(False)
    found = [
        (parent, name, child)
        for parent in base.modules()
        for name, child in parent.named_children()
        if name in targets and isinstance(child, nn.Linear)
    ]
    for parent, name, child in found:
        setattr(parent, name, LoRALinear(child, rank, alpha))
    return base
