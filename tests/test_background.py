"""background.py on the tiny SD model: sizes, reproducibility, subject identity, compositing,
scores and input checks. Two denoising steps at <= 128 px keep each call well under a second."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from sdsam_nb import background as bg
from sdsam_nb import masks
from sdsam_nb.background import (
    SafetyCheckerWarning,
    composite,
    generate,
    generate_background,
    inpaint_background,
    object_expansion,
    processing_size,
    score_results,
    subject_fidelity,
)

FAST = {"steps": 2, "size": 96}  # 300x200 runs at 96x64
PROMPT = "a beach at sunset"


def arr(image) -> np.ndarray:
    return np.asarray(image)


class Spy:
    """Stands in for the inpainting pipeline: records each call's arguments, then runs it."""

    def __init__(self, pipe):
        self.pipe = pipe
        self.calls: list[dict] = []

    def __call__(self, **kwargs):
        self.calls.append(kwargs)
        return self.pipe(**kwargs)

    def __getattr__(self, name):
        return getattr(self.pipe, name)


@pytest.fixture
def spy(monkeypatch):
    """Every background method's inpainting pipeline, spied on."""
    from sdsam_nb.background.methods import DedicatedInpainting, OwnWeights

    spies: list[Spy] = []

    def spied(real):
        def pipeline(self, pipe):
            spies.append(Spy(real(self, pipe)))
            return spies[-1]

        return pipeline

    for method in (OwnWeights, DedicatedInpainting):
        monkeypatch.setattr(method, "pipeline", spied(method.pipeline))
    return spies


# --------------------------------------------------------------------------- processing size


@pytest.mark.parametrize(
    ("w", "h", "size", "expected"),
    [
        (300, 200, 128, (128, 88)),  # 85.3 -> 88
        (200, 300, 128, (88, 128)),
        (300, 200, 512, (512, 344)),  # 341.3 -> 344
        (640, 480, 512, (512, 384)),  # exact
        (256, 256, 128, (128, 128)),
        (1000, 64, 256, (256, 64)),  # 16.4 would round to 16: the 64-px floor
        (100, 100, 512, (512, 512)),  # small pictures are upscaled to the model's size
    ],
)
def test_processing_size_keeps_aspect_in_multiples_of_8(w, h, size, expected):
    pw, ph = processing_size(w, h, size)
    assert (pw, ph) == expected
    assert pw % 8 == 0 and ph % 8 == 0
    assert max(pw, ph) == size
    if min(pw, ph) > 64:  # within rounding: the short side is off by at most 4 px
        assert abs(min(pw, ph) - min(w, h) * size / max(w, h)) <= 4


@pytest.mark.parametrize("size", [100, 56, 0, 128.0, "512"])
def test_processing_size_rejects_bad_size(size):
    with pytest.raises(ValueError, match="size"):
        processing_size(300, 200, size)


# --------------------------------------------------------------------------- generate


def test_generate_size_seeds_and_reproducibility(tiny_sd):
    three = generate(tiny_sd, PROMPT, seed=7, n=3, steps=2, width=96, height=64)
    assert len(three) == 3 and three.seeds == [7, 8, 9] and three.nsfw == [False] * 3
    assert all(im.size == (96, 64) and im.mode == "RGB" for im in three)
    alone = generate(tiny_sd, PROMPT, seed=9, n=1, steps=2, width=96, height=64)
    assert np.array_equal(arr(three[2]), arr(alone[0]))  # variation i reproducible on its own
    again = generate(tiny_sd, PROMPT, seed=7, n=1, steps=2, width=96, height=64)
    assert np.array_equal(arr(three[0]), arr(again[0]))
    assert not np.array_equal(arr(three[0]), arr(three[1]))


def test_generate_scheduler_is_per_call(tiny_sd):
    from diffusers import EulerAncestralDiscreteScheduler

    own, config = tiny_sd.scheduler, dict(tiny_sd.config)
    default = generate(tiny_sd, PROMPT, steps=2, width=64, height=64)[0]
    for name in bg.SCHEDULERS:  # every name builds from the pipe's config
        made = bg.make_scheduler(name, tiny_sd)
        assert made is not own and made.config.beta_schedule == own.config.beta_schedule
    euler = generate(tiny_sd, PROMPT, steps=2, width=64, height=64, scheduler="euler_a")[0]
    assert not np.array_equal(arr(euler), arr(default))
    instance = EulerAncestralDiscreteScheduler.from_config(own.config)
    same = generate(tiny_sd, PROMPT, steps=2, width=64, height=64, scheduler=instance)[0]
    assert np.array_equal(arr(same), arr(euler))
    # the shared pipe (and the inpainting pipe sharing its scheduler) is left as it was
    assert tiny_sd.scheduler is own and dict(tiny_sd.config) == config
    assert bg.inpainting(tiny_sd).scheduler is own
    assert np.array_equal(
        arr(generate(tiny_sd, PROMPT, steps=2, width=64, height=64)[0]), arr(default)
    )


