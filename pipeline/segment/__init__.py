"""Liver and tumour segmentation with MONAI model bundles, evaluation and training.

Public API (imported lazily, so that ``import pipeline.segment`` stays light and
the training loop can run where only numpy, torch and monai exist):

* :class:`LiverTumourSegmenter` and :class:`SegmentationResult`
  (:mod:`pipeline.segment.predictor`): load a bundle once, segment many CTs;
* :func:`load_bundle`, :func:`default_bundle_dir`, :class:`ModelBundle`
  (:mod:`pipeline.segment.bundle`): model bundles in MONAI bundle layout;
* :func:`evaluate_case`, :func:`summarise_cases` (:mod:`pipeline.segment.evaluation`):
  segmentation metrics against reference label maps.

Command-line modules: :mod:`~pipeline.segment.command` (``segment``),
:mod:`~pipeline.segment.evaluate_command` (``evaluate``),
:mod:`~pipeline.segment.train_command` (``train``).
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "LiverTumourSegmenter": "pipeline.segment.predictor",
    "SegmentationResult": "pipeline.segment.predictor",
    "load_bundle": "pipeline.segment.bundle",
    "default_bundle_dir": "pipeline.segment.bundle",
    "ModelBundle": "pipeline.segment.bundle",
    "evaluate_case": "pipeline.segment.evaluation",
    "summarise_cases": "pipeline.segment.evaluation",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'pipeline.segment' has no attribute {name!r}")
