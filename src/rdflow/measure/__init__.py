"""Codec complexity: timing that can be trusted, peak memory, MACs, parameters, model size.

What is measured, and how (numbers must be trustworthy, so the semantics are spelled out):

* **Time** (:func:`rdflow.measure.timing.time_calls`): ``warmup`` calls first (excluded: they
  pay one-time costs such as oneDNN kernel selection or CUDA context creation for the exact
  input shape), then ``repeats`` calls, each timed with ``time.perf_counter`` (wall) and
  ``time.process_time`` (CPU time of the whole process, all threads) plus the CPU time of the
  child processes the call ran through :func:`rdflow.proc.run` (an ffmpeg or external-command
  codec's encoder/decoder; reaped with ``os.wait4``, which gives each child's own usage). ``sync`` (e.g.
  ``torch.cuda.synchronize``) is called before each start and before each stop, so queued GPU
  work is inside the call that queued it. Report the median; p25/p75, min/max and std show the
  spread.
* **Peak CPU memory** (:class:`rdflow.measure.meters.RssMeter`, ``peak_rss_mb``): the process's
  peak resident set size (RSS) during the measured block, in MiB (2**20 bytes; every ``*_mb``
  column is MiB). On Linux the kernel's high-water mark (``VmHWM``) is reset at the start of
  the block by writing ``5`` to ``/proc/self/clear_refs`` (it then equals the current RSS) and
  read at the end: exact, per measurement, and nearly free. Before each point's warm-up the
  study calls glibc's ``malloc_trim(0)`` (``release_free_memory``), so heap that an earlier
  (larger) measurement freed but glibc kept is not counted again; the warm-up call runs inside
  the meter, so the working memory of a call counts even when later calls reuse it. Where
  ``clear_refs`` cannot be written, a thread samples RSS every 5 ms instead (``rss_method``
  column ``sampling``; it can miss peaks shorter than the interval, and costs a few percent of
  the timed calls through the GIL). The peak is the absolute process RSS (interpreter,
  libraries and the loaded model included); ``base_mb`` is the RSS at the start, so
  ``peak_mb - base_mb`` is what the block added. The largest child process's own peak RSS
  (``ru_maxrss`` of ``os.wait4``) is reported beside it, and the complexity table's
  ``max_rss_mb`` is their sum (the process waits while its child runs). RSS and CPU time are per process: run the
  study alone, or with ``isolate=True`` (each codec in its own child process).
* **Peak GPU memory** (:class:`rdflow.measure.meters.GpuMeter`, ``gpu_peak``):
  ``torch.cuda.reset_peak_memory_stats`` at the start, ``max_memory_allocated`` /
  ``max_memory_reserved`` at the end (both include the model's weights); ``None`` on CPU.
* **MACs** (:func:`rdflow.measure.macs.count_macs`): ``torch.utils.flop_counter.FlopCounterMode``
  counts the FLOPs of the matrix products and convolutions (incl. transposed) that run; torch
  counts 2 FLOPs per multiply-accumulate, so MACs = FLOPs / 2, exactly. Element-wise work
  (activations, GDN's square root, quantisation, the entropy model's CDF look-ups) and the C++
  range coder are not counted. For learned codecs the count is taken over the real
  ``compress``/``decompress`` calls, so the encoder count includes everything the encoder runs
  (``g_a``, ``h_a`` and also ``h_s``, which the encoder needs for the scales, plus the context
  model of autoregressive models) and the decoder count ``h_s`` + ``g_s`` (+ context model).
  kMAC/px divides by the pixels of the original image (the padded input to a multiple of 64 is
  computed on, but the cost is per source pixel).
* **Network vs entropy time** (:func:`rdflow.measure.macs.network_entropy_split`): forward
  hooks on the analysis and synthesis transforms (``g_a``, ``h_a``, ``h_s``, ``g_s``) time the
  network; the rest of ``compress``/``decompress`` is ``*_entropy_s``: entropy bottleneck and
  conditional coding, quantisation, index building, the range coder, and (for mbt2018 and
  cheng2020) the autoregressive context model that runs interleaved with the coder. These runs
  are separate from the timed runs (hooks would perturb them).

:func:`rdflow.measure.run.complexity_study` measures a list of codec operating points at a list
of resolutions and returns one row (:data:`rdflow.measure.points.COLUMNS`) per (codec, quality,
resolution); a resolution that fails (out of memory or anything else at that point) gives a row
with ``status="failed"`` and the error, and the study goes on. With ``isolate=True`` every
codec runs in a fresh child process (:class:`rdflow.worker.Worker`), so even a kill by the
kernel's OOM killer becomes a failed row.

Modules: :mod:`.meters` (peak RSS / VRAM), :mod:`.timing` (time_calls, measure), :mod:`.macs`
(MACs, model size, kMAC/px, network/entropy split), :mod:`.images` (resolutions and the
measured image), :mod:`.points` (one complexity point, the codec holder, the worker's entry
points), :mod:`.run` (the study's loop). Importing any of them does not import torch.
"""