def test_generate_restores_scheduler_when_the_call_fails(tiny_sd):
    from diffusers import DDIMScheduler

    class Broken(DDIMScheduler):
        def set_timesteps(self, *args, **kwargs):
            raise RuntimeError("broken scheduler")

    own = tiny_sd.scheduler
    with pytest.raises(RuntimeError, match="broken"):
        generate(tiny_sd, PROMPT, steps=2, width=64, height=64, scheduler=Broken())
    assert tiny_sd.scheduler is own


def test_generate_flags_blacked_out_images(tiny_sd, monkeypatch):
    calls = []

    def fake_checker(self, image, device, dtype):
        calls.append(1)
        return image, [len(calls) == 2]  # the second variation is "blacked out"

    monkeypatch.setattr(type(tiny_sd), "run_safety_checker", fake_checker)
    with pytest.warns(SafetyCheckerWarning, match=r"variation\(s\) \[1\] \(seeds \[4\]\)"):
        images = generate(tiny_sd, PROMPT, seed=3, n=2, steps=1, width=64, height=64)
    assert images.nsfw == [False, True]
    assert images[1].info["nsfw"] is True and images[0].info["nsfw"] is False


def test_generate_background_matches_the_subject_picture(tiny_sd, subject_image):
    images = generate_background(tiny_sd, PROMPT, subject_image, size=128, steps=2, n=2, seed=5)
    assert [im.size for im in images] == [(300, 200)] * 2
    assert images.seeds == [5, 6]
    square = generate_background(tiny_sd, PROMPT, size=64, steps=2)
    assert square[0].size == (64, 64)


# --------------------------------------------------------------------------- inpaint


def test_inpaint_keeps_size_aspect_and_subject(tiny_sd, subject_image, subject_mask, spy):
    out = inpaint_background(tiny_sd, subject_image, subject_mask, PROMPT, seed=1, **FAST)
    assert len(out) == 1 and out[0].size == (300, 200) and out[0].mode == "RGB"
    call = spy[0].calls[0]
    assert (call["width"], call["height"]) == (96, 64)  # own aspect, multiples of 8
    assert call["image"].size == (96, 64) and call["mask_image"].size == (96, 64)
    repaint = arr(call["mask_image"])
    assert call["mask_image"].mode == "L" and set(np.unique(repaint)) == {0, 255}
    assert repaint[32, 48] == 0 and repaint[0, 0] == 255  # white = repaint = background
    inner = masks.shrink(subject_mask, bg.DEFAULT_FEATHER)
    result, original = arr(out[0]), arr(subject_image)
    assert np.array_equal(result[inner], original[inner])
    assert subject_fidelity(subject_image, out[0], subject_mask)["max_abs"] == 0
    assert np.abs(result[~subject_mask].astype(int) - original[~subject_mask]).mean() > 10


def test_inpaint_portrait_comes_back_portrait(tiny_sd, subject_image, subject_mask, spy):
    image = subject_image.transpose(Image.Transpose.TRANSPOSE)  # 200x300
    out = inpaint_background(tiny_sd, image, subject_mask.T, PROMPT, grow=4, feather=0, **FAST)
    assert out[0].size == (200, 300)
    assert (spy[0].calls[0]["width"], spy[0].calls[0]["height"]) == (64, 96)
    assert np.array_equal(arr(out[0])[subject_mask.T], arr(image)[subject_mask.T])  # hard paste


