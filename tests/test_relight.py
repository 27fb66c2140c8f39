"""Relighting with IC-Light (sdsam_nb.relight) on the tiny SD and its tiny IC-Light offsets:
the picture's size and the alpha kept, seeds, the pipeline's components shared and the
IC-Light UNet built once, offsets for another base model and bad arguments refused in one
line, the relight score, and notebook 04 with relighting on. In this process, small pictures."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

import sdsam_nb
from sdsam_nb import recording, runs
from sdsam_nb.models import cache_dir
from sdsam_nb.models import iclight as iclight_module
from sdsam_nb.models.iclight import MODES, load_iclight
from sdsam_nb.models.tiny import ICLIGHT_FILES, iclight_folder, iclight_offsets

QUICK = {"steps": 2, "size": 64}


def _subject(w: int = 96, h: int = 64) -> tuple[Image.Image, np.ndarray]:
    """A ``w x h`` picture: a blue background and, inside a rectangle (the mask), a disk, a
    bar and a line on a tan ground."""
    pixels = np.full((h, w, 3), (60, 120, 190), np.uint8)
    mask = np.zeros((h, w), bool)
    mask[h // 6 : h - h // 6, w // 4 : w - w // 4] = True
    inside = np.full((h, w, 3), (180, 140, 90), np.uint8)
    cv2.circle(inside, (w // 2, h // 2), min(w, h) // 6, (40, 60, 30), -1)
    cv2.rectangle(inside, (w // 4 + 4, h // 6 + 3), (w // 2 - 4, h // 3), (120, 20, 20), -1)
    cv2.line(inside, (w // 4, h - h // 6), (w - w // 4, h // 6), (250, 250, 250), 2)
    pixels[mask] = inside[mask]
    return Image.fromarray(pixels), mask


@pytest.mark.parametrize(
    ("size", "mode"), [((96, 64), "text"), ((64, 112), "text"), ((112, 72), "background")]
)
def test_keeps_the_pictures_size_and_the_alpha(tiny_sd, size, mode):
    picture, mask = _subject(*size)
    soft = cv2.GaussianBlur(mask.astype(np.float32), (5, 5), 1.0)  # a soft alpha as well
    given = soft.copy()
    if mode == "background":  # a background of another size and aspect: covered, cropped
        extra = {"background": Image.new("RGB", (200, 90), (230, 120, 20))}
    else:
        extra = {"prompt": "warm light from the left"}
    relit = sdsam_nb.relight(tiny_sd, picture, soft, mode=mode, **extra, **QUICK)
    assert relit.image.size == picture.size and relit.image.mode == "RGB"
    assert relit.alpha is soft and np.array_equal(soft, given)  # the alpha as it was given
    before, after = np.asarray(picture), np.asarray(relit.image)
    assert np.array_equal(after[soft == 0], before[soft == 0])  # outside: the picture's own
    inside = soft > 0.999
    assert np.abs(after[inside].astype(int) - before[inside]).mean() > 1  # inside: relit
    assert relit.image.info["mode"] == mode and relit.image.info["iclight"]["weights"] == "tiny"
    assert set(relit.score) == {"edges", "structure", "light_change"}
    # the mask pastes the relit subject as it pasted the original
    back = Image.new("RGB", picture.size, (10, 200, 10))
    pasted = np.asarray(sdsam_nb.composite(relit.image, mask, back, feather=0))
    assert np.array_equal(pasted[mask], after[mask])


@pytest.mark.parametrize("light", ["none", "left", "bottom"])
def test_seeded_and_bit_identical(tiny_sd, light):
    picture, mask = _subject()
    args = {"prompt": "sunset light", "light": light, **QUICK}
    first = sdsam_nb.relight(tiny_sd, picture, mask, seed=3, **args)
    again = sdsam_nb.relight(tiny_sd, picture, mask, seed=3, **args)
    other = sdsam_nb.relight(tiny_sd, picture, mask, seed=4, **args)
    assert np.array_equal(np.asarray(first.image), np.asarray(again.image))
    assert first.score == again.score
    assert not np.array_equal(np.asarray(first.image), np.asarray(other.image))


def test_the_light_and_the_second_pass_change_the_picture(tiny_sd):
    picture, mask = _subject()
    args = {"prompt": "sunset light", "seed": 1, **QUICK}
    plain = np.asarray(sdsam_nb.relight(tiny_sd, picture, mask, **args).image)
    left = np.asarray(sdsam_nb.relight(tiny_sd, picture, mask, light="left", **args).image)
    twice = sdsam_nb.relight(tiny_sd, picture, mask, highres_scale=1.5, **args).image
    assert twice.size == picture.size
    assert not np.array_equal(plain, left)
    assert not np.array_equal(plain, np.asarray(twice))


def test_shares_the_pipelines_components_and_leaves_its_unet_alone(tiny_sd, models):
    before = {k: v.clone() for k, v in tiny_sd.unet.state_dict().items()}
    for mode, spec in MODES.items():
        model = load_iclight(tiny_sd, mode)
        assert model.text_encoder is tiny_sd.text_encoder
        assert model.tokenizer is tiny_sd.tokenizer
        assert model.vae is tiny_sd.vae
        assert model.scheduler is tiny_sd.scheduler
        assert model.unet is not tiny_sd.unet
        assert model.unet.config.in_channels == spec.channels
        # a UNet of its own: none of its tensors is the pipeline's
        mine = {p.data_ptr() for p in model.unet.parameters()}
        assert not mine & {p.data_ptr() for p in tiny_sd.unet.parameters()}
        # its weights: the base's (conv_in widened with zeros) plus the file's offsets
        offsets = load_file(iclight_folder(cache_dir() / "tiny") / spec.weight_name)
        dtype = tiny_sd.unet.dtype  # added in float32, held in the pipeline's dtype

        def plus(base, offset, dtype=dtype):
            return (base.float() + offset.float()).to(dtype)

        conv, offset = model.unet.conv_in.weight, offsets["conv_in.weight"]
        assert conv.dtype == dtype
        assert torch.equal(conv[:, :4], plus(before["conv_in.weight"], offset[:, :4]))
        assert torch.equal(conv[:, 4:], offset[:, 4:].float().to(dtype))
        key = "mid_block.attentions.0.proj_in.weight"
        assert torch.equal(model.unet.state_dict()[key], plus(before[key], offsets[key]))
    assert tiny_sd.unet.config.in_channels == 4
    after = tiny_sd.unet.state_dict()
    assert all(torch.equal(after[k], before[k]) for k in before)


def test_the_iclight_unet_is_built_once_per_pipeline_and_mode(models, monkeypatch):
    built = []
    original = iclight_module._build_unet
    monkeypatch.setattr(
        iclight_module, "_build_unet", lambda *a: built.append(a[1]) or original(*a)
    )
    pipe = sdsam_nb.load_sd("tiny", progress=False)  # into the test's empty model cache
    picture, mask = _subject()
    for _ in range(2):
        sdsam_nb.relight(pipe, picture, mask, prompt="soft light", **QUICK)
    assert built == [8]
    assert load_iclight(pipe, "text") is load_iclight(pipe, "text")
    # a view of the same weights (another sampler) shares it; the other mode is another UNet
    view = sdsam_nb.load_sd("tiny", scheduler="euler", progress=False)
    assert view.unet is pipe.unet and load_iclight(view, "text") is load_iclight(pipe, "text")
    load_iclight(pipe, "background")
    assert built == [8, 12]


def _one_line_error(match: str, call) -> ValueError:
    with pytest.raises(ValueError, match=match) as info:
        call()
    assert "\n" not in str(info.value)
    return info.value


def test_offsets_for_another_base_model_are_refused_in_one_line(tiny_sd, tmp_path):
    from diffusers import UNet2DConditionModel

    picture, mask = _subject()
    config = {**dict(tiny_sd.unet.config), "cross_attention_dim": 64}  # another text encoder
    other = tmp_path / "other.safetensors"
    save_file(iclight_offsets(config, 8, seed=5), other)
    error = _one_line_error(
        r"^weights: .*another base model",
        lambda: sdsam_nb.relight(tiny_sd, picture, mask, prompt="x", weights=other, **QUICK),
    )
    assert "attn2.to_k.weight" in str(error)
    # fc offsets where fbc's are needed: conv_in of 8 input channels, not 12
    folder = tmp_path / "swapped"
    folder.mkdir()
    fc = iclight_folder(cache_dir() / "tiny") / MODES["text"].weight_name
    (folder / MODES["background"].weight_name).write_bytes(fc.read_bytes())
    _one_line_error(
        r"^weights: .*conv_in.weight",
        lambda: load_iclight(tiny_sd, "background", weights=folder),
    )
    # a pipeline whose UNet is not a text-to-image one
    inpaint = UNet2DConditionModel.from_config({**dict(tiny_sd.unet.config), "in_channels": 9})
    fake = type("Pipe", (), {k: getattr(tiny_sd, k) for k in ("vae", "text_encoder")})()
    fake.unet, fake.tokenizer, fake.scheduler = inpaint, tiny_sd.tokenizer, tiny_sd.scheduler
    _one_line_error(r"^pipe's UNet takes 9", lambda: load_iclight(fake, "text"))
    assert set(ICLIGHT_FILES) == {spec.weight_name for spec in MODES.values()}


BAD = [
    ({"mode": "sideways"}, r"^mode must be"),
    ({"light": "diagonal"}, r"^light must be"),
    ({"prompt": " "}, r"^prompt must be a non-empty"),
    ({"prompt": None}, r"^prompt must be"),
    ({"negative_prompt": 3}, r"^negative_prompt must be"),
    ({"mode": "background", "prompt": ""}, r"^background is required"),
    ({"background": Image.new("RGB", (64, 64))}, r"^background is only for"),
    ({"mode": "background", "light": "left", "background": Image.new("RGB", (64, 64))}, "light="),
    ({"seed": -1}, r"^seed must be"),
    ({"seed": 2**64}, r"^seed must be"),
    ({"steps": 0}, r"^steps must be"),
    ({"guidance": -1.0}, r"^guidance must be"),
    ({"size": 60}, r"^size must be"),
    ({"size": 100}, r"^size=100 must be a multiple of 8"),
    ({"light": "left", "light_strength": 0}, r"^light_strength must be"),
    ({"highres_scale": 0.5}, r"^highres_scale must be"),
    ({"highres_denoise": 1.5}, r"^highres_denoise must be"),
    ({"weights": "/nonexistent/iclight.safetensors"}, r"^weights='/nonexistent"),
    ({"weights": 5}, r"^weights must be"),
    ({"alpha": np.zeros((64, 96), bool)}, r"^alpha is empty"),
    ({"alpha": np.ones((10, 10), bool)}, r"^alpha is 10x10"),
    ({"alpha": np.full((64, 96), 1.5, np.float32)}, r"^alpha must be finite values in 0..1"),
    ({"alpha": np.ones((64, 90), np.float32)}, r"^alpha is 64x90 but the picture is 64x96"),
    ({"subject": Image.new("RGB", (40, 40))}, r"^subject"),
]


@pytest.mark.parametrize(("change", "match"), BAD, ids=[b[1] for b in BAD])
def test_bad_arguments_are_one_line_errors(tiny_sd, change, match):
    picture, mask = _subject()
    args = {"subject": picture, "alpha": mask, "prompt": "warm light", **QUICK, **change}
    _one_line_error(match, lambda: sdsam_nb.relight(tiny_sd, **args))


def test_the_score_is_perfect_for_an_unchanged_subject_and_lower_for_a_moved_or_blurred_one():
    picture, mask = _subject(160, 120)
    pixels = np.asarray(picture)
    same = sdsam_nb.relight_score(picture, picture, mask)
    assert same == {"edges": 1.0, "structure": pytest.approx(1.0, abs=1e-9), "light_change": 0.0}
    # another light, the same subject: a darker picture and a light from one side
    darker = np.clip(pixels * 0.6 + 15, 0, 255).astype(np.uint8)
    side = np.clip(pixels * np.linspace(0.5, 1.2, 160)[None, :, None], 0, 255).astype(np.uint8)
    for relit in (darker, side):
        score = sdsam_nb.relight_score(picture, relit, mask)
        assert score["edges"] > 0.95 and score["structure"] > 0.99
        assert score["light_change"] > 0.05
    # the subject moved by 4 px, or blurred, inside the same matte
    moved, blurred = pixels.copy(), pixels.copy()
    moved[mask] = np.roll(pixels, 4, axis=1)[mask]
    blurred[mask] = cv2.GaussianBlur(pixels, (0, 0), 3)[mask]
    shifted = sdsam_nb.relight_score(picture, moved, mask)
    soft = sdsam_nb.relight_score(picture, blurred, mask)
    assert shifted["edges"] < 0.6 and shifted["structure"] < 0.8
    assert soft["structure"] < 0.9 and soft["edges"] <= 1.0
    with pytest.raises(ValueError, match=r"^after is 10x10"):
        sdsam_nb.relight_score(picture, Image.new("RGB", (10, 10)), mask)


def test_recorded_in_the_active_run(tiny_sd, tmp_path):
    picture, mask = _subject()
    run = runs.start("04_composite_background", {"output_root": str(tmp_path)}, echo=False)
    try:
        relit = sdsam_nb.relight(tiny_sd, picture, mask, prompt="blue light", seed=2, **QUICK)
    finally:
        recording.deactivate()
    (call,) = [c for c in run.record["executions"][-1]["calls"] if c["call"] == "relight"]
    assert call["args"]["prompt"] == "blue light" and call["args"]["seed"] == 2
    image, alpha, score = call["returned"]
    assert image["image"] == [96, 64] and image["info"]["iclight"]["weights"] == "tiny"
    assert alpha["array"] == [64, 96] and score == pytest.approx(relit.score)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["text", pytest.param("background", marks=pytest.mark.long)])
def test_notebook_04_relights_and_replays_identically(tmp_path, mode):
    """04 with relight on, its cells in this process: the relit subjects are saved and
    composited, the scores recorded; the replay is bit-identical."""
    from test_notebooks import FAST, _call, _here, _png

    from sdsam_nb.runs.chain import replay

    light = "left" if mode == "text" else "none"
    params = {**FAST, "relight": mode, "relight_prompt": "warm light", "light": light}
    run = _here(["04_composite_background"], params, tmp_path / "runs")
    files = run.record["files"]
    relit = ["relit-0"] if mode == "text" else ["relit-0", "relit-1"]  # n_variations = 2
    assert {*relit, "composite-0", "composite-1"} <= set(files)
    assert f"relit-{len(relit)}" not in files
    # run alone, 04 takes the sample picture and its mask
    subject = np.asarray(Image.open(runs.sample_subject()).convert("RGB"))
    mask = np.asarray(Image.open(runs.sample_mask()).convert("L")) > 127
    for key in relit:
        picture = _png(run.file(key))
        assert picture.shape == subject.shape
        assert np.array_equal(picture[~mask], subject[~mask])  # outside the mask: as it was
    scores = run.record["relight_scores"]
    assert len(scores) == len(relit) and set(scores[0]) == {"edges", "structure", "light_change"}
    call = _call(run.record, "04_composite_background", "relight")
    assert call["args"]["mode"] == mode and call["args"]["prompt"] == "warm light"
    assert call["args"]["steps"] == FAST["steps"] and call["args"]["size"] == FAST["size"]
    # the composite pasted the relit subject (with the notebook's edge, "matte"), not the original
    composite = _png(run.file("composite-0"))
    background = Image.open(run.file("background-0")).convert("RGB")
    relit_subject = Image.open(run.file("relit-0")).convert("RGB")
    for image, same in ((relit_subject, True), (Image.fromarray(subject), False)):
        pasted = np.asarray(sdsam_nb.composite(image, mask, background, edge="matte"))
        assert np.array_equal(composite, pasted) == same
    new, comparison = replay(run.path, output_root=tmp_path / "replays", progress=False, here=True)
    assert comparison.identical, comparison
    assert {*relit, "composite-1"} <= set(comparison.pictures)


@pytest.mark.parametrize(
    ("name", "value"),
    [("relight", "sideways"), ("relight", ["text"]), ("light", "up"), ("light", {"a": 1})],
)
def test_the_notebook_parameters_are_checked(name, value):
    assert runs.check_params(relight="background", light="left", relight_prompt="") == {
        "relight": "background",
        "light": "left",
        "relight_prompt": "",
    }
    _one_line_error(f"^parameter {name} must be", lambda: runs.check_params(**{name: value}))
