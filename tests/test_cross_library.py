"""One picture, one click, two libraries: segment_anything's ``SamPredictor`` and transformers'
``SamModel`` / ``SamProcessor`` running the same (converted) tiny SAM weights must agree.

The tiny SAM has a 256-px encoder and a 16x16 embedding, so its low-res logits are 64x64
(``img_size / 4``; 256x256 for the official 1024-px models).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from PIL import Image
from sam_convert import sam_config_for, sam_to_transformers, save_as_transformers

from sdsam_nb.models import sam_checkpoint_path, tiny

W, H = 300, 200  # not square: exercises the resize, the padding and the point rescaling

# Tolerances, measured on this picture (CPU, float32) and set with a margin:
# - backend "pil" resizes exactly like segment_anything (PIL bilinear on uint8): the pixel
#   values agree to 2e-7; what is left is float32 summation order (SDPA vs explicit softmax
#   attention). Measured: logits 3e-7 for a logit scale of ~0.2 (1.5e-6 of it), IoU 3e-8;
#   alone no mask pixel differed, in the full suite (other thread scheduling) one of 180,000
#   did, where the upsampled logit is within rounding of the 0 threshold.
# - the default torchvision backend resizes with its own antialiased kernel: pixels differ by
#   up to one grey level (0.0175 after normalising), which moves logits by up to 2e-4 (1e-3 of
#   their scale) and flips up to 9 of 3x60,000 full-size mask pixels where a logit is near 0.
TOLERANCES = {
    # backend: (max |logit diff| / max |logit|, max |IoU diff|, fraction of mask pixels)
    "pil": (1e-5, 1e-5, 5e-5),
    "torchvision": (5e-3, 1e-4, 1e-3),
}

PROMPTS = {
    # name: (points as (x, y) in image pixels, labels 1 = include / 0 = exclude, XYXY box)
    "click": ([[150, 100]], [1], None),
    "click+exclude": ([[150, 100], [40, 30]], [1, 0], None),
    "box": (None, None, [95, 45, 210, 160]),
}


def _picture() -> np.ndarray:
    """A real photograph when scikit-image is installed, else a fixed synthetic picture.

    Returns HxWx3 uint8 RGB, 200x300.
    """
    try:
        from skimage import data
    except ImportError:
        rng = np.random.default_rng(0)
        yy, xx = np.mgrid[0:H, 0:W]
        img = np.stack([xx * 255 // W, yy * 255 // H, (xx + yy) * 255 // (W + H)], -1)
        img[(xx - 150) ** 2 + (yy - 100) ** 2 < 50**2] = (220, 30, 30)
        img = img + rng.integers(-20, 21, img.shape)  # texture, so the resize has work to do
        return np.clip(img, 0, 255).astype(np.uint8)
    return np.asarray(Image.fromarray(data.astronaut()).resize((W, H), Image.BILINEAR))


@pytest.fixture(scope="module")
def checkpoint(_private_cache):
    return sam_checkpoint_path("tiny")


@pytest.fixture(scope="module")
def picture() -> np.ndarray:
    return _picture()


@pytest.fixture(scope="module")
def predictor(checkpoint, picture):
    """segment_anything's own predictor with the tiny weights, image set."""
    from segment_anything import SamPredictor

    sam = tiny.build_sam_model()
    sam.load_state_dict(torch.load(checkpoint, map_location="cpu", weights_only=True))
    predictor = SamPredictor(sam.eval())
    predictor.set_image(picture)  # HxWx3 uint8 RGB
    return predictor


@pytest.fixture(scope="module")
def folder(checkpoint, tmp_path_factory):
    return save_as_transformers(checkpoint, tmp_path_factory.mktemp("sam-hf") / "tiny-sam")


