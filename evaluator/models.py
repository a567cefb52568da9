"""Child networks. Each takes an activation factory and calls it once per activation site (its own module per site).

- ``resnet{6n+2}`` (20, 32, 44, 56, 110): the CIFAR ResNets of He et al. (2016), 16/32/64 channels, basic blocks,
  identity shortcuts with zero-padded channels (option A): ResNet-20 has 0.27M parameters.
- ``preact_resnet164``: pre-activation bottleneck ResNet-164 (He et al. 2016b), 1.7M parameters.
- ``wrn_28_10``: Wide ResNet 28-10 (Zagoruyko & Komodakis 2016), pre-activation basic blocks, no dropout, 36.5M.
- ``cnn1d``: the offline proxy's small 1-D CNN with batch norm, for mnist1d signals of length 40.
"""
from __future__ import annotations

import re

import torch
import torch.nn.functional as F
from torch import nn

from evaluator.activations import ActivationFactory
from evaluator.settings import IMAGE_MODELS


def _conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)


def _init_weights(model: nn.Module) -> None:
    # He initialisation for convolutions (fan-out, as in the ResNet papers); BN starts at identity.
    for m in model.modules():
        if isinstance(m, (nn.Conv1d, nn.Conv2d)):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


# ---------------------------------------------------------------- CIFAR ResNet (6n+2)

