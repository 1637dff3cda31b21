"""Model zoo: pneumonia-vs-rest classifiers with one logit out.

Every model is a sequence of *named blocks* (the backbone, from the stem to the last
feature block) followed by an added *head*. That shape gives the fine-tuning controls a
submission must describe - freeze nothing, the whole backbone, or everything up to a named
block - and lets the model report its own frozen / fine-tuned / added lists.

Grayscale: inputs have one channel. The first convolution of an ImageNet architecture is
adapted by summing its RGB kernels, which gives exactly the output the original convolution
would give on the gray image replicated into three channels, at a third of the cost.

Weights never download: ``imagenet`` loads torchvision's file from its cache
(``torch.hub.get_dir()/checkpoints``) or fails at once saying which file to put where;
``PATH`` loads a torchvision-layout state dict (``.safetensors``, ``.pt``, ``.pth``) with
``weights_only`` loading, reporting missing and unexpected keys.
"""
from __future__ import annotations

import copy
import os
import re
from collections import OrderedDict
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import torch
from pydantic import Field
from pydantic.dataclasses import dataclass
from torch import nn
from torchvision import models as tvm

from . import efficientnet_lite
from .errors import CxrDeviceError
from .hashing import sha256_file
from .validated import RANGE, SETTINGS

ARCHITECTURES = ("densenet121", "vgg16", "resnet18", "resnet50", *efficientnet_lite.VARIANTS, "small_cnn")
_IMAGENET = {
    "densenet121": tvm.DenseNet121_Weights.IMAGENET1K_V1,
    "vgg16": tvm.VGG16_Weights.IMAGENET1K_V1,
    "resnet18": tvm.ResNet18_Weights.IMAGENET1K_V1,
    "resnet50": tvm.ResNet50_Weights.IMAGENET1K_V2,
}


class WeightsError(CxrDeviceError):
    """Weights cannot be loaded as asked; the message says what to do instead."""


@dataclass(frozen=True, config=SETTINGS)
class ModelSpec:
    """Everything that decides the network; recorded in the run config and the bundle."""

    arch: str = "densenet121"
    weights: str = "none"  # none | imagenet | PATH
    freeze: str = "none"  # none | backbone | the name of the last block to freeze
    head_hidden: Annotated[int, Field(ge=0, le=16384), RANGE] = 0  # 0: one linear layer; N: + a dense N + ReLU
    dropout: Annotated[float, Field(ge=0, lt=1), RANGE] = 0.0

    def validate(self) -> None:
        if self.arch not in ARCHITECTURES:
            raise CxrDeviceError(f"unknown architecture {self.arch!r}; choose one of {', '.join(ARCHITECTURES)}")