@pytest.fixture(scope="module", params=sorted(TOLERANCES))
def hf(request, folder, picture):
    """(backend, model, processor, image embeddings), all loaded back with from_pretrained."""
    import transformers
    from transformers import SamModel, SamProcessor

    model = SamModel.from_pretrained(folder).eval()
    if hasattr(transformers, "SamImageProcessorPil"):  # transformers 5: pick the backend
        processor = SamProcessor.from_pretrained(folder, backend=request.param)
    elif request.param == "pil":  # older transformers only resize with PIL
        processor = SamProcessor.from_pretrained(folder)
    else:
        pytest.skip("this transformers has no torchvision image processor")
    pixels = processor(images=Image.fromarray(picture), return_tensors="pt")["pixel_values"]
    return request.param, model, processor, model.get_image_embeddings(pixels)


def test_folder_holds_model_and_processor_for_256px(folder, hf):
    _, model, processor, embeddings = hf
    names = {p.name for p in folder.iterdir()}
    assert {"config.json", "model.safetensors"} <= names
    # transformers 5 writes processor_config.json, older ones preprocessor_config.json
    assert names & {"processor_config.json", "preprocessor_config.json"}
    ip = processor.image_processor
    assert ip.size["longest_edge"] == 256
    assert (ip.pad_size["height"], ip.pad_size["width"]) == (256, 256)
    np.testing.assert_allclose(ip.image_mean, [0.485, 0.456, 0.406], atol=1e-6)
    np.testing.assert_allclose(ip.image_std, [0.229, 0.224, 0.225], atol=1e-6)
    assert embeddings.shape == (1, 32, 16, 16)
    vision = model.config.vision_config
    assert (vision.hidden_size, vision.num_hidden_layers, vision.num_attention_heads) == (64, 2, 2)
    assert (vision.window_size, list(vision.global_attn_indexes)) == (8, [1])


def test_image_embeddings_agree(hf, predictor):
    backend, _, _, embeddings = hf
    ours = predictor.features
    rel = (embeddings - ours).abs().max() / ours.abs().max()
    # pil: 8e-7 of the scale measured; torchvision: 6e-4 (one grey level of resize)
    assert rel <= {"pil": 1e-5, "torchvision": 5e-3}[backend]


@pytest.mark.parametrize("multimask", [True, False], ids=["3-candidates", "single"])
@pytest.mark.parametrize("prompt", sorted(PROMPTS))
def test_same_click_same_masks(hf, predictor, picture, prompt, multimask):
    backend, model, processor, embeddings = hf
    points, labels, box = PROMPTS[prompt]

    masks, iou, low = predictor.predict(
        point_coords=None if points is None else np.array(points, dtype=np.float32),
        point_labels=None if labels is None else np.array(labels),
        box=None if box is None else np.array(box, dtype=np.float32),
        multimask_output=multimask,
    )  # Cx200x300 bool, C, Cx64x64 float logits

    prompts = {}
    if points is not None:  # [image, object, point, xy]
        prompts.update(input_points=[[points]], input_labels=[[labels]])
    if box is not None:  # [image, box, xyxy]
        prompts["input_boxes"] = [[box]]
    inputs = processor(images=Image.fromarray(picture), return_tensors="pt", **prompts)
    with torch.no_grad():
        out = model(
            image_embeddings=embeddings,
            multimask_output=multimask,
            **{k: inputs[k] for k in prompts},
        )
    low_hf = out.pred_masks[0, 0].numpy()  # C x 64 x 64
    iou_hf = out.iou_scores[0, 0].numpy()  # C
    masks_hf = processor.post_process_masks(
        out.pred_masks, inputs["original_sizes"], inputs["reshaped_input_sizes"]
    )[0][0].numpy()  # C x 200 x 300 bool, threshold 0.0 like segment_anything

    logit_tol, iou_tol, pixel_tol = TOLERANCES[backend]
    n = 3 if multimask else 1
    assert low_hf.shape == low.shape == (n, 64, 64)
    assert masks_hf.shape == masks.shape == (n, H, W) and masks_hf.dtype == bool
    # Same candidates in the same order (both drop the single-mask token, neither sorts).
    assert np.abs(low_hf - low).max() <= logit_tol * np.abs(low).max()
    assert np.abs(iou_hf - iou).max() <= iou_tol
    assert np.argmax(iou_hf) == np.argmax(iou)
    assert (masks_hf != masks).mean() <= pixel_tol
    assert 0 < masks.mean() < 1  # a real mask, not all-empty or all-full on both sides