def test_inpaint_seeds_and_variations(tiny_sd, subject_image, subject_mask):
    run = dict(image=subject_image, subject_mask=subject_mask, prompt=PROMPT, **FAST)
    three = inpaint_background(tiny_sd, seed=10, n=3, **run)
    assert three.seeds == [10, 11, 12] and [im.size for im in three] == [(300, 200)] * 3
    alone = inpaint_background(tiny_sd, seed=12, **run)
    again = inpaint_background(tiny_sd, seed=10, **run)
    assert np.array_equal(arr(three[2]), arr(alone[0]))
    assert np.array_equal(arr(three[0]), arr(again[0]))
    assert not np.array_equal(arr(three[0]), arr(three[1]))


def test_inpaint_without_keep_subject_returns_model_output(tiny_sd, subject_image, subject_mask):
    out = inpaint_background(
        tiny_sd, subject_image, subject_mask, PROMPT, keep_subject=False, strength=0.5, **FAST
    )
    assert out[0].size == (300, 200)
    assert subject_fidelity(subject_image, out[0], subject_mask)["max_abs"] > 0


def test_inpaint_with_dedicated_9_channel_checkpoint(
    tiny_sd, subject_image, subject_mask, tmp_path, spy
):
    import torch
    from diffusers import StableDiffusionInpaintPipeline, UNet2DConditionModel

    config = dict(tiny_sd.unet.config, in_channels=9)
    torch.manual_seed(0)
    unet = UNet2DConditionModel.from_config(config)
    folder = tmp_path / "tiny-inpainting"
    StableDiffusionInpaintPipeline(
        vae=tiny_sd.vae,
        text_encoder=tiny_sd.text_encoder,
        tokenizer=tiny_sd.tokenizer,
        unet=unet,
        scheduler=tiny_sd.scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    ).save_pretrained(folder)
    out = inpaint_background(
        tiny_sd, subject_image, subject_mask, PROMPT, model=str(folder), **FAST
    )
    assert spy[0].unet.config.in_channels == 9 and spy[0].unet is not tiny_sd.unet
    assert out[0].size == (300, 200)
    assert subject_fidelity(subject_image, out[0], subject_mask)["max_abs"] == 0
    # the dedicated checkpoint samples with the sampler load_sd chose for the pipe
    assert type(spy[0].scheduler) is type(tiny_sd.scheduler)


def test_inpaint_scheduler_is_per_call(tiny_sd, subject_image, subject_mask):
    own = tiny_sd.scheduler
    default = inpaint_background(tiny_sd, subject_image, subject_mask, PROMPT, **FAST)[0]
    ddim = inpaint_background(
        tiny_sd, subject_image, subject_mask, PROMPT, scheduler="ddim", **FAST
    )[0]
    assert not np.array_equal(arr(ddim), arr(default))
    assert tiny_sd.scheduler is own and bg.inpainting(tiny_sd).scheduler is own
    again = inpaint_background(tiny_sd, subject_image, subject_mask, PROMPT, **FAST)[0]
    assert np.array_equal(arr(again), arr(default))
    with pytest.raises(ValueError, match="scheduler='fast' is not one of"):
        inpaint_background(tiny_sd, subject_image, subject_mask, PROMPT, scheduler="fast", **FAST)


# --------------------------------------------------------------------------- composite


@pytest.fixture
def square_subject():
    """A 100x80 picture with a 20x10 subject (a textured rectangle) at x 30..50, y 40..50."""
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (80, 100, 3), dtype=np.uint8)
    mask = np.zeros((80, 100), bool)
    mask[40:50, 30:50] = True
    return image, mask


@pytest.fixture
def plain_background():
    return Image.new("RGB", (160, 120), (10, 200, 30))


@pytest.mark.parametrize(
    ("position", "top_left"),
    [((7, 11), (7, 11)), ("center", (70, 55)), ("bottom", (70, 110))],
)
def test_composite_puts_subject_where_asked(square_subject, plain_background, position, top_left):
    image, mask = square_subject
    out, placed = composite(image, mask, plain_background, position=position, return_mask=True)
    assert out.size == (160, 120) and placed.shape == (120, 160)
    x, y = top_left
    expected = np.zeros((120, 160), bool)
    expected[y : y + 10, x : x + 20] = True
    assert np.array_equal(placed, expected)
    inner = masks.shrink(np.pad(mask, 1), bg.DEFAULT_FEATHER)[1:-1, 1:-1]  # cut-out's own edge
    assert inner.sum() > 0
    ys, xs = np.nonzero(inner)
    result = arr(out)
    assert np.array_equal(result[ys - 40 + y, xs - 30 + x], image[ys, xs])
    assert np.array_equal(result[~placed], arr(plain_background)[~placed])  # rest untouched


