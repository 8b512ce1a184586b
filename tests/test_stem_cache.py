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


def test_a_stem_written_with_another_batch_size_is_recomputed(tmp_path, monkeypatch):
    """The batch size and layout of the stem pass change a convolution's float sums, so they key the cache:
    a cache written with another batch size is not reused, one written the same way is."""
    import harness.stem_cache

    benchmark = make_toy_benchmark()
    encoder = create_model("resnet18", 2, benchmark.image_size, width=0.25).eval()
    batches = []
    original = encoder.encode
    monkeypatch.setattr(encoder, "encode", lambda x: batches.append(len(x)) or original(x))
    cache, cpu = ArtifactCache(tmp_path), torch.device("cpu")
    with_stem_inputs(benchmark, encoder, cache, {"k": 1}, cpu, show_progress=False)
    assert max(batches) == harness.stem_cache.BATCH_SIZE["cpu"]
    monkeypatch.setitem(harness.stem_cache.BATCH_SIZE, "cpu", 3)
    batches.clear()
    with_stem_inputs(benchmark, encoder, cache, {"k": 1}, cpu, show_progress=False)
    assert max(batches) == 3 and sum(batches) == sum(len(s) for s in benchmark.splits.values())
    batches.clear()
    with_stem_inputs(benchmark, encoder, cache, {"k": 1}, cpu, show_progress=False)
    assert batches == []
