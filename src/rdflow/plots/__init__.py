"""Figures (PNG and PDF) drawn with matplotlib's object API (no pyplot: jobs run in threads).

Shared by every figure function of the package:

* :func:`codec_colours`: one colour per codec name, from the sorted list of the run's codec
  names (:func:`study_codecs`), so that a codec has the same colour in every figure of a run.
  Published reference curves (:func:`reference_match`) take their study codec's colour, dashed
  (:mod:`.colours`).
* :func:`finite_rows`: non-finite values (inf PSNR of a lossless point, NaN) are dropped with a
  log line before plotting.
* :func:`robust_limits`: isolated extreme points (a lossless 24 bpp point, a PSNR capped at 99)
  do not squash the other curves; the points left outside the axes are named in the panel.
* :func:`note_empty`: a panel without data says why in a centred text (:mod:`.limits`).
* :func:`save`: writes each image and a data sidecar ``<figure path without suffix>.json``
  (:func:`figure_data`) holding what was drawn, for tests and for readers of the results
  (:mod:`.sidecar`).
* :func:`axis_label`: rate and time columns, and every metric column by its registered label
  (:func:`rdflow.metrics.label`); :func:`rd_curves`, the rate-distortion figure (:mod:`.rd`).
"""

from __future__ import annotations

from .colours import (PALETTE, codec_colours, extra_colours, reference_match, study_codecs,  # noqa: F401
                      study_info)
from .limits import finite_rows, missing_reason, note_empty, robust_limits  # noqa: F401
from .rd import AXIS_LABELS, axis_label, rd_curves  # noqa: F401
from .sidecar import figure_data, new_figure, save, sidecar_path  # noqa: F401
