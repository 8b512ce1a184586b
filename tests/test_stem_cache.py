"""The upper fine-tuning protocol's cache of frozen-stem outputs: computed once, equal to the model's own stem."""
import torch

from harness.cache import ArtifactCache
from harness.models import create_model
from harness.stem_cache import STORAGE, with_stem_inputs
from tests.conftest import make_toy_benchmark


def test_stem_outputs_are_computed_once_and_match_the_encoder(tmp_path, monkeypatch):
    benchmark = make_toy_benchmark()
    encoder = create_model("resnet18", 2, benchmark.image_size, width=0.25).eval()
    calls = []
    original = encoder.encode
    monkeypatch.setattr(encoder, "encode", lambda x: calls.append(len(x)) or original(x))
    cache = ArtifactCache(tmp_path)
    first = with_stem_inputs(benchmark, encoder, cache, {"k": 1}, torch.device("cpu"), show_progress=False)
    n_images = sum(len(s) for s in benchmark.splits.values())
    assert sum(calls) == n_images
    second = with_stem_inputs(benchmark, encoder, cache, {"k": 1}, torch.device("cpu"), show_progress=False)
    assert sum(calls) == n_images  # read back, not recomputed
    train = benchmark.splits["train"]
    with torch.no_grad():
        expected = original(train.images[:5].float() / 255).to(STORAGE)
    assert torch.equal(second.splits["train"].stem[:5], expected)
    assert torch.equal(first.splits["train"].inputs, second.splits["train"].stem)
    assert torch.equal(first.splits["train"].images, train.images)  # the images stay for galleries and masks
    # a subset keeps the stem rows with the images
    sub = first.splits["train"].subset([3, 1])
    assert torch.equal(sub.stem, first.splits["train"].stem[[3, 1]])