class _PadShortcut(nn.Module):
    """Option A shortcut: subsample by 2 and zero-pad the new channels (no parameters)."""

    def __init__(self, extra_channels: int):
        super().__init__()
        self.extra = extra_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, ::2, ::2]
        return F.pad(x, (0, 0, 0, 0, self.extra // 2, self.extra - self.extra // 2))


class BasicBlock(nn.Module):
    """conv-BN-act-conv-BN, plus the shortcut, then act (two activation sites)."""

    def __init__(self, cin: int, cout: int, stride: int, act: ActivationFactory):
        super().__init__()
        self.conv1 = _conv3x3(cin, cout, stride)
        self.bn1 = nn.BatchNorm2d(cout)
        self.act1 = act(cout)
        self.conv2 = _conv3x3(cout, cout)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = _PadShortcut(cout - cin) if stride != 1 or cin != cout else nn.Identity()
        self.act2 = act(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.act2(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """ResNet of depth 6n+2 for 32x32 images: stem, three stages of n basic blocks (16, 32, 64 channels), linear."""

    def __init__(self, depth: int, act: ActivationFactory, num_classes: int = 10):
        super().__init__()
        if (depth - 2) % 6 or depth < 8:
            raise ValueError(f"CIFAR ResNet depth must be 6n+2 (20, 32, 44, 56, 110), got {depth}")
        n = (depth - 2) // 6
        self.stem = nn.Sequential(_conv3x3(3, 16), nn.BatchNorm2d(16), act(16))
        blocks, cin = [], 16
        for stage, cout in enumerate((16, 32, 64)):
            for i in range(n):
                blocks.append(BasicBlock(cin, cout, 2 if stage > 0 and i == 0 else 1, act))
                cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(64, num_classes)
        _init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.stem(x))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


# ---------------------------------------------------------------- pre-activation ResNets

class PreActBottleneck(nn.Module):
    """BN-act-conv1x1, BN-act-conv3x3, BN-act-conv1x1 (4x wider out), plus the shortcut (three activation sites)."""

    def __init__(self, cin: int, mid: int, stride: int, act: ActivationFactory):
        super().__init__()
        cout = 4 * mid
        self.bn1, self.act1 = nn.BatchNorm2d(cin), act(cin)
        self.conv1 = nn.Conv2d(cin, mid, 1, bias=False)
        self.bn2, self.act2 = nn.BatchNorm2d(mid), act(mid)
        self.conv2 = _conv3x3(mid, mid, stride)
        self.bn3, self.act3 = nn.BatchNorm2d(mid), act(mid)
        self.conv3 = nn.Conv2d(mid, cout, 1, bias=False)
        self.shortcut = nn.Conv2d(cin, cout, 1, stride=stride, bias=False) if stride != 1 or cin != cout else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = self.act1(self.bn1(x))
        # The projection reads the pre-activated input (He et al. 2016b); identity shortcuts read x itself.
        shortcut = x if self.shortcut is None else self.shortcut(pre)
        out = self.conv1(pre)
        out = self.conv2(self.act2(self.bn2(out)))
        out = self.conv3(self.act3(self.bn3(out)))
        return out + shortcut


class PreActBasic(nn.Module):
    """BN-act-conv3x3, BN-act-conv3x3, plus the shortcut (the Wide ResNet block; two activation sites)."""

    def __init__(self, cin: int, cout: int, stride: int, act: ActivationFactory):
        super().__init__()
        self.bn1, self.act1 = nn.BatchNorm2d(cin), act(cin)
        self.conv1 = _conv3x3(cin, cout, stride)
        self.bn2, self.act2 = nn.BatchNorm2d(cout), act(cout)
        self.conv2 = _conv3x3(cout, cout)
        self.shortcut = nn.Conv2d(cin, cout, 1, stride=stride, bias=False) if stride != 1 or cin != cout else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = self.act1(self.bn1(x))
        shortcut = x if self.shortcut is None else self.shortcut(pre)
        out = self.conv1(pre)
        out = self.conv2(self.act2(self.bn2(out)))
        return out + shortcut


class PreActResNet(nn.Module):
    """Pre-activation ResNet: stem conv, three stages of blocks, final BN-act, global pool, linear."""

    def __init__(self, block: str, blocks_per_stage: int, widths: tuple[int, int, int], act: ActivationFactory,
                 num_classes: int = 10):
        super().__init__()
        self.stem = _conv3x3(3, 16)
        layers, cin = [], 16
        for stage, width in enumerate(widths):
            for i in range(blocks_per_stage):
                stride = 2 if stage > 0 and i == 0 else 1
                if block == "bottleneck":
                    layers.append(PreActBottleneck(cin, width, stride, act))
                    cin = 4 * width
                else:
                    layers.append(PreActBasic(cin, width, stride, act))
                    cin = width
        self.blocks = nn.Sequential(*layers)
        self.bn, self.act = nn.BatchNorm2d(cin), act(cin)
        self.fc = nn.Linear(cin, num_classes)
        _init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.bn(self.blocks(self.stem(x))))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


# ---------------------------------------------------------------- the proxy's 1-D CNN

class CNN1d(nn.Module):
    """Three conv-BN-act layers (the last two halve the length), a hidden linear-BN-act layer and a classifier.

    Sized for mnist1d (1 channel, length 40): about 5 s for 500 steps of batch 128 on one CPU core.
    """

    def __init__(self, act: ActivationFactory, num_classes: int = 10, in_channels: int = 1, length: int = 40,
                 width: int = 32, hidden: int = 64):
        super().__init__()
        layers, cin = [], in_channels
        for stride in (1, 2, 2):
            layers += [nn.Conv1d(cin, width, 5 if stride == 1 else 3, stride=stride, padding=2 if stride == 1 else 1,
                                 bias=False), nn.BatchNorm1d(width), act(width)]
            cin = width
        self.features = nn.Sequential(*layers)
        flat = width * ((length + 3) // 4)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(flat, hidden, bias=False), nn.BatchNorm1d(hidden),
                                  act(hidden), nn.Linear(hidden, num_classes))
        _init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


# ---------------------------------------------------------------- by name

MODEL_NAMES = ("cnn1d",) + IMAGE_MODELS


def build_model(name: str, act: ActivationFactory, num_classes: int = 10) -> nn.Module:
    """A freshly initialised child named ``name`` (see MODEL_NAMES) with ``act(channels)`` at every activation site.

    Draws its initial weights from torch's global generator: seed it first for a reproducible child.
    """
    if name == "cnn1d":
        return CNN1d(act, num_classes)
    match = re.fullmatch(r"resnet(\d+)", name)
    if match:
        return CifarResNet(int(match.group(1)), act, num_classes)
    if name == "preact_resnet164":
        return PreActResNet("bottleneck", 18, (16, 32, 64), act, num_classes)
    if name == "wrn_28_10":
        return PreActResNet("basic", 4, (160, 320, 640), act, num_classes)
    raise ValueError(f"unknown model {name!r} (known: {', '.join(MODEL_NAMES)})")


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
