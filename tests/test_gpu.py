"""Second tier: on a CUDA GPU, and with real weights. Skipped where they cannot run.

pytest -m gpu tests/test_gpu.py                           # needs CUDA
SDSAM_REAL_WEIGHTS=1 pytest -m gpu tests/test_gpu.py      # also downloads SD v1-4 and SAM
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

import sdsam_nb

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]
real = pytest.mark.skipif(
    os.environ.get("SDSAM_REAL_WEIGHTS") != "1", reason="set SDSAM_REAL_WEIGHTS=1 (downloads)"
)


def test_fp16_on_cuda_by_default_and_shared():
    pipe = sdsam_nb.load_sd("tiny", progress=False)
    assert pipe.device.type == "cuda" and pipe.unet.dtype == torch.float16
    inp = sdsam_nb.inpainting(pipe)
    assert inp.unet is pipe.unet and pipe.unet.dtype == torch.float16
    a = sdsam_nb.generate(pipe, "a ball", seed=3, steps=2, width=64, height=64)[0]
    b = sdsam_nb.generate(pipe, "a ball", seed=3, steps=2, width=64, height=64)[0]
    assert np.array_equal(np.asarray(a), np.asarray(b))


def test_offloaded_pipelines_run_on_cuda_and_leave_the_weights_on_the_cpu(
    subject_image, subject_mask
):
    pipe = sdsam_nb.load_sd("tiny", progress=False, offload=True)
    assert pipe.unet.device.type == "cpu" and pipe._execution_device.type == "cuda"
    out = sdsam_nb.inpaint_background(pipe, subject_image, subject_mask, "a beach", steps=2)
    assert out[0].size == subject_image.size
    assert sdsam_nb.subject_fidelity(subject_image, out[0], subject_mask)["max_abs"] == 0
    assert pipe.unet.device.type == "cpu"  # moved back after the call


def test_click_segmenter_on_cuda(subject_image):
    seg = sdsam_nb.ClickSegmenter(sdsam_nb.load_sam("tiny"), subject_image)
    seg.add_point(150, 100)
    seg.add_point(20, 20, positive=False)
    assert seg.mask.shape == (200, 300) and seg.embedding_computations == 1


@real
def test_real_weights_end_to_end(subject_image, subject_mask):
    pipe = sdsam_nb.load_sd()
    out = sdsam_nb.inpaint_background(pipe, subject_image, subject_mask, "a beach", steps=10)
    assert out[0].size == subject_image.size
    fidelity = sdsam_nb.subject_fidelity(subject_image, out[0], subject_mask)
    assert fidelity["max_abs"] == 0
    seg = sdsam_nb.ClickSegmenter(sdsam_nb.load_sam("vit_b"), subject_image)
    seg.add_point(150, 100)
    assert seg.mask[100, 150]
