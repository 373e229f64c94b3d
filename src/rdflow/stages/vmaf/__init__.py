"""The VMAF stage: VMAF on every coded video frame and image, and how PSNR and MS-SSIM track
it.

Jobs (rules in ``workflow/rules/vmaf.smk``; the VMAF computation itself is
:mod:`rdflow.metrics.vmaf`):

* ``vmaf_video``, one per (sequence, codec, quality), over all the selected frames at once (the
  motion feature of VMAF needs consecutive frames). The **reference** is the source's own 8-bit
  I420 planes, read at each selected frame's offset
  (:func:`rdflow.sources.video.iter_frames`): exactly the bytes of the file, never an RGB round
  trip. The **distorted** input is the 8-bit RGB
  reconstruction the other metrics saw (the ``temp()`` PNG of ``compress_frame``) converted to
  I420 by :func:`rdflow.metrics.yuv.rgb_to_yuv420` with the sequence's matrix, range and chroma
  siting — the same conversion as the video rows' ``psnr_y/u/v``. Both are written frame by
  frame as raw yuv420p into a private temporary folder (``TMPDIR``; about 2 x 1.5 bytes per
  pixel per frame) that ffmpeg reads, so memory stays flat and no PNG is written. With a frame
  stride the motion feature compares consecutive *selected* frames. For a sequence codec
  (``video_codecs``: x264, x265, ...) the distorted input is the file of decoded frames its
  ``compress_sequence`` job wrote (:func:`rdflow.stages.video_codecs.recon_frames`): the
  decoded 4:2:0 planes themselves, no RGB round trip (an RGB codec's output converted once, as
  its rows' psnr_y/u/v were).
* ``vmaf_image``, one per (dataset, codec, quality): each image is a one-frame pair (its own
  ffmpeg run: motion 0), converted with ``vmaf.image_matrix/image_range/image_chroma_loc``
  (default BT.709, limited range, left siting; ffmpeg's own RGB->yuv420p default would be
  BT.601 limited). Odd sizes lose their last row/column (4:2:0 needs even sizes); images
  smaller than 17 px (libvmaf's limit) get ``vmaf = NaN`` with a warning, as MS-SSIM does
  below 161 px.
* ``vmaf_table``: ``vmaf.csv`` (:data:`rdflow.paths.VMAF_TABLE`), one row per (sequence,
  codec, quality, frame) and per (dataset, codec, quality, image) with bpp, psnr_rgb, ms_ssim
  (and ms_ssim_db) joined from the RD tables. ``psnr_y/u/v`` there are ffmpeg's ``psnr``
  filter on the very pair VMAF saw; for video they are checked against the RD rows' own
  ``psnr_y/u/v`` (0.01 dB) so that a reconstruction that is not the one the other metrics saw
  cannot go unnoticed. ``vmaf_correlation.csv`` (:data:`rdflow.paths.VMAF_CORRELATION`): VMAF
  against PSNR (``psnr_y`` for video, ``psnr_rgb`` for images) and MS-SSIM (dB), per codec
  and pooled, over items (frames/images): Pearson r, Spearman rho and R^2 of the
  least-squares line (with its slope and intercept).

All libvmaf runs use ``n_threads`` = the job's threads. Modules: :mod:`.plan` (settings,
check, jobs, targets), :mod:`.score` (the scoring jobs), :mod:`.tables` (table and
correlation), :mod:`.figures`.
"""

from __future__ import annotations

from ...lazy import lazy_exports
from .plan import (DEFAULTS, MODELS, SECTION, check, enabled, figure_paths, image_csv,
                   image_jobs, image_recon_inputs, image_recons, settings, table_inputs, targets,
                   video_csv, video_jobs, video_recon_inputs, video_recons)

#: what the jobs run, imported when a job first asks (parsing the rules plans only)
__getattr__, __dir__ = lazy_exports(__name__, globals(), {
    ".figures": ("plot_vmaf_bpp", "plot_vmaf_vs_psnr"),
    ".score": ("score_images", "score_video"),
    ".tables": ("POOLED", "PSNR_OF", "PSNR_TOLERANCE_DB", "build_table", "correlation",
                "fit_stats", "write_tables"),
})

__all__ = ["DEFAULTS", "MODELS", "POOLED", "PSNR_OF", "PSNR_TOLERANCE_DB", "SECTION",
           "build_table", "check", "correlation", "enabled", "figure_paths", "fit_stats",
           "image_csv", "image_jobs", "image_recon_inputs", "image_recons", "plot_vmaf_bpp",
           "plot_vmaf_vs_psnr",
           "score_images", "score_video", "settings", "table_inputs", "targets", "video_csv",
           "video_jobs", "video_recon_inputs", "video_recons", "write_tables"]
