"""Run records: one folder per run, with a ``run.json`` enough to replay it.

A run folder holds the pictures, the mask, the clicks, the executed notebooks and
``run.json``::

    outputs/20261122-101500-3f9a/
        run.json            each execution of each notebook: parameters, device, status, models
                            (id + revision or checksum), steps, files; clicks; package versions
        subject.png  mask.png  background-0.png  inpaint-0.png  composite-0.png ...
        01_generate_subject.ipynb ...   (executed notebooks, when run by ``sdsam-nb run``)

Modules: :mod:`.record` (the folder and its record, safe with many writers), :mod:`.params`
(the notebook parameter table), :mod:`.inputs` (the kit's files, sample data, where runs go),
:mod:`.session` (a notebook's setup call); what it records of a model is
:func:`sdsam_nb.models.identity.model_info`.
"""

from ..models.identity import model_info
from .inputs import (
    default_output_root,
    keep_mask,
    kit_dir,
    load_subject,
    load_subject_mask,
    record_mask_made,
    sample_mask,
    sample_subject,
)
from .params import BEFORE_IT_EXISTED, SPEC, check_params, check_plain, load_yaml
from .record import RUN_JSON, Run, ensure_folder, jsonable, new_run, open_run, package_versions
from .session import start

__all__ = [
    "RUN_JSON",
    "BEFORE_IT_EXISTED",
    "SPEC",
    "Run",
    "check_params",
    "check_plain",
    "default_output_root",
    "ensure_folder",
    "jsonable",
    "keep_mask",
    "kit_dir",
    "load_yaml",
    "load_subject",
    "load_subject_mask",
    "model_info",
    "new_run",
    "open_run",
    "package_versions",
    "record_mask_made",
    "sample_mask",
    "sample_subject",
    "start",
]