def test_composite_hard_edge_copies_the_whole_subject(square_subject, plain_background):
    image, mask = square_subject
    out = composite(image, mask, plain_background, position=(0, 0), feather=0)
    assert np.array_equal(arr(out)[0:10, 0:20], image[40:50, 30:50])


def test_composite_scale_and_clipping(square_subject, plain_background):
    image, mask = square_subject
    _, placed = composite(image, mask, plain_background, scale=2.0, return_mask=True)
    assert placed.sum() == 4 * mask.sum()
    _, clipped = composite(image, mask, plain_background, position=(150, -5), return_mask=True)
    assert clipped.sum() == 10 * 5  # 10 of 20 columns and 5 of 10 rows land on the background
    with pytest.raises(ValueError, match="position"):
        composite(image, mask, plain_background, position=(160, 0))
    with pytest.raises(ValueError, match="position"):
        composite(image, mask, plain_background, position=(-20, 0))


def test_composite_harmonize_moves_colours_towards_background(square_subject, plain_background):
    image, mask = square_subject
    plain, placed = composite(image, mask, plain_background, return_mask=True)
    half = composite(image, mask, plain_background, harmonize=True)
    full = composite(image, mask, plain_background, harmonize=1.0)
    target = np.array([10, 200, 30])
    distance = [np.abs(arr(im)[placed].mean(axis=0) - target).sum() for im in (plain, half, full)]
    assert distance[0] > distance[1] > distance[2]


# --------------------------------------------------------------------------- scores


def test_object_expansion_on_hand_made_masks():
    subject = np.zeros((40, 40), bool)
    subject[10:20, 10:20] = True  # 100 px
    result = np.zeros((40, 40), bool)
    result[10:22, 10:20] = True  # 120 px, 20 outside
    assert object_expansion(subject, result) == pytest.approx(0.2)
    assert object_expansion(subject, subject) == 0.0
    shrunk = np.zeros((40, 40), bool)
    shrunk[12:18, 12:18] = True
    assert object_expansion(subject, shrunk) == 0.0  # only growth counts
    moved = np.zeros((40, 40), bool)
    moved[30:40, 30:40] = True
    assert object_expansion(subject, moved) == 1.0


def test_subject_fidelity_on_hand_made_pictures():
    image = np.full((64, 64, 3), 100, np.uint8)
    mask = np.zeros((64, 64), bool)
    mask[10:30, 10:30] = True  # shrink 3 leaves 14x14 = 196 px
    result = image.copy()
    result[20, 20] = (110, 100, 97)  # inside: differences 10, 0, 3
    result[10, 10] = (0, 0, 0)  # on the feathered rim: not compared
    score = subject_fidelity(image, result, mask)
    assert score == {"max_abs": 10, "mean_abs": pytest.approx(13 / (196 * 3)), "pixels": 196}
    assert subject_fidelity(image, image, mask, shrink=0)["max_abs"] == 0


def test_score_results_replays_the_clicks_on_each_result(
    tiny_sam, subject_image, subject_mask, monkeypatch
):
    from sdsam_nb.segment.clicks import ClickSegmenter

    seg = ClickSegmenter(tiny_sam, subject_image)
    seg.add_point(150, 100)
    seg.add_point(10, 10, positive=False)
    record = seg.to_dict()
    changed = arr(subject_image).copy()
    changed[5:15, 5:15] = 0  # background only: the subject's pixels stay
    scores = score_results(
        subject_image, [subject_image, changed], subject_mask, predictor=tiny_sam, clicks=record
    )
    assert [s["variation"] for s in scores] == [0, 1]
    assert all(s["max_abs"] == 0 and s["pixels"] > 0 for s in scores)
    # the same clicks on the same picture: the result's expansion is the baseline's
    again = ClickSegmenter.from_dict(tiny_sam, subject_image, record).mask
    expected = round(object_expansion(subject_mask, again), 4)
    assert scores[0]["object_expansion"] == scores[0]["object_expansion_original"] == expected
    again = ClickSegmenter.from_dict(tiny_sam, Image.fromarray(changed), record).mask
    assert scores[1]["object_expansion"] == round(object_expansion(subject_mask, again), 4)
    # the segmenter itself gives the same scores and its embedding is reused
    embeds = []
    set_image = tiny_sam.set_image
    monkeypatch.setattr(
        tiny_sam, "set_image", lambda *a, **k: embeds.append(1) or set_image(*a, **k)
    )
    pictures = [subject_image, changed]
    kwargs = {"predictor": tiny_sam, "cache": False}  # count the encoder's runs
    same = score_results(subject_image, pictures, subject_mask, clicks=seg, **kwargs)
    assert same == scores and len(embeds) == 2  # one per result, none for the original
    embeds.clear()
    score_results(subject_image, [changed], subject_mask, clicks=record, **kwargs)
    assert len(embeds) == 2  # the original once, the result once
    # with the disk cache (the default) both pictures' embeddings are stored already
    embeds.clear()
    cached = score_results(subject_image, pictures, subject_mask, predictor=tiny_sam, clicks=record)
    assert cached == scores and embeds == []


