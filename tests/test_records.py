import json

from harness.core.cache import ArtifactCache, load_tensors, save_tensors
from harness.core.records import atomic_write_json, config_hash, load_records


def test_config_hash_ignores_key_order_and_sees_values():
    a = {"dataset": "d", "hparams": {"lr": 0.1, "epochs": 2}}
    b = {"hparams": {"epochs": 2, "lr": 0.1}, "dataset": "d"}
    assert config_hash(a) == config_hash(b)
    assert config_hash(a) != config_hash({**a, "dataset": "e"})


def test_atomic_write_leaves_no_temp_files_and_load_skips_them(tmp_path):
    atomic_write_json(tmp_path / "runs" / "x.json", {"run_id": "x"})
    (tmp_path / "runs" / ".y.json.123.tmp").write_text("{half")
    assert [r["run_id"] for r in load_records(tmp_path / "runs")] == ["x"]
    assert json.loads((tmp_path / "runs" / "x.json").read_text()) == {"run_id": "x"}


def test_cache_creates_once_and_round_trips(tmp_path):
    import torch

    cache = ArtifactCache(tmp_path)
    calls = []

    def create(path):
        calls.append(path)
        save_tensors(path, {"w": torch.arange(3.0)}, meta={"note": "hi"})

    p1 = cache.get_or_create("kind", {"a": 1}, "safetensors", create)
    p2 = cache.get_or_create("kind", {"a": 1}, "safetensors", create)
    assert p1 == p2 and len(calls) == 1
    tensors, meta = load_tensors(p1)
    assert torch.equal(tensors["w"], torch.arange(3.0)) and meta == {"note": "hi"}
    assert json.loads(p1.with_suffix(".key.json").read_text()) == {"a": 1}
    cache.get_or_create("kind", {"a": 2}, "safetensors", create)
    assert len(calls) == 2