@pytest.mark.parametrize(
    "builder, expected",
    [
        ("build_sam_vit_b", (768, 12, 12, [2, 5, 8, 11])),
        ("build_sam_vit_l", (1024, 24, 16, [5, 11, 17, 23])),
        ("build_sam_vit_h", (1280, 32, 16, [7, 15, 23, 31])),
    ],
)
def test_official_architectures_convert(builder, expected):
    import segment_anything
    from transformers import SamModel

    with warnings.catch_warnings(), torch.device("meta"):  # structure only: no memory, no init
        warnings.simplefilter("ignore")
        sam = getattr(segment_anything, builder)(checkpoint=None)
    config = sam_config_for(sam)
    vision = config.vision_config
    got = (
        vision.hidden_size,
        vision.num_hidden_layers,
        vision.num_attention_heads,
        list(vision.global_attn_indexes),
    )
    assert got == expected
    assert (vision.image_size, vision.window_size, vision.output_channels) == (1024, 14, 256)
    assert config.prompt_encoder_config.image_embedding_size == 64
    assert config.mask_decoder_config.hidden_size == 256
    with torch.device("meta"):
        model = SamModel(config)
    model.load_state_dict(sam_to_transformers(sam.state_dict(), config), strict=True, assign=True)


def test_samconfig_defaults_are_segment_anything_vit_b():
    """``SamModel(SamConfig())`` is the benchmarks' full-size vit_b (``sam_vit_b_folder``,
    ``segmenters.hf_sam``): its defaults are segment_anything's vit_b architecture, read off the
    module, but for the decoder's LayerNorm epsilon (torch's 1e-5 there; facebook/sam-vit-base's
    config, like transformers' default, says 1e-6)."""
    import segment_anything
    from transformers import SamConfig

    with warnings.catch_warnings(), torch.device("meta"):
        warnings.simplefilter("ignore")
        vit_b = sam_config_for(segment_anything.build_sam_vit_b(checkpoint=None))
    vit_b.mask_decoder_config.layer_norm_eps = 1e-6
    for part in ("vision_config", "prompt_encoder_config", "mask_decoder_config"):
        assert getattr(vit_b, part).to_dict() == getattr(SamConfig(), part).to_dict(), part


def _tiny_state(checkpoint) -> dict:
    return torch.load(checkpoint, map_location="cpu", weights_only=True)


def test_missing_and_extra_keys_raise_one_line(checkpoint):
    state = _tiny_state(checkpoint)
    config = sam_config_for(tiny.build_sam_model())
    del state["mask_decoder.iou_token.weight"]
    state["image_encoder.blocks.7.attn.qkv.weight"] = torch.zeros(1)
    with pytest.raises(ValueError) as info:
        sam_to_transformers(state, config)
    message = str(info.value)
    assert "\n" not in message
    assert "missing mask_decoder.iou_token.weight" in message
    assert "left over image_encoder.blocks.7.attn.qkv.weight" in message


def test_other_architecture_raises_one_line(checkpoint):
    import segment_anything

    with warnings.catch_warnings(), torch.device("meta"):
        warnings.simplefilter("ignore")
        vit_b = sam_config_for(segment_anything.build_sam_vit_b(checkpoint=None))
    with pytest.raises(ValueError, match=r"width 768.*missing .*wrong shape ") as info:
        sam_to_transformers(_tiny_state(checkpoint), vit_b)
    assert "\n" not in str(info.value)
    assert "image_encoder.blocks.0.attn.proj.bias (64,) != (768,)" in str(info.value)


def test_not_a_checkpoint_raises(tmp_path):
    with pytest.raises(FileNotFoundError):
        save_as_transformers(tmp_path / "nope.pth", tmp_path / "out")
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a SAM state dict"):
        save_as_transformers(bad, tmp_path / "out")
