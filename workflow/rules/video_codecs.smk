# Stage: sequence-level video codecs (x264, x265 via ffmpeg; CompressAI's ssf2020). One job per
# (sequence, video codec, quality) codes the selected frames as ONE bitstream with inter
# prediction, decodes it from the file and writes one row per frame (a JSON list), which
# aggregate_video puts into results/video_rd_{sequence}.csv beside the image codecs' frame rows.
# Logic: rdflow.stages.video_codecs, rdflow.codecs.sequence/x26x/ssf (README, "Video codecs").
# When a later stage reads them (VMAF, detection: RECON_USERS of compress.smk) or with
# keep_reconstructions, the job also writes the decoded frames (paths.SEQUENCE_RECON, temp()
# unless kept) that vmaf_video and detect_decoded read. One rule for every point: the output is
# declared when ANY sequence-codec point is read (a point nobody reads then has its temp file
# deleted right after its job).
# No benchmark: (an in-thread job: it would sample the whole Snakemake process); the rows hold
# the codec's own enc_s/dec_s. Threads and GPU are asked of the codec's class.
from rdflow import paths
from rdflow.stages import video_codecs as video_codecs_stage

VIDEO_CODEC_NAMES = sorted(video_codecs_stage.video_codec_configs(config))


SEQUENCE_RECONS = config["keep_reconstructions"] or any(
    point in RECON_USERS for point in video_codecs_stage.points(config)
)


def sequence_outputs():
    out = dict(bitstream=paths.SEQUENCE_BITSTREAM, rows=paths.SEQUENCE_ROWS)
    if SEQUENCE_RECONS:
        out["recon"] = reconstruction(paths.SEQUENCE_RECON)
    return out


def video_codec_weights(wc):
    w = video_codecs_stage.weights_file(config, wc.codec, wc.quality)
    return [w] if w else []


rule compress_sequence:
    input:
        yuv=lambda wc: sequence_path(config, wc.sequence),
        probe=paths.SEQUENCE_PROBE,
        weights=video_codec_weights,
        external=lambda wc: video_codecs_stage.item_inputs(
            config, wc.codec, wc.quality, wc.sequence
        ),
    output:
        **sequence_outputs(),
    log:
        "logs/compress_sequence/{sequence}/{codec}/q{quality}.log",
    wildcard_constraints:
        codec=_alternatives(VIDEO_CODEC_NAMES),
    threads: lambda wc: video_codecs_stage.job_threads(config, wc.codec)
    resources:
        gpu=lambda wc: int(video_codecs_stage.uses_gpu(config, wc.codec)),
        # a whole sequence through one video codec (ffmpeg or SSF2020)
        mem_mb=16000,
        runtime=240,
    run:
        from rdflow.runtime import run_logged

        run_logged(
            log[0],
            video_codecs_stage.sequence_job,
            config=config,
            sequence=wildcards.sequence,
            codec=wildcards.codec,
            quality=int(wildcards.quality),
            seq_path=input.yuv,
            bitstream=output.bitstream,
            out_json=output.rows,
            weights_path=input.weights[0] if input.weights else None,
            threads=threads,
            recon=output.get("recon"),
        )


rule download_video_zoo_weights:
    output:
        paths.ZOO_VIDEO_WEIGHTS,
    log:
        "logs/download/weights/video_{architecture}_{metric}_q{quality}.log",
    wildcard_constraints:
        architecture="ssf2020",
    run:
        from rdflow.codecs.ssf import fetch_ssf_weights
        from rdflow.runtime import run_logged

        run_logged(
            log[0],
            fetch_ssf_weights,
            wildcards.metric,
            int(wildcards.quality),
            output[0],
            config["weights"]["base_url"],
        )
