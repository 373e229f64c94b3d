# Stage: compression (rdflow.stages.compress). Each (dataset | sequence, codec, quality, item)
# has its own bitstream, row and reconstruction. A job codes a BATCH of up to `batch_size` items
# of one dataset or sequence with one (codec, quality), so start-up (torch, the model; on SLURM
# the job's own Snakemake) is paid once per batch; its outputs are the batch's folder (<item>.bin
# and <item>.json) and the archive of its reconstructions (<item>.png members), so Snakemake's
# bookkeeping (producer lookup, metadata, timestamps) is per batch, not per file. The batches are fixed by the study (items
# sorted, cut every batch_size): one rule per (dataset | sequence, codec, quality, batch) with
# literal outputs, named compress_image__<dataset>_<codec>_q<quality>_b<k> (compress_frame__...
# for sequences). A deleted or invalidated batch folder reruns that batch only. Jobs are run: jobs in threads of the Snakemake process
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


def _batch_outputs(medium, name, codec, quality, batch):
    """A batch's folder (its items' bitstreams and rows) and, when a later stage reads them or
    keep_reconstructions is set, the archive of their reconstructions."""
    out = dict(batch=directory(compress_stage.batch_folder(medium, name, codec, quality, batch)))
    if config["keep_reconstructions"] or (name, codec, quality) in RECON_USERS:
        recons = compress_stage.recon_archive(medium, name, codec, quality, batch)
        out["recons"] = reconstruction(recons)
    return out


def _outputs_dict(output):
    return {"batch": output.batch, "recons": output.get("recons")}


def _weights(codec, quality):
    w = weights_file(config, codec, quality)
    return [w] if w else []


def _threads(codec):
    c = config["codecs"][codec]
    return codec_class(c["kind"]).job_threads(c)


def _gpu(codec):
    c = config["codecs"][codec]
    return int(codec_class(c["kind"]).uses_gpu(c, config["device"]))


def _batch_images(wc):
    return compress_stage.image_batches(config, wc.dataset)[int(wc.batch)]


rule image_batch_sources:
    """The source images of one image batch, checked and listed once: every coding job of the
    batch (each codec and quality) waits for this one file instead of listing the images."""
    input:
        lambda wc: [download_stage.image_input(config, wc.dataset, i) for i in _batch_images(wc)],
    output:
        paths.IMAGE_BATCH_SOURCES,
    log:
        "logs/image_batch_sources/{dataset}/batch{batch}.log",
    wildcard_constraints:
        batch=r"\d+",
    localrule: True
    params:
        images=_batch_images,
        sha256=lambda wc: [
            download_stage.image_sha256(config, wc.dataset, i) for i in _batch_images(wc)
        ],
    run:
        from rdflow.runtime import run_logged

        run_logged(
            log[0],
            compress_stage.sources_job,
            dataset=wildcards.dataset,
            images=params.images,
            inputs=list(input),
            sha256=params.sha256,
            out=output[0],
        )


for _d, _c, _q, _b, _images in compress_stage.image_jobs(config):

    rule:
        name:
            f"compress_image__{rule_tag(_d)}_{rule_tag(_c)}_q{_q}_b{_b}"
        input:
            # the batch's images, listed once for all its coding jobs (rule image_batch_sources)
            sources=compress_stage.sources_file(_d, _b),
            weights=_weights(_c, _q),
            external=compress_stage.item_inputs(config, _c, _q, "image", _images, dataset=_d),
        output:
            **_batch_outputs("image", _d, _c, _q, _b),
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
                inputs=[download_stage.image_input(config, _d, i) for i in _images],
                sha256=[download_stage.image_sha256(config, _d, i) for i in _images],
            ),
        run:
            compress_stage.image_batch_job(
                config=config,
                **params.job,
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
            **_batch_outputs("video", _s, _c, _q, _b),
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
    """Every batch folder (per-item bitstreams and rows) of the study, nothing after them
    (`snakemake --cores 8 compress`)."""
    input:
        compress_stage.folders_of_study(config),