def test_score_results_without_clicks_uses_the_mask_box(tiny_sam, subject_image, subject_mask):
    from sdsam_nb.segment.clicks import ClickSegmenter

    scores = score_results(subject_image, [subject_image], subject_mask, predictor=tiny_sam)
    box = list(masks.bbox(subject_mask))
    again = ClickSegmenter.from_prompts(tiny_sam, subject_image, box=box).mask
    assert scores[0]["object_expansion"] == round(object_expansion(subject_mask, again), 4)
    # without a predictor: fidelity only
    (plain,) = score_results(subject_image, [subject_image], subject_mask, shrink=0)
    assert set(plain) == {"variation", "max_abs", "mean_abs", "pixels"}
    with pytest.raises(ValueError, match="results must be a list"):
        score_results(subject_image, subject_image, subject_mask)
    with pytest.raises(ValueError, match="result is 60x100"):
        score_results(subject_image, [SMALL], subject_mask)


# --------------------------------------------------------------------------- bad input


SMALL = Image.new("RGB", (60, 100))
GEN = {"steps": 1, "width": 64, "height": 64}
IP = {"steps": 1, "size": 64}


def _other_size(mask):
    wrong = np.zeros((100, 100), bool)
    wrong[10:20, 10:20] = True
    return wrong


# (argument the message must name, call(pipe, image, mask)); no call reaches the model
BAD = {
    "width": ("width", lambda p, i, m: generate(p, PROMPT, steps=1, width=100, height=64)),
    "width-small": ("width", lambda p, i, m: generate(p, PROMPT, steps=1, width=56, height=64)),
    "height": ("height", lambda p, i, m: generate(p, PROMPT, steps=1, width=64, height=32)),
    "steps": ("steps", lambda p, i, m: generate(p, PROMPT, steps=0, width=64, height=64)),
    "steps-float": ("steps", lambda p, i, m: generate(p, PROMPT, steps=2.5, width=64, height=64)),
    "n": ("n", lambda p, i, m: generate(p, PROMPT, n=0, **GEN)),
    "prompt-blank": ("prompt", lambda p, i, m: generate(p, "  ", **GEN)),
    "prompt-none": ("prompt", lambda p, i, m: generate(p, None, **GEN)),
    "negative": ("negative_prompt", lambda p, i, m: generate(p, PROMPT, negative_prompt=3, **GEN)),
    "guidance": ("guidance", lambda p, i, m: generate(p, PROMPT, guidance=float("nan"), **GEN)),
    "seed": ("seed", lambda p, i, m: generate(p, PROMPT, seed=-1, **GEN)),
    "seed-range": ("seed", lambda p, i, m: generate(p, PROMPT, seed=2**64 - 1, n=2, **GEN)),
    "scheduler": ("scheduler", lambda p, i, m: generate(p, PROMPT, scheduler="karras", **GEN)),
    "mask-size": (
        "subject_mask",
        lambda p, i, m: inpaint_background(p, i, _other_size(m), PROMPT, **IP),
    ),
    "mask-empty": (
        "subject_mask",
        lambda p, i, m: inpaint_background(p, i, np.zeros_like(m), PROMPT, **IP),
    ),
    "mask-full": (
        "subject_mask",
        lambda p, i, m: inpaint_background(p, i, np.ones_like(m), PROMPT, **IP),
    ),
    "image-small": ("image", lambda p, i, m: inpaint_background(p, SMALL, m, PROMPT, **IP)),
    "image-type": ("image", lambda p, i, m: inpaint_background(p, 42, m, PROMPT, **IP)),
    "strength-0": (
        "strength",
        lambda p, i, m: inpaint_background(p, i, m, PROMPT, strength=0, **IP),
    ),
    "strength-big": (
        "strength",
        lambda p, i, m: inpaint_background(p, i, m, PROMPT, strength=1.5, **IP),
    ),
    "strength-steps": (
        "strength",
        lambda p, i, m: inpaint_background(p, i, m, PROMPT, strength=0.4, **IP),
    ),
    "size": ("size", lambda p, i, m: inpaint_background(p, i, m, PROMPT, steps=1, size=100)),
    "inpaint-n": ("n", lambda p, i, m: inpaint_background(p, i, m, PROMPT, n=0, **IP)),
    "inpaint-steps": ("steps", lambda p, i, m: inpaint_background(p, i, m, PROMPT, steps=0)),
    "inpaint-guidance": (
        "guidance",
        lambda p, i, m: inpaint_background(p, i, m, PROMPT, guidance=-1, **IP),
    ),
    "grow": ("grow", lambda p, i, m: inpaint_background(p, i, m, PROMPT, grow=-2, **IP)),
    "grow-all": ("grow", lambda p, i, m: inpaint_background(p, i, m, PROMPT, grow=10_000, **IP)),
    "feather": ("feather", lambda p, i, m: inpaint_background(p, i, m, PROMPT, feather=-1, **IP)),
    "keep_subject": (
        "keep_subject",
        lambda p, i, m: inpaint_background(p, i, m, PROMPT, keep_subject=1, **IP),
    ),
    "like": ("like", lambda p, i, m: generate_background(p, PROMPT, SMALL, steps=1, size=64)),
    "composite-mask-size": ("subject_mask", lambda p, i, m: composite(i, _other_size(m), i)),
    "composite-mask-empty": ("subject_mask", lambda p, i, m: composite(i, np.zeros_like(m), i)),
    "background-small": ("background", lambda p, i, m: composite(i, m, SMALL)),
    "background-type": ("background", lambda p, i, m: composite(i, m, 1.5)),
    "scale-0": ("scale", lambda p, i, m: composite(i, m, i, scale=0)),
    "scale-tiny": ("scale", lambda p, i, m: composite(i, m, i, scale=0.001)),
    "position-name": ("position", lambda p, i, m: composite(i, m, i, position="top")),
    "position-float": ("position", lambda p, i, m: composite(i, m, i, position=(1.5, 2))),
    "composite-feather": ("feather", lambda p, i, m: composite(i, m, i, feather=-3)),
    "harmonize": ("harmonize", lambda p, i, m: composite(i, m, i, harmonize=2)),
    "expansion-empty": ("subject_mask", lambda p, i, m: object_expansion(np.zeros_like(m), m)),
    "expansion-size": ("result_mask", lambda p, i, m: object_expansion(m, _other_size(m))),
    "fidelity-size": ("result", lambda p, i, m: subject_fidelity(i, SMALL, m)),
    "fidelity-shrink": ("shrink", lambda p, i, m: subject_fidelity(i, i, m, shrink=1000)),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_raises_value_error_naming_the_argument(
    case, tiny_sd, subject_image, subject_mask, spy
):
    name, call = BAD[case]
    own = tiny_sd.scheduler
    with pytest.raises(ValueError, match=rf"\b{name}\b"):
        call(tiny_sd, subject_image, subject_mask)
    assert not spy or not spy[0].calls  # rejected before the model ran
    assert tiny_sd.scheduler is own


def test_non_rgb_inputs_are_converted(tiny_sd, subject_image, subject_mask):
    rgba = subject_image.convert("RGBA")
    grey = np.asarray(subject_image.convert("L"))
    out = inpaint_background(tiny_sd, rgba, subject_mask.astype(np.uint8) * 255, PROMPT, **FAST)
    assert out[0].mode == "RGB" and out[0].size == (300, 200)
    result = composite(grey, Image.fromarray(subject_mask), rgba)
    assert result.mode == "RGB" and result.size == (300, 200)


def test_pick_names_the_variations_there_are():
    from sdsam_nb import Variations

    made = Variations([Image.new("RGB", (8, 8)), Image.new("RGB", (8, 8), "red")])
    assert made.pick(1) is made[1]
    for bad in (2, -1, True, "0"):
        with pytest.raises(ValueError, match="^pick must be one of the 2 variations, 0 to 1"):
            made.pick(bad)
