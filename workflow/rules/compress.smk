# Stage: compression (rdflow.stages.compress). Per-item outputs are the unit of caching: each
# (dataset | sequence, codec, quality, item) has its own bitstream, row and reconstruction. A
# job codes a BATCH of up to `batch_size` items of one dataset or sequence with one (codec,
# quality), so start-up (torch, the model; on SLURM the job's own Snakemake) is paid once per
# batch. The batches are fixed by the study (items sorted, cut every batch_size): one rule per
# (dataset | sequence, codec, quality, batch) with literal outputs, named
# compress_image__<dataset>_<codec>_q<quality>_b<k> (compress_frame__... for sequences); literal
# paths keep Snakemake's lookup of a file's producer O(log n) at thousands of items. A deleted
# or changed item reruns its batch only. Jobs are run: jobs in threads of the Snakemake process
# locally (profiles/default): torch is imported once, each model loaded once per run.
from rdflow import paths
from rdflow.stages import compress as compress_stage
from rdflow.stages import detection as detection_stage
from rdflow.stages import vmaf as vmaf_stage


def _recon_users():
    """(dataset | sequence, codec, quality) whose reconstructions a later stage reads: VMAF and
    detection. Other points write no reconstruction (unless keep_reconstructions). Sequence
    codecs' points are in it too (video_codecs.smk asks it for compress_sequence)."""
    users = set(vmaf_stage.image_jobs(config)) | set(vmaf_stage.video_jobs(config))
    if detection_stage.enabled(config):
        for source, name in detection_stage.units(config):
            users |= {(name, c, q) for c, q in detection_stage.points(config, source, name)}
    return users


RECON_USERS = _recon_users()


def _batch_outputs(pattern, key, items, **fixed):
    """Per-item bitstream, row and (when a later stage reads it or keep_reconstructions is
    set) reconstruction paths of a batch."""
    stems = [pattern.format(**fixed, **{key: i}) for i in items]
    point = (fixed.get("dataset", fixed.get("sequence")), fixed["codec"], fixed["quality"])
    recons = config["keep_reconstructions"] or point in RECON_USERS
    # rows first, then reconstructions, bitstreams last: Snakemake finds a file's producer by
    # matching the rule's outputs in order, and rows are looked up most (tables and targets),
    # reconstructions next (VMAF, detection), bitstreams never
    return dict(
        rows=[s + ".json" for s in stems],
        recons=[reconstruction(s + ".png") for s in stems] if recons else [],
        bitstreams=[s + ".bin" for s in stems],
    )


def _outputs_dict(output):
    out = {k: list(getattr(output, k)) for k in ("bitstreams", "rows", "recons")}
    out["recons"] = out["recons"] or [None] * len(out["rows"])
    return out


def _weights(codec, quality):
    w = weights_file(config, codec, quality)
    return [w] if w else []


def _threads(codec):
    c = config["codecs"][codec]
    return codec_class(c["kind"]).job_threads(c)


def _gpu(codec):
    c = config["codecs"][codec]
    return int(codec_class(c["kind"]).uses_gpu(c, config["device"]))


for _d, _c, _q, _b, _images in compress_stage.image_jobs(config):

    rule:
        name:
            f"compress_image__{rule_tag(_d)}_{rule_tag(_c)}_q{_q}_b{_b}"
        input:
            images=[download_stage.image_input(config, _d, i) for i in _images],
            weights=_weights(_c, _q),
            external=compress_stage.item_inputs(config, _c, _q, "image", _images, dataset=_d),
        output:
            **_batch_outputs(paths.IMAGE_ITEM, "image", _images, dataset=_d, codec=_c, quality=_q),
        log:
            paths.IMAGE_BATCH_LOG.format(dataset=_d, codec=_c, quality=_q, batch=_b),
        threads: _threads(_c)
        resources:
            gpu=_gpu(_c),
            mem_mb=8000,
            runtime=60,
        params:
            job=dict(
                dataset=_d,
                codec=_c,
                quality=_q,
                images=_images,
                sha256=[download_stage.image_sha256(config, _d, i) for i in _images],
            ),
        run:
            compress_stage.image_batch_job(
                config=config,
                **params.job,
                inputs=list(input.images),
                outputs=_outputs_dict(output),
                weights_path=input.weights[0] if input.weights else None,
                threads=threads,
                log_path=log[0],
            )


for _s, _c, _q, _b, _frames in compress_stage.frame_jobs(config):

    rule:
        name:
            f"compress_frame__{rule_tag(_s)}_{rule_tag(_c)}_q{_q}_b{_b}"
        input:
            yuv=sequence_path(config, _s),
            probe=paths.SEQUENCE_PROBE.format(sequence=_s),
            weights=_weights(_c, _q),
            external=compress_stage.item_inputs(config, _c, _q, "frame", _frames, sequence=_s),
        output:
            **_batch_outputs(paths.FRAME_ITEM, "frame", _frames, sequence=_s, codec=_c, quality=_q),
        log:
            paths.FRAME_BATCH_LOG.format(sequence=_s, codec=_c, quality=_q, batch=_b),
        threads: _threads(_c)
        resources:
            gpu=_gpu(_c),
            mem_mb=8000,
            runtime=60,
        params:
            job=dict(sequence=_s, codec=_c, quality=_q, frames=_frames),
        run:
            compress_stage.frame_batch_job(
                config=config,
                **params.job,
                seq_path=input.yuv,
                outputs=_outputs_dict(output),
                weights_path=input.weights[0] if input.weights else None,
                threads=threads,
                log_path=log[0],
            )


rule compress:
    """Every per-item bitstream, row and reconstruction of the study, nothing after them
    (`snakemake --cores 8 compress`)."""
    input:
        compress_stage.rows_of_study(config),
