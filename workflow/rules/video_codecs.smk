# Stage: sequence-level video codecs (x264, x265 via ffmpeg; CompressAI's ssf2020). One job per
# (sequence, video codec, quality) codes the selected frames as ONE bitstream with inter
# prediction, decodes it from the file and writes one row per frame (a JSON list), which
# aggregate_video puts into results/video_rd_{sequence}.csv beside the image codecs' frame rows.
# Logic: rdflow.video_codecs (README, "Video codecs"). No benchmark: (an in-thread job: it would
# sample the whole Snakemake process); the rows hold the codec's own enc_s/dec_s.
from rdflow.video_codecs import sequence_rows as video_codec_rows
from rdflow.video_codecs import video_codec_configs
from rdflow.video_codecs import weights_file as video_codec_weights_file

VIDEO_CODEC_NAMES = sorted(video_codec_configs(config))


def video_codec_weights(wc):
    w = video_codec_weights_file(config, wc.codec, wc.quality)
    return [w] if w else []


def video_codec_threads(wc):
    c = video_codec_configs(config)[wc.codec]
    return 1 if c["kind"] == "ssf2020" else int(c.get("threads") or 1)


def gpu_for_video_codec(wc):
    return int(
        video_codec_configs(config)[wc.codec]["kind"] == "ssf2020" and config["device"] != "cpu"
    )


rule compress_sequence:
    input:
        yuv=lambda wc: sequence_path(config, wc.sequence),
        probe="results/video/{sequence}/sequence.json",
        weights=video_codec_weights,
    output:
        bitstream="results/video/{sequence}/{codec}/q{quality}/sequence.bin",
        rows="results/video/{sequence}/{codec}/q{quality}/sequence_rows.json",
    log:
        "logs/compress_sequence/{sequence}/{codec}/q{quality}.log",
    wildcard_constraints:
        codec=_alternatives(VIDEO_CODEC_NAMES),
    threads: video_codec_threads
    resources:
        gpu=gpu_for_video_codec,
    run:
        from rdflow.runtime import job_log
        from rdflow.video_codecs import sequence_job

        with job_log(log[0]):
            sequence_job(
                config=config,
                sequence=wildcards.sequence,
                codec=wildcards.codec,
                quality=int(wildcards.quality),
                seq_path=input.yuv,
                bitstream=output.bitstream,
                out_json=output.rows,
                weights_path=input.weights[0] if input.weights else None,
                threads=threads,
            )


rule download_video_zoo_weights:
    output:
        "resources/weights/zoo-video/{architecture}/{metric}/q{quality}.pth.tar",
    log:
        "logs/download/weights/video_{architecture}_{metric}_q{quality}.log",
    wildcard_constraints:
        architecture="ssf2020",
    run:
        from rdflow.runtime import job_log
        from rdflow.video_codecs import fetch_ssf_weights

        with job_log(log[0]):
            fetch_ssf_weights(
                wildcards.metric,
                int(wildcards.quality),
                output[0],
                config["weights"]["base_url"],
            )