class DeviceModel(nn.Module):
    """Named backbone blocks -> head; ``forward`` returns one logit per image, shape (N,)."""

    def __init__(self, spec: ModelSpec, blocks: OrderedDict[str, nn.Module], head: nn.Sequential,
                 added: list[str], weights_report: dict):
        super().__init__()
        self.spec = spec
        self.blocks = nn.ModuleDict(blocks)
        self.head = head
        self.added = added
        self.weights_report = weights_report
        self.frozen = self._frozen_blocks(spec.freeze)
        for name in self.frozen:
            self.blocks[name].requires_grad_(False)

    def _frozen_blocks(self, freeze: str) -> list[str]:
        names = list(self.blocks)
        if freeze == "none":
            return []
        if freeze == "backbone":
            return names
        if freeze not in names:
            raise CxrDeviceError(f"--freeze {freeze!r} is not a block of {self.spec.arch}; blocks: {', '.join(names)}")
        return names[: names.index(freeze) + 1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks.values():
            x = block(x)
        return self.head(x).squeeze(1)

    def train(self, mode: bool = True) -> DeviceModel:
        """Frozen blocks stay in eval mode, so their batch-norm statistics do not move either."""
        super().train(mode)
        for name in self.frozen:
            self.blocks[name].eval()
        return self

    @property
    def feature_block(self) -> str:
        """The last block with convolutions: where Grad-CAM looks."""
        convs = [n for n, b in self.blocks.items() if any(isinstance(m, nn.Conv2d) for m in b.modules())]
        return convs[-1]

    def layer_report(self) -> dict:
        """The frozen / fine-tuned / added lists and parameter counts, for the documents."""
        with_params = [n for n, b in self.blocks.items() if any(True for _ in b.parameters())]
        count = lambda params: int(sum(p.numel() for p in params))  # noqa: E731
        return {
            "architecture": self.spec.arch,
            "frozen": [n for n in with_params if n in self.frozen],
            "fine_tuned": [n for n in with_params if n not in self.frozen],
            "added": list(self.added),
            "parameters": {"total": count(self.parameters()),
                           "trainable": count(p for p in self.parameters() if p.requires_grad)},
            "input": "1 channel; first convolution = sum of the RGB kernels (same as gray replicated to RGB)"
            if self.spec.arch != "small_cnn" else "1 channel",
            "weights": self.weights_report,
            "spec": asdict(self.spec),
        }


def build_model(spec: ModelSpec) -> DeviceModel:
    """Construct the network of ``spec`` (initialise the RNG first for reproducible weights)."""
    spec.validate()
    if spec.arch == "small_cnn":
        if spec.weights != "none":
            raise WeightsError("small_cnn has no pretrained weights; use --weights none")
        blocks, width, report = _small_cnn(), 256, {"source": "none (random initialisation)"}
    elif spec.arch in efficientnet_lite.VARIANTS:
        network = efficientnet_lite.build_network(spec.arch)
        report = _load_weights(network, spec)
        _adapt_first_conv(network)
        blocks, width = efficientnet_lite.blocks(network)
    else:
        network = getattr(tvm, spec.arch)(weights=None)
        report = _load_weights(network, spec)
        _adapt_first_conv(network)
        blocks, width = _BLOCKS[spec.arch](network)
    head, added = _head(width, spec)
    return DeviceModel(spec, blocks, head, added, report)


def _head(width: int, spec: ModelSpec) -> tuple[nn.Sequential, list[str]]:
    layers: list[nn.Module] = []
    added: list[str] = []
    if spec.dropout and spec.head_hidden:
        layers.append(nn.Dropout(spec.dropout))
        added.append(f"dropout p={spec.dropout:g}")
    if spec.head_hidden:
        layers += [nn.Linear(width, spec.head_hidden), nn.ReLU(inplace=True)]
        added.append(f"dense {width}->{spec.head_hidden} + ReLU")
        width = spec.head_hidden
    if spec.dropout:
        layers.append(nn.Dropout(spec.dropout))
        added.append(f"dropout p={spec.dropout:g}")
    layers.append(nn.Linear(width, 1))
    added.append(f"dense {width}->1 (pneumonia logit)")
    return nn.Sequential(*layers), added


def _adapt_first_conv(network: nn.Module) -> None:
    """Replace the first 3-channel convolution by a 1-channel one with summed kernels."""
    for parent in network.modules():
        for name, child in parent.named_children():
            if isinstance(child, nn.Conv2d) and child.in_channels == 3:
                if type(child) is not nn.Conv2d:  # a padding-aware subclass (EfficientNet's static "same")
                    conv = copy.deepcopy(child)
                    conv.in_channels = 1
                    conv.weight = nn.Parameter(child.weight.detach().sum(dim=1, keepdim=True))
                    setattr(parent, name, conv)
                    return
                conv = nn.Conv2d(1, child.out_channels, child.kernel_size, child.stride, child.padding,
                                 child.dilation, child.groups, child.bias is not None)
                with torch.no_grad():
                    conv.weight.copy_(child.weight.sum(dim=1, keepdim=True))
                    if child.bias is not None:
                        conv.bias.copy_(child.bias)
                setattr(parent, name, conv)
                return
    raise AssertionError("no 3-channel convolution found")  # pragma: no cover - every zoo arch has one


def _densenet_blocks(net: tvm.DenseNet) -> tuple[OrderedDict, int]:
    f = net.features
    blocks = OrderedDict(stem=nn.Sequential(f.conv0, f.norm0, f.relu0, f.pool0))
    for name in ("denseblock1", "transition1", "denseblock2", "transition2", "denseblock3", "transition3",
                 "denseblock4"):
        blocks[name] = getattr(f, name)
    blocks["norm5"] = nn.Sequential(f.norm5, nn.ReLU(inplace=True))
    blocks["pool"] = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
    return blocks, net.classifier.in_features


def _resnet_blocks(net: tvm.ResNet) -> tuple[OrderedDict, int]:
    blocks = OrderedDict(stem=nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool))
    for name in ("layer1", "layer2", "layer3", "layer4"):
        blocks[name] = getattr(net, name)
    blocks["pool"] = nn.Sequential(net.avgpool, nn.Flatten())
    return blocks, net.fc.in_features


