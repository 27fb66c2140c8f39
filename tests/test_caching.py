"""The disk caches (sdsam_nb.caching): embeddings of every segmenter backend and generated
pictures come back bit-identical, anything that decides them is in the key, the cap evicts
the least recently used, several processes share one folder, ``cache=False`` touches
nothing, and run.json says what came from the cache.

Every test has its own empty cache folder (conftest's ``_own_results_cache`` sets
``$SDSAM_RESULTS_CACHE``)."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import load_or_skip
from PIL import Image

import sdsam_nb
from sdsam_nb import caching, runs
from sdsam_nb.background import generate, generate_background, score_results
from sdsam_nb.caching import DiskCache
from sdsam_nb.caching.embeddings import embedding_key
from sdsam_nb.caching.store import _HEADER, _MAGIC
from sdsam_nb.models import cache_dir, tiny
from sdsam_nb.segment import ClickSegmenter, SamBackend, as_segmenter, box_masks

PROMPT = "a red chair"
QUICK = {"steps": 2, "width": 64, "height": 64}


def results() -> Path:
    return caching.results_dir()


def snapshot(folder: Path) -> dict:
    """Every file under ``folder``: its bytes and modification time."""
    if not folder.exists():
        return {}
    return {
        p.relative_to(folder).as_posix(): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def picture(seed: int = 0, w: int = 96, h: int = 64) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def tensors(value) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in tensors(v)]
    return []


def assert_same_embedding(a, b) -> None:
    assert type(a) is type(b)
    assert a.original_size == b.original_size and a.input_size == b.input_size
    assert type(a.features) is type(b.features)
    ta, tb = tensors(a.features), tensors(b.features)
    assert ta and len(ta) == len(tb)
    for x, y in zip(ta, tb, strict=True):
        assert x.dtype == y.dtype and x.device == y.device and x.shape == y.shape
        assert x.stride() == y.stride()
        assert torch.equal(x, y)  # bit for bit


# --------------------------------------------------------------------------- the store


def test_store_round_trip_and_a_damaged_entry_is_a_miss(tmp_path):
    store = DiskCache(tmp_path / "c", max_bytes=10_000)
    key = hashlib.sha256(b"a").hexdigest()
    assert store.get(key, "blob") is None and not (tmp_path / "c").exists()  # a read makes nothing
    assert store.put(key, "blob", b"hello")
    assert store.get(key, "blob") == b"hello"
    path = store.path(key, "blob")
    assert path.read_bytes()[: len(_MAGIC)] == _MAGIC
    # flip one payload byte: the digest no longer matches, the entry is dropped
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    assert store.get(key, "blob") is None and not path.exists()
    # a half-written file of a writer that died is never read
    other = hashlib.sha256(b"b").hexdigest()
    (tmp_path / "c" / "tmp").mkdir(exist_ok=True)
    (tmp_path / "c" / "tmp" / f"{other}.blob.123-abcd").write_bytes(_MAGIC + b"\0" * 40)
    assert store.get(other, "blob") is None
    # an entry larger than the cap is not stored
    assert not store.put(other, "blob", b"x" * 10_000) and store.get(other, "blob") is None


def test_the_cap_evicts_the_least_recently_used(tmp_path):
    entry = _HEADER + 100
    store = DiskCache(tmp_path, max_bytes=3 * entry)
    a, b, c, d = (hashlib.sha256(bytes([i])).hexdigest() for i in range(4))
    for key in (a, b, c):
        assert store.put(key, "blob", key.encode()[:100].ljust(100, b"."))
    assert store.keys() == [a, b, c] and store.size() == 3 * entry
    assert store.get(a, "blob") is not None  # a is now the most recently used
    store.put(d, "blob", b"d" * 100)
    assert store.keys() == [c, a, d]  # b went: the least recently used
    assert store.get(b, "blob") is None
    assert store.size() <= store.max_bytes
    store.put(b, "blob", b"b" * 100)
    assert store.keys() == [a, d, b]


@pytest.mark.parametrize("value", ["lots", "-1", "nan"])
def test_a_bad_cap_setting_is_named(monkeypatch, value):
    monkeypatch.setenv("SDSAM_CACHE_GB", value)
    with pytest.raises(ValueError, match="SDSAM_CACHE_GB"):
        caching.default_store()


def test_bad_arguments_are_named(tmp_path, tiny_sd, tiny_sam, subject_image):
    with pytest.raises(ValueError, match="max_bytes"):
        DiskCache(tmp_path, max_bytes=-1)
    with pytest.raises(ValueError, match="max_bytes"):
        DiskCache(tmp_path, max_bytes=1.5)
    with pytest.raises(ValueError, match="key"):
        DiskCache(tmp_path, 100).get("../../etc/passwd", "blob")
    with pytest.raises(ValueError, match="cache must be True or False"):
        ClickSegmenter(tiny_sam, subject_image, cache="yes")
    with pytest.raises(ValueError, match="cache must be True or False"):
        generate(tiny_sd, PROMPT, cache=1, **QUICK)
    with pytest.raises(ValueError, match="parameter cache must be True or False"):
        runs.check_params(cache="no")
    assert not results().exists()


# --------------------------------------------------------------------------- embeddings


@pytest.mark.parametrize("name", ["tiny", "tiny-sam2", "tiny-sam-hq"])
def test_a_cached_embedding_is_bit_identical(name, subject_image):
    segmenter = as_segmenter(load_or_skip(name))
    image = np.asarray(subject_image)
    computed = segmenter.embed(image)
    first, use1 = caching.embed(segmenter, image)
    second, use2 = caching.embed(segmenter, image)
    assert not use1["hit"] and "off" not in use1 and use2["hit"] and use1["key"] == use2["key"]
    assert second is not first
    assert_same_embedding(second, computed)
    assert results().joinpath("entries", f"{use1['key']}.embedding").is_file()

    # the click segmenter: a hit and a computed embedding give the same masks and logits
    fresh = ClickSegmenter(segmenter, subject_image, cache=False)
    cached = ClickSegmenter(segmenter, subject_image)
    assert (fresh.embedding_cache, cached.embedding_cache) == ("off", "hit")
    assert (fresh.embedding_computations, cached.embedding_computations) == (1, 0)
    for seg in (fresh, cached):
        seg.add_point(150, 100)
        seg.add_point(40, 30, positive=False)
    assert np.array_equal(fresh.mask, cached.mask)
    assert np.array_equal(fresh.logits, cached.logits)
    # box masks take the same embedding
    boxes = [[100, 50, 200, 150]]
    from_cache = box_masks(segmenter, subject_image, boxes)
    assert np.array_equal(from_cache, box_masks(segmenter, subject_image, boxes, cache=False))


def test_another_picture_or_model_misses(tmp_path, subject_image):
    sam = as_segmenter(sdsam_nb.load_sam("tiny"))
    image = np.asarray(subject_image)
    _, base = caching.embed(sam, image)
    one_pixel = image.copy()
    one_pixel[0, 0, 0] ^= 1
    _, moved = caching.embed(sam, one_pixel)
    _, cropped = caching.embed(sam, np.ascontiguousarray(image[:, :-8]))
    # the same architecture with other weights: another checkpoint, another sha256
    state = torch.load(tiny.sam_checkpoint(cache_dir() / "tiny"), weights_only=True)
    state["mask_decoder.iou_prediction_head.layers.0.weight"] += 1.0
    state["image_encoder.patch_embed.proj.weight"] += 0.5
    torch.save(state, tmp_path / "other-sam.pth")
    other = as_segmenter(sdsam_nb.load_sam("tiny", checkpoint=tmp_path / "other-sam.pth"))
    emb, theirs = caching.embed(other, image)
    # another backend family
    _, family = caching.embed(as_segmenter(load_or_skip("tiny-sam")), image)
    uses = [base, moved, cropped, theirs, family]
    assert not any(u["hit"] for u in uses) and all(u["key"] for u in uses)
    assert len({u["key"] for u in uses}) == len(uses)
    # the other model's entry is its own embedding, not the first model's
    mine, _ = caching.embed(sam, image)
    again, hit = caching.embed(other, image)
    assert hit["hit"] and torch.equal(again.features, emb.features)
    assert not torch.equal(again.features, mine.features)


def test_a_model_of_unknown_identity_is_never_cached(subject_image):
    """Weights built in memory have no checksum: nothing would tell their entries apart."""
    from segment_anything import SamPredictor

    built = SamBackend(SamPredictor(tiny.build_sam_model().eval()))
    assert embedding_key(built, np.asarray(subject_image)) == (None, "model identity unknown")
    seg = ClickSegmenter(built, subject_image)
    assert seg.embedding_cache == "off" and seg.embedding_computations == 1
    assert not results().exists()


def test_a_hub_model_is_keyed_by_the_commit_of_its_cached_snapshot(tmp_path, monkeypatch):
    """A transformers model from a hub id (no model_index.json) has its snapshot's commit;
    one whose snapshot the cache does not show has no identity."""
    from huggingface_hub import constants

    from sdsam_nb.caching.keys import model_identity
    from sdsam_nb.models.cache import remember

    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--acme--sam-test"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    (repo / "snapshots" / commit).mkdir(parents=True)
    (repo / "snapshots" / commit / "config.json").write_text("{}")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    # huggingface_hub before 0.26 read the default from its own copy of the constant
    from huggingface_hub import file_download

    monkeypatch.setattr(file_download, "HF_HUB_CACHE", str(tmp_path / "hub"), raising=False)

    def loaded(name):
        net = torch.nn.Linear(2, 2)
        return remember(net, backend="transformers", family="sam", model=name, path=name)

    assert model_identity(loaded("acme/sam-test"))["commit"] == commit
    assert model_identity(loaded("acme/not-cached")) is None


def test_cache_false_never_reads_or_writes(monkeypatch, tiny_sd, tiny_sam, subject_image):
    # fill the cache with these very computations first
    generate(tiny_sd, PROMPT, n=2, **QUICK)
    seg = ClickSegmenter(tiny_sam, subject_image)
    seg.add_point(150, 100)
    before = snapshot(results())
    assert before  # entries exist, and cache=False must not look at them

    def forbidden(*args, **kwargs):
        raise AssertionError("cache=False touched the disk cache")

    monkeypatch.setattr(DiskCache, "get", forbidden)
    monkeypatch.setattr(DiskCache, "put", forbidden)
    monkeypatch.setattr(DiskCache, "evict", forbidden)
    images = generate(tiny_sd, PROMPT, n=2, cache=False, **QUICK)
    assert [im.info["cache"] for im in images] == ["off", "off"]
    generate_background(tiny_sd, PROMPT, subject_image, size=64, steps=2, cache=False)
    off = ClickSegmenter(tiny_sam, subject_image, cache=False)
    assert off.embedding_cache == "off"
    mask = np.zeros((200, 300), bool)
    mask[60:140, 110:190] = True
    score_results(subject_image, [subject_image], mask, predictor=tiny_sam, cache=False)
    box_masks(tiny_sam, subject_image, [[100, 50, 200, 150]], cache=False)
    assert snapshot(results()) == before


def test_a_zero_cap_turns_the_caches_off(monkeypatch, tiny_sd, tiny_sam, subject_image):
    monkeypatch.setenv("SDSAM_CACHE_GB", "0")
    with caching.recorded() as uses:
        images = generate(tiny_sd, PROMPT, **QUICK)
        seg = ClickSegmenter(tiny_sam, subject_image)
    assert images[0].info["cache"] == "off" and seg.embedding_cache == "off"
    assert [u["off"] for u in uses] == ["SDSAM_CACHE_GB=0"] * 2
    assert not results().exists()


_FILLER = textwrap.dedent(
    """
    import hashlib, sys, time
    from pathlib import Path
    import numpy as np
    import sdsam_nb
    from sdsam_nb import caching

    folder, me = Path(sys.argv[1]), sys.argv[2]
    (folder / f"ready-{me}").touch()
    while not all((folder / f"ready-{w}").exists() for w in ("a", "b")):
        time.sleep(0.01)
    # many small entries, the same keys in both processes, a cap that evicts all the time
    store = caching.DiskCache(folder / "blobs", max_bytes=40 * 1100)
    order = range(150) if me == "a" else reversed(range(150))
    for i in order:
        payload = hashlib.sha256(str(i).encode()).digest() * (1 + i % 30)
        key = hashlib.sha256(payload).hexdigest()
        store.put(key, "blob", payload)
        got = store.get(key, "blob")
        assert got is None or got == payload, i
    # real embeddings, the same pictures in both processes at once
    seg = sdsam_nb.segment.as_segmenter(sdsam_nb.load_sam("tiny"))
    for seed in range(4):
        image = np.random.default_rng(seed).integers(0, 256, (64, 96, 3), dtype=np.uint8)
        caching.embed(seg, image)
    print("ok")
    """
)


def test_two_processes_filling_one_cache_leave_no_corrupt_entry(tmp_path):
    env = {**os.environ}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _FILLER, str(tmp_path), me],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for me in ("a", "b")
    ]
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
        assert out.strip() == "ok"
    blobs = DiskCache(tmp_path / "blobs", max_bytes=40 * 1100)
    stored = list((tmp_path / "blobs" / "entries").iterdir())
    assert stored and blobs.size() <= blobs.max_bytes
    for path in stored:
        data = path.read_bytes()
        payload = data[_HEADER:]
        assert data[: len(_MAGIC)] == _MAGIC
        assert hashlib.sha256(payload).digest() == data[len(_MAGIC) : _HEADER]
        assert path.name == f"{hashlib.sha256(payload).hexdigest()}.blob"  # the key's own bytes
    assert not list((tmp_path / "blobs" / "tmp").iterdir())
    # every embedding entry is whole and equals what this process computes
    seg = as_segmenter(sdsam_nb.load_sam("tiny"))
    assert len(caching.default_store().keys("embedding")) == 4
    for seed in range(4):
        image = picture(seed)
        cached, use = caching.embed(seg, image)
        assert use["hit"], seed
        assert_same_embedding(cached, seg.embed(image))


# --------------------------------------------------------------------------- generated pictures


def _pixels(images) -> list[np.ndarray]:
    return [np.asarray(im) for im in images]


def test_a_cached_picture_is_bit_identical(tiny_sd):
    computed = generate(tiny_sd, PROMPT, seed=3, n=2, cache=False, **QUICK)
    with caching.recorded() as first_uses:
        first = generate(tiny_sd, PROMPT, seed=3, n=2, **QUICK)
    with caching.recorded() as second_uses:
        second = generate(tiny_sd, PROMPT, seed=3, n=2, **QUICK)
    assert [im.info["cache"] for im in first] == ["miss", "miss"]
    assert [im.info["cache"] for im in second] == ["hit", "hit"]
    assert [u["key"] for u in first_uses] == [u["key"] for u in second_uses]
    assert second.seeds == [3, 4] and second.nsfw == [False, False]
    for a, b, c in zip(_pixels(computed), _pixels(first), _pixels(second), strict=True):
        assert a.dtype == np.uint8 and np.array_equal(a, b) and np.array_equal(a, c)
    assert all(im.mode == "RGB" and im.size == (64, 64) for im in second)
    # each variation is its own entry: seed 4 alone is variation 1 of seed 3
    alone = generate(tiny_sd, PROMPT, seed=4, n=1, **QUICK)
    assert alone[0].info["cache"] == "hit" and np.array_equal(_pixels(alone)[0], _pixels(second)[1])
    # backgrounds: the picture at the processing size is cached, the resize redone
    like = Image.new("RGB", (150, 100))
    bg1 = generate_background(tiny_sd, PROMPT, like, size=64, steps=2, n=2)
    bg2 = generate_background(tiny_sd, PROMPT, like, size=64, steps=2, n=2)
    assert [im.info["cache"] for im in bg2] == ["hit", "hit"]
    assert [im.size for im in bg2] == [(150, 100)] * 2
    assert all(np.array_equal(a, b) for a, b in zip(_pixels(bg1), _pixels(bg2), strict=True))


@pytest.mark.parametrize(
    "change",
    [
        {"prompt": "a blue chair"},
        {"negative_prompt": "blurry"},
        {"seed": 1},
        {"steps": 3},
        {"guidance": 5.0},
        {"width": 72},
        {"scheduler": "euler_a"},
        {"scheduler": "ddim"},
    ],
    ids=lambda c: next(iter(c)) + "=" + str(next(iter(c.values()))),
)
def test_any_parameter_that_decides_the_pixels_misses(tiny_sd, change):
    args = {"prompt": PROMPT, "seed": 0, **QUICK}
    generate(tiny_sd, **args)
    with caching.recorded() as uses:
        changed = generate(tiny_sd, **{**args, **change})
    assert [u["hit"] for u in uses] == [False] and "off" not in uses[0]
    assert changed[0].info["cache"] == "miss"
    assert len(caching.default_store().keys("picture")) == 2
    with caching.recorded() as again:
        generate(tiny_sd, **args)  # the first is still there
    assert [u["hit"] for u in again] == [True]


def test_another_model_misses(tmp_path, tiny_sd):
    """A copy of the tiny model with other UNet weights has another checksum."""
    from safetensors.torch import load_file, save_file

    folder = tmp_path / "other-sd"
    shutil.copytree(tiny.sd_folder(cache_dir() / "tiny"), folder)
    weights = folder / "unet" / "diffusion_pytorch_model.safetensors"
    state = load_file(weights)
    state["conv_out.bias"] = state["conv_out.bias"] + 0.5
    save_file(state, weights)
    other = sdsam_nb.load_sd(str(folder), progress=False)
    mine = generate(tiny_sd, PROMPT, **QUICK)
    with caching.recorded() as uses:
        theirs = generate(other, PROMPT, **QUICK)
    assert [u["hit"] for u in uses] == [False] and "off" not in uses[0]
    assert not np.array_equal(_pixels(mine)[0], _pixels(theirs)[0])
    assert np.array_equal(_pixels(generate(other, PROMPT, **QUICK))[0], _pixels(theirs)[0])


def test_a_blacked_out_picture_is_not_stored(tiny_sd, monkeypatch):
    def flag_all(self, image, device, dtype):
        return image, [True]

    monkeypatch.setattr(type(tiny_sd), "run_safety_checker", flag_all)
    with pytest.warns(sdsam_nb.SafetyCheckerWarning), caching.recorded() as uses:
        images = generate(tiny_sd, PROMPT, **QUICK)
    assert images[0].info["cache"] == "off" and "safety" in uses[0]["off"]
    assert not caching.default_store().keys()


# --------------------------------------------------------------------------- run records


def test_each_call_records_what_came_from_the_cache(tmp_path, tiny_sam, subject_image):
    from sdsam_nb import ClickSegmenter, recording

    run = runs.start("02_click_to_mask", {"output_root": str(tmp_path)}, echo=False)
    try:
        for cache in (True, True, False):
            ClickSegmenter.from_prompts(tiny_sam, subject_image, points=[[150, 100]], cache=cache)
    finally:
        recording.deactivate()
    entries = [call["cache"] for call in run.record["executions"][-1]["calls"]]
    miss, hit, off = entries
    assert (miss["hits"], miss["misses"], miss["off"]) == (0, 1, 0)
    assert (hit["hits"], hit["misses"], hit["off"]) == (1, 0, 0)
    assert (off["hits"], off["misses"], off["off"]) == (0, 0, 1)
    key = miss["entries"][0]["key"]
    assert hit["entries"] == [{"what": "embedding", "key": key, "hit": True}]
    off_entry = {"what": "embedding", "key": None, "hit": False, "off": "cache=False"}
    assert off["entries"] == [off_entry]
    # the parameter exists, and a run recorded before it replays without the cache
    assert runs.check_params(cache=False) == {"cache": False}
    assert runs.BEFORE_IT_EXISTED["cache"] is False


@pytest.mark.slow
def test_a_rerun_of_the_notebook_takes_its_pictures_from_the_cache(tmp_path):
    from test_notebooks import FAST, _call, _here

    name = "01_generate_subject"
    first = _here([name], FAST, tmp_path / "a")
    second = _here([name], FAST, tmp_path / "b")
    made = _call(first.record, name, "generate")["cache"]  # the call's own record
    taken = _call(second.record, name, "generate")["cache"]
    n = FAST["n_variations"]
    assert (made["hits"], made["misses"], made["off"]) == (0, n, 0)
    assert (taken["hits"], taken["misses"], taken["off"]) == (n, 0, 0)
    assert [e["key"] for e in made["entries"]] == [e["key"] for e in taken["entries"]]
    assert [e["seed"] for e in taken["entries"]] == list(range(n))
    assert first.record["notebooks"][name]["params"]["cache"] is True
    for key in ("subject", "subject-variation-1"):
        a, b = (np.asarray(Image.open(r.file(key))) for r in (first, second))
        assert np.array_equal(a, b), key
    stored = caching.default_store().keys("picture")
    assert sorted(stored) == sorted(e["key"] for e in made["entries"])


def test_a_key_finds_its_package_distributions_as_importlib_does(monkeypatch):
    """The distributions of a model's package in its cache key (caching.keys) are those
    importlib.metadata.packages_distributions() names, for every installed package; for a
    package installed under its own name no file list is read (that function reads them all:
    0.3-0.4 s, on each run's first cached step)."""
    from importlib import metadata

    from sdsam_nb.caching import keys

    for top, names in metadata.packages_distributions().items():
        assert set(keys._providers(top)) == set(names), top
    assert keys.library_versions(np.zeros(1))["numpy"] == np.__version__
    keys._providers.cache_clear()
    read = []
    files = metadata.Distribution.files
    monkeypatch.setattr(
        metadata.Distribution, "files", property(lambda d: read.append(d) or files.fget(d))
    )
    assert keys._providers("diffusers") == ("diffusers",)
    assert keys._providers("segment_anything") == ("segment-anything",)
    assert not read, [d.metadata["Name"] for d in read]  # importlib's: every one's
