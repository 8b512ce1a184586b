import pytest
import torch
from safetensors.torch import save_file

from harness.errors import HarnessError
from harness.models import ARCHS, create_model


@pytest.mark.parametrize("arch", ["resnet18", "vit_tiny"])
def test_small_input_models_expose_a_spatial_target(arch):
    model = create_model(arch, 3, 32, width=0.25, depth=2).eval()
    captured = {}
    handle = model.target_layer.register_forward_hook(lambda m, i, o: captured.setdefault("a", o))
    x = torch.rand(2, 3, 32, 32)
    logits = model(x)
    handle.remove()
    grid = model.to_grid(captured["a"])
    assert logits.shape == (2, 3)
    assert grid.shape[0] == 2 and grid.shape[2:] == (4, 4)  # a 4x4 map at 32 px for both families
    assert model.features(x).shape == (2, model.feature_dim)
    # the head applied to the pooled features gives the logits
    assert torch.allclose(model.head(model.features(x)), logits, atol=1e-5)


def test_resnet_cam_exactness_flag():
    assert create_model("resnet18", 2, 32, width=0.25).cam_is_exact
    assert not create_model("vit_tiny", 2, 32, depth=2).cam_is_exact


def test_pretrained_file_loads_backbone_and_replaces_head(tmp_path):
    source = create_model("resnet18", 10, 32, width=0.25)
    path = tmp_path / "weights.safetensors"
    save_file({k: v.contiguous() for k, v in source.backbone.state_dict().items()}, str(path))
    model = create_model("resnet18", 2, 32, width=0.25, pretrained_file=path)
    assert model.num_classes == 2
    assert torch.equal(model.backbone.conv1.weight, source.backbone.conv1.weight)
    assert torch.equal(model.backbone.layer4[0].conv1.weight, source.backbone.layer4[0].conv1.weight)


def test_bad_names_and_missing_weights_are_clear_errors(tmp_path):
    with pytest.raises(HarnessError, match="unknown arch"):
        create_model("resnet7", 2, 32)
    with pytest.raises(HarnessError, match="not found"):
        create_model("resnet18", 2, 32, pretrained_file=tmp_path / "missing.safetensors")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a weights file")
    with pytest.raises(HarnessError, match="cannot read weights file"):
        create_model("resnet18", 2, 32, pretrained_file=bad)


def test_registry_covers_resnets_and_vits():
    families = {spec.family for spec in ARCHS.values()}
    assert families == {"resnet", "vit"}
    assert {"resnet18", "resnet50", "vit_tiny", "vit_base"} <= set(ARCHS)
