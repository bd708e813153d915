"""Synthetic two-phase abdominal CT phantoms with exact truth (``liverburden phantom``).

The phantoms are the project's demo cohort, the backbone of its tests and
training data for the segmentation model:

* :func:`generate_scan` makes one random scan (random anatomy and 0-15
  random liver metastases) as a :class:`PhantomScan`;
* :func:`generate_cohort` writes a cohort of subjects followed over 2-3 time
  points, each following a treatment scenario with a known expected
  response (see :mod:`pipeline.phantom.scenarios`), with sample sheets and
  ``truth.json``.

The same seed and options always give the same arrays and byte-identical
files.
"""

from pipeline.phantom.cohort import generate_cohort
from pipeline.phantom.scan import SIZES, PhantomScan, generate_scan
from pipeline.phantom.scenarios import SCENARIOS

__all__ = ["SCENARIOS", "SIZES", "PhantomScan", "generate_cohort", "generate_scan"]
