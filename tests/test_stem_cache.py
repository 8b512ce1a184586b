"""The upper fine-tuning protocol's cache of frozen-stem outputs: computed once, equal to the model's own stem."""
import torch

from harness.core.cache import ArtifactCache
from harness.models.network import create_model
from harness.models.stem_cache import STORAGE, with_stem_inputs
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
    import harness.models.stem_cache

    benchmark = make_toy_benchmark()
    encoder = create_model("resnet18", 2, benchmark.image_size, width=0.25).eval()
    batches = []
    original = encoder.encode
    monkeypatch.setattr(encoder, "encode", lambda x: batches.append(len(x)) or original(x))
    cache, cpu = ArtifactCache(tmp_path), torch.device("cpu")
    with_stem_inputs(benchmark, encoder, cache, {"k": 1}, cpu, show_progress=False)
    assert max(batches) == harness.models.stem_cache.BATCH_SIZE["cpu"]
    monkeypatch.setitem(harness.models.stem_cache.BATCH_SIZE, "cpu", 3)
    batches.clear()
    with_stem_inputs(benchmark, encoder, cache, {"k": 1}, cpu, show_progress=False)
    assert max(batches) == 3 and sum(batches) == sum(len(s) for s in benchmark.splits.values())
    batches.clear()
    with_stem_inputs(benchmark, encoder, cache, {"k": 1}, cpu, show_progress=False)
    assert batches == []


def test_the_stem_in_chunks_equals_one_pass_over_the_split(tmp_path, monkeypatch):
    """Chunks are a multiple of the batch size, so their batches, and every number, are those of one pass."""
    import harness.models.stem_cache
    from harness.models.stem_cache import encode_split

    monkeypatch.setattr(harness.models.stem_cache, "CHUNK", 16)  # the toy train split of 160 rows: 10 chunks
    benchmark = make_toy_benchmark()
    encoder = create_model("resnet18", 2, benchmark.image_size, width=0.25).eval()
    chunked = with_stem_inputs(benchmark, encoder, ArtifactCache(tmp_path), {"k": 1}, torch.device("cpu"),
                               show_progress=False)
    for name, split in benchmark.splits.items():
        whole = encode_split(encoder, split, torch.device("cpu"), show_progress=False)
        assert torch.equal(chunked.splits[name].stem, whole)
    assert len(list((tmp_path / "stem").glob("*.safetensors"))) == sum(-(-len(s) // 16)
                                                                        for s in benchmark.splits.values())


def test_workers_needing_the_same_artifacts_create_different_ones_first(tmp_path):
    """While another process creates artifact 0 (its lock held), get_or_create_all creates 1 and 2 first,
    then waits for 0 and finds it made."""
    import fcntl
    import threading

    from harness.core import digests
    from harness.core.cache import save_tensors

    cache, order = ArtifactCache(tmp_path), []

    def item(i):
        def create(path):
            order.append(i)
            save_tensors(path, {"x": torch.tensor([i])})
        return ("thing", {"i": i}, "safetensors", create)

    items = [item(i) for i in range(3)]
    lock_path = cache.path(*items[0][:3]).with_suffix(".lock")
    lock_path.parent.mkdir(parents=True)
    holder = open(lock_path, "a")  # another open file description: flock conflicts as another process's would
    fcntl.flock(holder, fcntl.LOCK_EX)
    result = []
    worker = threading.Thread(target=lambda: result.extend(cache.get_or_create_all(items)))
    worker.start()
    worker.join(timeout=5)
    assert worker.is_alive() and order == [1, 2]  # the free ones done, waiting for the held one
    made = cache.path(*items[0][:3])
    items[0][3](made)  # "the other process" finishes artifact 0, with its digest, and lets go
    digests.write_digest(made)
    fcntl.flock(holder, fcntl.LOCK_UN)
    holder.close()
    worker.join(timeout=5)
    assert not worker.is_alive() and order == [1, 2, 0] and len(result) == 3