def _vgg_blocks(net: tvm.VGG) -> tuple[OrderedDict, int]:
    blocks: OrderedDict[str, nn.Module] = OrderedDict()
    current: list[nn.Module] = []
    for layer in net.features:
        current.append(layer)
        if isinstance(layer, nn.MaxPool2d):
            blocks[f"block{len(blocks) + 1}"] = nn.Sequential(*current)
            current = []
    blocks["pool"] = nn.Sequential(net.avgpool, nn.Flatten())
    c = net.classifier  # the pretrained fully connected layers are part of the backbone
    blocks["fc6"] = nn.Sequential(c[0], c[1], c[2])
    blocks["fc7"] = nn.Sequential(c[3], c[4], c[5])
    return blocks, c[3].out_features


_BLOCKS = {"densenet121": _densenet_blocks, "resnet18": _resnet_blocks, "resnet50": _resnet_blocks,
           "vgg16": _vgg_blocks}


def _small_cnn() -> OrderedDict:
    """Four conv blocks for low-resolution studies (64 x 64 inputs)."""
    blocks: OrderedDict[str, nn.Module] = OrderedDict()
    channels = [1, 32, 64, 128, 256]
    for i in range(4):
        blocks[f"conv{i + 1}"] = nn.Sequential(
            nn.Conv2d(channels[i], channels[i + 1], 3, padding=1, bias=False), nn.BatchNorm2d(channels[i + 1]),
            nn.ReLU(inplace=True), nn.MaxPool2d(2))
    blocks["pool"] = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
    return blocks


# --- weights -------------------------------------------------------------------------------
_DENSENET_LEGACY = re.compile(r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$")


def imagenet_cache_file(arch: str) -> Path:
    """Where torchvision keeps the ImageNet weights of ``arch``."""
    url = _IMAGENET[arch].url
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)


def _load_weights(network: nn.Module, spec: ModelSpec) -> dict:
    if spec.weights == "none":
        return {"source": "none (random initialisation)"}
    if spec.weights == "imagenet" and spec.arch in efficientnet_lite.VARIANTS:
        path = efficientnet_lite.imagenet_weights_file(spec.arch)
        state = _read_state_dict(path)
        label = f"imagenet ({efficientnet_lite.weights_distribution(spec.arch)}, an installed package)"
    elif spec.weights == "imagenet":
        path = imagenet_cache_file(spec.arch)
        if not path.is_file():
            raise WeightsError(
                f"ImageNet weights for {spec.arch} are not in torchvision's cache and nothing is downloaded at run "
                f"time. Place {path.name} (from {_IMAGENET[spec.arch].url}) at {path}, or pass --weights PATH to a "
                "local file, or --weights none to train from scratch."
            )
        state = _read_state_dict(path)
        label = f"imagenet ({_IMAGENET[spec.arch]})"
    else:
        path = Path(spec.weights)
        if not path.is_file():
            raise WeightsError(f"{path}: weights file not found (--weights PATH)")
        state = _read_state_dict(path)
        label = "file"
    if spec.arch == "densenet121":
        state = {(_DENSENET_LEGACY.sub(r"\1\2", k)): v for k, v in state.items()}
    own = network.state_dict()
    mismatched = sorted(k for k, v in state.items() if k in own and own[k].shape != v.shape)
    usable = {k: v for k, v in state.items() if k not in mismatched}
    result = network.load_state_dict(usable, strict=False)
    if spec.weights == "imagenet" and (result.missing_keys or result.unexpected_keys or mismatched):
        raise WeightsError(f"{path}: does not match torchvision's {spec.arch} "
                           f"(missing {result.missing_keys[:3]}, unexpected {result.unexpected_keys[:3]})")
    return {"source": label, "path": str(path), "sha256": sha256_file(path),
            "missing_keys": list(result.missing_keys), "unexpected_keys": list(result.unexpected_keys),
            "shape_mismatch": mismatched}


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Tensors from safetensors or a torch file (``weights_only``: no pickle code runs)."""
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise WeightsError(f"{path}: not a readable state dict ({type(err).__name__}: {err})") from None
    for key in ("state_dict", "model"):  # common checkpoint wrappers
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise WeightsError(f"{path}: expected a state dict (name -> tensor), got {type(state).__name__}")
    return {k.removeprefix("module."): v for k, v in state.items() if isinstance(v, torch.Tensor)}
