import pytest
import torch

from harness.core.errors import HarnessError
from harness.models.families import ARCHS, FAMILIES
from harness.models.network import create_model
from harness.models.weights import Weights


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


def test_bad_names_and_missing_weights_are_clear_errors(tmp_path):
    with pytest.raises(HarnessError, match="unknown arch"):
        create_model("resnet7", 2, 32)
    with pytest.raises(HarnessError, match="not found"):
        create_model("resnet18", 2, 32, weights=Weights("file", tmp_path / "missing.safetensors"))
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a weights file")
    with pytest.raises(HarnessError, match="cannot read weights file"):
        create_model("resnet18", 2, 32, weights=Weights("file", bad))


@pytest.mark.parametrize("family", list(FAMILIES))
def test_stem_inputs_give_the_same_logits_as_images(family):
    """The upper protocol, for every registered family (its first architecture; at 32 px, EfficientNet's
    dilated last stages): the frozen stem's output fed to the upper part gives the whole network's logits
    (float32, CPU, random input)."""
    arch = next(iter(FAMILIES[family].archs))
    full = create_model(arch, 3, 32, width=0.25, depth=2).eval()
    upper = create_model(arch, 3, 32, width=0.25, depth=2, inputs="stem").eval()
    upper.load_state_dict(full.state_dict())
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(upper(full.encode(x)), full(x), atol=1e-5)
    trainable = {n for n, p in upper.named_parameters() if p.requires_grad}
    frozen = {n for n, p in upper.named_parameters() if not p.requires_grad}
    assert frozen and trainable and all(upper.head.weight is not p for n, p in upper.named_parameters() if n in frozen)
    # the target layer trains
    assert all(p.requires_grad for p in upper.target_layer.parameters())


def test_registry_covers_resnets_and_vits():
    assert set(FAMILIES) == {"resnet", "vit", "efficientnet"}
    assert {spec.family.name for spec in ARCHS.values()} == set(FAMILIES)
    assert {"resnet18", "resnet50", "vit_tiny", "vit_base", "efficientnet_lite0"} <= set(ARCHS)
