"""Container and metadata fidelity on files made by the ffmpeg CLI, checked with ffprobe (issue 12).

Every case builds a tiny input with ``ffmpeg``, restores it with ``--model identity -q`` (no weights,
no network) and compares ffprobe's view of input and output: what the case says it keeps must be
there, and anything converted or left out must be said on stderr even with ``-q``.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from conformance_cases import (
    Case,
    append_ts,
    append_ts_after,
    ass_script,
    audio_codec_in,
    audio_decodes_same,
    audio_starts_with_video,
    av_offset_kept,
    corrupt_inside_packet,
    cut_before_last_packets,
    cut_bytes_from_end,
    cut_inside_last_audio_pes,
    display_kept,
    ffmpeg,
    ffmpeg_exe,
    ffprobe,
    ffprobe_exe,
    frames_flagged_like_input,
    is_vfr,
    no_b_frames,
    pal_like,
    rotation_kept,
    same_chapters,
    same_frame_times,
    same_streams,
    same_tag,
    same_video_packets,
    side_data,
    start_time_shifted,
    stream_count,
    timecode_offset,
    tone,
    video_codec_in,
    video_field,
    video_is_one_of,
    video_src,
)

HDR10 = ("log-level=error:hdr10=1:master-display=G(13250,34500)B(7500,3000)R(34000,16000)WP(15635,16450)"
         "L(10000000,1):max-cll=1000,400")  # fmt: skip
A = ["-map", "0:v", "-map", "1:a"]
A2 = ["-map", "0:v", "-map", "1:a", "-map", "2:a"]
MPEG2_TFF = ["-c:v", "mpeg2video", "-flags", "+ildct+ilme", "-top", "1", "-field_order", "tt"]
MPEG2_BFF = ["-c:v", "mpeg2video", "-flags", "+ildct+ilme", "-top", "0", "-field_order", "bb"]
# a second video first in the file (H.264 with B-frames: Matroska gives its first packets no dts), SRT, ASS, a
# font and chapters: each alone was fine; together the second video's packets reached the muxer out of order
MKV_ALL = [*video_src(seconds=0.8), "-f", "lavfi", "-i", "testsrc=size=32x24:rate=25:duration=0.8", "-i", "{srt}",
           "-i", "{ass}", "-i", "{chapters}", "-attach", "{font}", "-metadata:s:t", "mimetype=font/ttf",
           "-map", "1:v", "-map", "0:v", "-map", "2", "-map", "3", "-map_metadata", "4", "-map_chapters", "4",
           "-c:v", "libx264", "-c:s:0", "srt", "-c:s:1", "ass", "-metadata:s:s:0", "language=eng"]  # fmt: skip
FFMPEG_BACKEND = ["--encoder-backend", "ffmpeg"]  # the ffmpeg on PATH (Debian's), as a user's would be
FONT_DIR = Path("/usr/share/fonts")

CASES = [
    Case("mov_h264_aac", ".mov", [*video_src(), *tone(), *A, "-c:v", "libx264", "-c:a", "aac"],
         "H.264 stays H.264, frame times, AAC copied",
         [same_frame_times, video_codec_in("h264"), same_streams("audio")]),
    Case("mp4_h264_10bit", ".mp4", [*video_src(), "-c:v", "libx264", "-pix_fmt", "yuv420p10le"],
         "10-bit depth", [video_field("pix_fmt"), same_frame_times]),
    Case("mp4_hevc_8bit_aac", ".mp4", [*video_src(), *tone(), *A, "-c:v", "libx265", "-x265-params", "log-level=error",
                                       "-c:a", "aac", "-tag:v", "hvc1"],
         "HEVC 8-bit, AAC copied", [video_codec_in("hevc", "h264"), video_field("pix_fmt"), same_streams("audio")]),
    Case("mkv_hevc_10bit_hdr10", ".mkv", [*video_src(), "-c:v", "libx265", "-pix_fmt", "yuv420p10le",
                                          "-color_primaries", "bt2020", "-color_trc", "smpte2084", "-colorspace",
                                          "bt2020nc", "-x265-params", HDR10],
         "10 bits, BT.2020/PQ tags, mastering display and content light level",
         [video_field("pix_fmt", "color_primaries", "color_transfer", "color_space"),
          side_data("Mastering display metadata"), side_data("Content light level metadata")]),
    Case("mov_prores422_pcm24", ".mov", [*video_src(), *tone(), *A, "-c:v", "prores_ks", "-profile:v", "hq",
                                         "-pix_fmt", "yuv422p10le", "-c:a", "pcm_s24le"],
         "ProRes HQ 10-bit, PCM 24 copied", [video_field("codec_name", "profile", "pix_fmt"), same_streams("audio"),
                                             same_frame_times]),
    Case("mov_prores4444_alpha", ".mov", [*video_src(), "-vf", "format=yuva444p10le", "-c:v", "prores_ks",
                                          "-profile:v", "4444", "-pix_fmt", "yuva444p10le"],
         "ProRes 4444 with its alpha plane", [video_field("codec_name", "profile"), video_is_one_of(
             "pix_fmt", "yuva444p10le", "yuva444p12le")]),
    Case("mxf_dnxhr_pcm16", ".mxf", [*video_src("256x144"), *tone(), *A, "-c:v", "dnxhd", "-profile:v", "dnxhr_sq",
                                     "-pix_fmt", "yuv422p", "-c:a", "pcm_s16le"],
         "DNxHR SQ in MXF, PCM 16, frames in order", [video_field("codec_name", "profile"), same_frame_times,
                                                        same_streams("audio")]),
    Case("mov_dnxhd_fixed_rate", ".mov", [*video_src("1280x720", seconds=0.12), "-c:v", "dnxhd", "-b:v", "90M",
                                          "-pix_fmt", "yuv422p"],
         "DNxHD (fixed-rate CID) kept", [video_field("codec_name", "profile", "pix_fmt")]),
    Case("mkv_ffv1_flac", ".mkv", [*video_src(), *tone(), *A, "-c:v", "ffv1", "-c:a", "flac"],
         "FFV1, FLAC copied", [video_field("codec_name", "pix_fmt"), same_streams("audio"), same_frame_times]),
    Case("avi_mjpeg_pcm", ".avi", [*video_src(), *tone(), *A, "-c:v", "mjpeg", "-c:a", "pcm_s16le"],
         "AVI: a codec AVI times correctly (no B-frames), audio with the video",
         [no_b_frames, same_frame_times, same_streams("audio")]),
    Case("avi_from_h264", ".mp4", [*video_src(), *tone(), *A, "-c:v", "libx264", "-c:a", "aac"],
         "H.264 source into AVI: no B-frames in AVI, frame times", [no_b_frames, same_frame_times], out_ext=".avi"),
    Case("mxf_from_h264", ".mp4", [*video_src(), "-c:v", "libx264"],
         "H.264 source into MXF: frames in order", [no_b_frames, same_frame_times], out_ext=".mxf"),
    Case("ts_mpeg2_mp2", ".ts", [*video_src(), *tone(), *A, "-c:v", "mpeg2video", "-c:a", "mp2"],
         "MPEG-2 and MP2 in TS", [video_codec_in("mpeg2video", "h264"), same_streams("audio"), same_frame_times]),
    Case("ps_mpeg2_mp2", ".mpg", [*video_src(), *tone(), *A, "-c:v", "mpeg2video", "-c:a", "mp2", "-f", "vob"],
         "MPEG-PS gets MPEG-2", [video_codec_in("mpeg2video"), same_streams("audio")]),
    Case("webm_vp9_opus", ".webm", [*video_src(), *tone(), *A, "-c:v", "libvpx-vp9", "-deadline", "realtime",
                                    "-c:a", "libopus"],
         "WebM keeps VP9/AV1 and Opus", [video_codec_in("vp9", "av1"), same_streams("audio")]),
    Case("mp4_aac_to_webm", ".mp4", [*video_src(), *tone(), *A, "-c:v", "libx264", "-c:a", "aac"],
         "AAC into WebM is re-encoded to Opus, said so",
         [video_codec_in("vp9", "av1"), audio_codec_in("opus", "vorbis")],
         out_ext=".webm", expect_warning="re-encoded"),
    Case("mkv_av1", ".mkv", [*video_src(), "-c:v", "libaom-av1", "-cpu-used", "8", "-crf", "40"],
         "AV1 source restored, frame times", [same_frame_times]),
    Case("dv_pal", ".dv", [*video_src("720x576"), *tone(rate=48000), *A, "-c:v", "dvvideo", "-pix_fmt", "yuv420p",
                           "-c:a", "pcm_s16le", "-ar", "48000", "-ac", "2", "-r", "25", "-f", "dv"],
         "DV stays DV in .dv", [video_codec_in("dvvideo"), video_field("width", "height")]),
    Case("dv_into_mov", ".dv", [*video_src("720x576"), *tone(rate=48000), *A, "-c:v", "dvvideo", "-pix_fmt", "yuv420p",
                                "-c:a", "pcm_s16le", "-ar", "48000", "-ac", "2", "-r", "25", "-f", "dv"],
         "raw DV into MOV: one line or a MOV with the audio", [stream_count("audio", 1)], out_ext=".mov"),
    Case("mov_pcm_to_mp4", ".mov", [*video_src(), *tone(), *A, "-c:v", "libx264", "-c:a", "pcm_s16le"],
         "PCM audio into MP4 is kept or re-encoded (no traceback), said so", [stream_count("audio", 1)],
         out_ext=".mp4"),
    Case("mkv_three_audio_tracks", ".mkv",
         [*video_src(), *tone(freq=440), *tone(freq=660), *tone(freq=880), "-map", "0:v", "-map", "1:a", "-map", "2:a",
          "-map", "3:a", "-c:v", "libx264", "-c:a:0", "aac", "-c:a:1", "ac3", "-c:a:2", "libopus",
          "-metadata:s:a:0", "language=eng", "-metadata:s:a:1", "language=fra", "-metadata:s:a:1", "title=Commentary",
          "-metadata:s:a:2", "language=deu", "-disposition:a:0", "default", "-disposition:a:1", "0",
          "-metadata:s:v:0", "title=Main", "-metadata:s:v:0", "language=eng"],
         "three audio tracks (AAC, AC-3, Opus) with language, title, disposition; video title and language",
         [same_streams("audio", "channels", "sample_rate"), same_streams("video")]),
    Case("mov_late_audio", ".mov", [*video_src(), "-itsoffset", "0.2", *tone(), *A, "-c:v", "libx264", "-c:a", "aac"],
         "audio that starts 0.2 s late stays late", [audio_starts_with_video, same_streams("audio")]),
    Case("mkv_srt_ass", ".mkv", [*video_src(), "-i", "{srt}", "-i", "{ass}", "-map", "0:v", "-map", "1", "-map", "2",
                                 "-c:v", "libx264", "-c:s:0", "srt", "-c:s:1", "ass",
                                 "-metadata:s:s:0", "language=eng"],
         "SRT and ASS subtitles in MKV", [same_streams("subtitle")]),
    Case("mp4_mov_text", ".mp4", [*video_src(), "-i", "{srt}", "-map", "0:v", "-map", "1", "-c:v", "libx264",
                                  "-c:s", "mov_text", "-metadata:s:s:0", "language=eng"],
         "mov_text subtitles in MP4", [same_streams("subtitle")]),
    Case("mkv_font_attachment", ".mkv", [*video_src(), "-attach", "{font}", "-metadata:s:t", "mimetype=font/ttf",
                                         "-c:v", "libx264"],
         "a font attachment in MKV, with its file name and MIME type", [same_streams("attachment")]),
    Case("mkv_chapters", ".mkv", [*video_src(seconds=0.8), "-i", "{chapters}", "-map_metadata", "1", "-map_chapters",
                                  "1", "-c:v", "libx264"],
         "MKV chapters with titles", [same_chapters]),
    Case("mov_chapters", ".mov", [*video_src(seconds=0.8), "-i", "{chapters}", "-map", "0:v", "-map_metadata", "1",
                                  "-map_chapters", "1", "-c:v", "libx264"],
         "MOV chapters with titles", [same_chapters]),
    Case("mov_timecode", ".mov", [*video_src(), "-c:v", "prores_ks", "-timecode", "01:00:00:00"],
         "the MOV timecode", [same_tag("timecode")]),
    Case("mov_timecode_partial", ".mov", [*video_src(seconds=0.8), "-c:v", "prores_ks", "-timecode", "01:00:00:00"],
         "a partial restore's timecode is offset to its start", [timecode_offset(10)],
         restore_args=["--start", "0.4"]),
    Case("mov_pasp_anamorphic", ".mov", [*video_src("64x48"), "-vf", "setsar=64/45", "-c:v", "libx264"],
         "pixel aspect (MOV pasp) and display aspect", [video_field("sample_aspect_ratio", "display_aspect_ratio")]),
    Case("mkv_display_size", ".mkv", [*video_src("64x48"), "-c:v", "ffv1", "-aspect", "16:9"],
         "Matroska display size (SAR/DAR)", [video_field("sample_aspect_ratio", "display_aspect_ratio")]),
    Case("mkv_interlaced_tff", ".mkv", [*video_src("64x48"), "-c:v", "ffv1", "-field_order", "tt"],
         "field order (top first)", [video_field("field_order")]),
    Case("mov_prores_interlaced", ".mov", [*video_src("64x48"), "-c:v", "prores_ks", "-flags", "+ildct+ilme",
                                           "-top", "1"],
         "interlaced ProRes stays flagged interlaced", [video_field("field_order")]),
    Case("mp4_chroma_location", ".mp4", [*video_src(), "-c:v", "libx264", "-chroma_sample_location", "topleft"],
         "chroma location (read with ffprobe where it is on PATH: PyAV 18 exposes none)",
         [video_field("chroma_location")]),
    Case("mp4_rotation", ".mp4", [*video_src(), "-c:v", "libx264"],
         "display rotation", [rotation_kept], remux=["-metadata:s:v:0", "rotate=90"]),
    Case("mkv_vfr", ".mkv", [*video_src(rate="50", seconds=0.6), "-vf", "select='not(mod(n\\,3))+eq(mod(n\\,5)\\,1)'",
                             "-fps_mode", "vfr", "-c:v", "libx264"],
         "variable frame rate: every frame at its own time", [same_frame_times, is_vfr]),
    Case("ts_ten_hours_start", ".ts", [*video_src(seconds=1.0), *tone(seconds=1.0), *A, "-c:v", "libx264", "-c:a",
                                       "aac", "-output_ts_offset", "36000"],
         "--start is relative to the stream start (a TS at 10:00:00 cut at 0.4 s)", [start_time_shifted(0.4)],
         restore_args=["--start", "0.4"]),
    Case("mov_ffmpeg_backend_system", ".mov", [*video_src(), *tone(), *A, "-c:v", "prores_ks", "-c:a", "pcm_s16le"],
         "--encoder-backend ffmpeg with the system's ffmpeg (5.1 spells -enc_time_base -1): frames and audio",
         [same_frame_times, same_streams("audio"), video_field("codec_name")],
         restore_args=["--encoder-backend", "ffmpeg", "--ffmpeg-binary", ffmpeg_exe()]),
    Case("mkv_truncated_tail", ".mkv", [*video_src(), "-c:v", "libx264", "-g", "5"],
         "a tail cut between packets is warned about", [], damage=cut_before_last_packets(3),
         expect_warning="truncated", strict_fails=True),
    Case("mp4_truncated_tail", ".mp4", [*video_src(), "-c:v", "libx264", "-g", "5", "-movflags", "+faststart"],
         "a tail cut between packets is warned about", [], damage=cut_before_last_packets(3),
         expect_warning="truncated", strict_fails=True),
    Case("ts_truncated_tail", ".ts", [*video_src(), "-c:v", "libx264", "-g", "5"],
         "a TS cut between packets is warned about", [], damage=cut_before_last_packets(3),
         expect_warning="truncated", strict_fails=True),
    Case("ts_joined_overlapping", ".ts", [*video_src(), "-c:v", "libx264", "-g", "5"],
         "two TS recordings joined with overlapping timestamps: no traceback, the repeats said",
         [], damage=append_ts("64x48"), expect_warning="repeated an earlier timestamp"),
    Case("ts_size_change", ".ts", [*video_src(), "-c:v", "libx264", "-g", "5"],
         "a second recording of another size joined with overlapping timestamps: its frames left out, their size "
         "said; fails --strict", [], damage=append_ts("96x72"), expect_warning="of 96x72", strict_fails=True),
    Case("mkv_corrupt_macroblocks", ".mkv", [*video_src("128x96"), "-c:v", "mpeg2video", "-g", "100", "-b:v", "2M"],
         "corrupt macroblocks are warned about and fail --strict", [], damage=corrupt_inside_packet(4),
         expect_warning="damaged", strict_fails=True),
    Case("mp4_faces_h264_aac", ".mp4", [*tone(seconds=0.4), "-c:v", "libx264", "-c:a", "aac", "-shortest"],
         "a real face through the faced path: frame times and audio", [same_frame_times, same_streams("audio")],
         faces=True),
    Case("mov_faces_prores4444", ".mov", ["-c:v", "prores_ks", "-profile:v", "4444", "-pix_fmt", "yuva444p10le"],
         "a real face in ProRes 4444 keeps alpha and depth",
         [video_is_one_of("pix_fmt", "yuva444p10le", "yuva444p12le"), same_frame_times],
         faces=True),
    Case("mkv_srt_into_mp4", ".mkv", [*video_src(), "-i", "{srt}", "-map", "0:v", "-map", "1", "-c:v", "libx264",
                                      "-c:s", "srt", "-metadata:s:s:0", "language=eng"],
         "SRT into MP4: converted to mov_text (as the ffmpeg CLI does), said even with -q",
         [stream_count("subtitle", 1), same_frame_times], out_ext=".mp4",
         expect_warning="converted to mov_text"),
    # issue 22 (archive masters through the writer): fields, pixel aspect, depth through every intermediate
    Case("mkv_ffv1_pal_tff_4x3", ".mkv", [*pal_like(), "-c:v", "ffv1", "-pix_fmt", "yuv422p10le", "-field_order",
                                          "tt"],
         "FFV1 PAL 4:3 interlaced: SAR/DAR, field order, every frame's TFF flag, 10 bits",
         [display_kept, video_field("field_order", "pix_fmt"), frames_flagged_like_input]),
    Case("mkv_ffv1_bff_16x9_upscaled", ".mkv", [*pal_like(sar="64/45", fields="bff"), "-c:v", "ffv1", "-field_order",
                                                "bb"],
         "FFV1 16:9 bottom-field-first, upscaled 2x with --deinterlace keep: aspect and bff frames",
         [display_kept, video_field("field_order"), frames_flagged_like_input],
         restore_args=["--deinterlace", "keep", "--upscale", "2"]),
    Case("mkv_ffv1_16bit_alpha_wide", ".mkv", [*pal_like(sar="64/45", fields="prog", fmt="yuva444p16le"),
                                               "-c:v", "ffv1", "-pix_fmt", "yuva444p16le"],
         "FFV1 16-bit with alpha, 16:9 pixels: depth, alpha, aspect", [display_kept, video_field("pix_fmt")]),
    Case("mov_prores4444_tff_4x3", ".mov", [*pal_like(fmt="yuva444p10le"), "-c:v", "prores_ks", "-profile:v", "4444",
                                            "-alpha_bits", "8", "-flags", "+ildct+ilme", "-top", "1"],
         "ProRes 4444 with 8-bit alpha, interlaced 4:3: pasp, fiel, frames' flags, alpha format",
         [display_kept, video_field("field_order", "pix_fmt", "profile"), frames_flagged_like_input]),
    Case("mkv_prores422_bff_from_mov", ".mov", [*pal_like(sar="64/45", fields="bff"), "-c:v", "prores_ks",
                                                "-flags", "+ildct+ilme", "-top", "0"],
         "ProRes 422 bff 16:9 from MOV into Matroska: display size set, bff kept in tag and frames",
         [display_kept, video_field("codec_name", "field_order"), frames_flagged_like_input], out_ext=".mkv"),
    Case("mkv_rawvideo_4x3", ".mkv", [*pal_like(fields="prog"), "-c:v", "rawvideo", "-pix_fmt", "yuv422p"],
         "raw 4:2:2 video in Matroska keeps its pixel aspect", [display_kept, video_field("codec_name", "pix_fmt")]),
    Case("mov_v210_tff_4x3", ".mov", [*pal_like(), "-c:v", "v210", "-field_order", "tt"],
         "v210 interlaced 4:3 in MOV: aspect, field order, frames' flags",
         [display_kept, video_field("codec_name", "field_order"), frames_flagged_like_input]),
    Case("mov_dnxhr_hqx_wide", ".mov", [*pal_like("256x144", sar="4/3", fields="prog"), "-c:v", "dnxhd",
                                        "-profile:v", "dnxhr_hqx", "-pix_fmt", "yuv422p10le"],
         "DNxHR HQX 10-bit, anamorphic, in MOV", [display_kept, video_field("codec_name", "profile", "pix_fmt")]),
    Case("mkv_dnxhr_becomes_ffv1", ".mov", [*pal_like("256x144", sar="4/3", fields="prog"), "-c:v", "dnxhd",
                                            "-profile:v", "dnxhr_hqx", "-pix_fmt", "yuv422p10le"],
         "DNxHR into Matroska (which cannot hold it): lossless FFV1 with depth and aspect, said so",
         [display_kept, video_field("pix_fmt"), video_codec_in("ffv1")], out_ext=".mkv",
         expect_warning="FFV1 (lossless) instead"),
    Case("mxf_mpeg2_tff_keep_to_h264_upscaled", ".mxf", [*pal_like("176x144", fields="tff"), "-c:v", "mpeg2video",
                                                         "-flags", "+ildct+ilme", "-top", "1", "-b:v", "2M"],
         "PAL MPEG-2 tff restored --deinterlace keep --upscale 2 into H.264: frames flagged tff, not bff",
         [video_codec_in("h264"), video_field("field_order"), frames_flagged_like_input], out_ext=".mp4",
         restore_args=["--deinterlace", "keep", "--upscale", "2"]),
    Case("mxf_mpeg2_bff_keep_to_h264", ".mxf", [*pal_like("176x144", fields="bff"), "-c:v", "mpeg2video",
                                                "-flags", "+ildct+ilme", "-top", "0", "-b:v", "2M"],
         "MPEG-2 bff restored --deinterlace keep into H.264 in Matroska: bff in the tag and every frame",
         [video_codec_in("h264"), video_field("field_order"), frames_flagged_like_input], out_ext=".mkv",
         restore_args=["--deinterlace", "keep"]),
    # issue 22 (side streams and transport streams)
    Case("mpg_mpeg2_tff_two_audio", ".mpg", [*video_src(), *tone(), *tone(freq=660), *A2, *MPEG2_TFF, "-c:a", "mp2",
                                             "-f", "vob"],
         "interlaced MPEG-2 in PS (first frame at 13.5 frames) with two audio tracks: A/V offset to the tick",
         [av_offset_kept, video_field("field_order"), same_streams("audio")]),
    Case("mpg_mpeg2_bff_one_audio", ".mpg", [*video_src(), *tone(), *A, *MPEG2_BFF, "-c:a", "mp2", "-f", "vob"],
         "bottom-first MPEG-2 in PS, one audio track: A/V offset to the tick", [av_offset_kept, same_frame_times]),
    Case("ts_mpeg2_tff_odd_start", ".ts", [*video_src(), *tone(), *tone(freq=660), *A2, *MPEG2_TFF, "-c:a", "mp2",
                                           "-output_ts_offset", "10.013"],
         "a TS starting off the frame grid, re-encoded to MPEG-2: A/V offset to the tick",
         [av_offset_kept, video_codec_in("mpeg2video")], restore_args=["--video-codec", "mpeg2video"]),
    Case("ts_mpeg2_bff_into_mpg", ".ts", [*video_src(), *tone(), *tone(freq=660), *A2, *MPEG2_BFF, "-c:a", "mp2",
                                          "-output_ts_offset", "0.02"],
         "bottom-first MPEG-2 TS into PS, two audio tracks: A/V offset to the tick", [av_offset_kept],
         out_ext=".mpg"),
    Case("mxf_mpeg2_tff_two_pcm", ".mxf", [*video_src(), *tone(), *tone(freq=660), *A2, *MPEG2_TFF,
                                           "-c:a", "pcm_s16le"],
         "interlaced MPEG-2 in MXF with two PCM tracks", [av_offset_kept, same_streams("audio"),
                                                          video_field("field_order")]),
    Case("mkv_side_streams_all", ".mkv", MKV_ALL, "second video (first in the file, B-frames), SRT, ASS, a font, "
         "chapters: all kept, no traceback", [same_video_packets, same_streams("subtitle"), same_streams("attachment"),
                                              same_chapters]),
    Case("mkv_side_streams_into_mov", ".mkv", MKV_ALL, "the same into MOV: both videos, subtitles as mov_text, "
         "chapters; the font left out in one line", [same_video_packets, stream_count("subtitle", 2), same_chapters],
         out_ext=".mov", expect_warning="cannot hold attachment"),
    Case("mkv_side_streams_into_avi", ".mkv", MKV_ALL, "the same into AVI: the muxer refuses the second H.264 "
         "(length-prefixed): one line, the rest kept", [stream_count("video", 2)], out_ext=".avi",
         expect_warning="refuses its packets"),
    Case("mkv_side_streams_into_mxf", ".mkv", MKV_ALL, "the same into MXF: what it cannot hold left out in one line "
         "each (no mov_text there), no traceback", [stream_count("subtitle", 0)], out_ext=".mxf",
         expect_warning="mxf cannot hold"),
    Case("ts_size_change_scaled", ".ts", [*video_src(), "-c:v", "libx264", "-g", "5"],
         "a broadcast switching size mid-stream: the frames, sizes and times said, scaled to the first; --strict "
         "refuses", [video_field("width", "height")], damage=append_ts_after("96x72", 0.4),
         expect_warning="are 96x72, scaled to 64x48", strict_fails=True),
    Case("ts_cut_mid_packet", ".ts", [*video_src(), *tone(), *A, "-c:v", "libx264", "-bf", "0", "-g", "5",
                                      "-c:a", "mp2"],
         "a TS cut mid TS packet (no B-frames to count): warned, --strict refuses", [],
         damage=cut_bytes_from_end(1000), expect_warning="bytes into a 188-byte TS packet", strict_fails=True),
    Case("ts_cut_mid_audio_pes", ".ts", [*video_src(), *tone(), *A, "-c:v", "mpeg2video", "-bf", "0", "-c:a", "mp2"],
         "a TS cut inside its last audio PES: warned", [], damage=cut_inside_last_audio_pes(2),
         expect_warning="last PES packet"),
    Case("mpg_cut_mid_pes", ".mpg", [*video_src(), *tone(), *A, "-c:v", "mpeg2video", "-bf", "0", "-c:a", "mp2",
                                     "-f", "vob"],
         "a PS cut inside a PES packet: warned", [], damage=cut_bytes_from_end(1000), expect_warning="last PES packet"),
    Case("mov_pcm24_into_mp4", ".mov", [*video_src(), *tone(), *A, "-c:v", "libx264", "-c:a", "pcm_s24le"],
         "24-bit PCM into MP4 becomes ALAC, said, decoding to the same samples",
         [audio_codec_in("alac"), audio_decodes_same], out_ext=".mp4", expect_warning="converted to ALAC, lossless"),
    Case("mov_pcm_float_into_mp4", ".mov", [*video_src(), *tone(), *A, "-c:v", "libx264", "-c:a", "pcm_f32le"],
         "float PCM into MP4 (no lossless codec players read holds it): copied as fpcm, said",
         [stream_count("audio", 1)], out_ext=".mp4", expect_warning="few players read"),
    # issue 22 (ffmpeg backend): fields, frame flags and pixel aspect through --encoder-backend ffmpeg
    Case("mkv_ffv1_tff_4x3_ffmpeg_backend", ".mkv", [*pal_like(), "-c:v", "ffv1", "-field_order", "tt"],
         "FFV1 PAL 4:3 tff through the ffmpeg CLI: SAR/DAR, field order tag, every frame's TFF flag",
         [display_kept, video_field("codec_name", "field_order"), frames_flagged_like_input],
         restore_args=FFMPEG_BACKEND),
    Case("mkv_prores_bff_16x9_ffmpeg_backend", ".mov", [*pal_like(sar="64/45", fields="bff"), "-c:v", "prores_ks",
                                                       "-flags", "+ildct+ilme", "-top", "0"],
         "ProRes bff 16:9 from MOV into Matroska through the ffmpeg CLI: display size, bff in tag and frames",
         [display_kept, video_field("codec_name", "field_order"), frames_flagged_like_input], out_ext=".mkv",
         restore_args=FFMPEG_BACKEND),
    Case("mov_mpeg2_bff_from_mxf_ffmpeg_backend", ".mxf", [*pal_like("176x144", fields="bff"), "-c:v", "mpeg2video",
                                                          "-flags", "+ildct+ilme", "-top", "0", "-b:v", "2M"],
         "MPEG-2 bff MXF into MOV as MPEG-2 through the ffmpeg CLI (its time base: one frame): bff tag and frames",
         [video_codec_in("mpeg2video"), video_field("field_order"), frames_flagged_like_input, same_frame_times],
         out_ext=".mov", restore_args=[*FFMPEG_BACKEND, "--video-codec", "mpeg2video"]),
    Case("mp4_h264_anamorphic_ffmpeg_backend", ".mp4", [*pal_like("64x48", sar="4/3", fields="prog"), "-c:v",
                                                       "libx264", "-preset", "ultrafast"],
         "H.264 progressive 4:3 pixels through the ffmpeg CLI: SAR/DAR", [display_kept, video_codec_in("h264")],
         restore_args=[*FFMPEG_BACKEND, "--preset", "ultrafast"]),
]  # fmt: skip

SRT = "1\n00:00:00,000 --> 00:00:00,300\nHello\n\n2\n00:00:00,300 --> 00:00:00,400\nWorld\n"
ASS = ass_script("0:00:00.00,0:00:00.30,Bonjour")
CHAPTERS = ";FFMETADATA1\n[CHAPTER]\nTIMEBASE=1/1000\nSTART=0\nEND=400\ntitle=One\n" \
           "[CHAPTER]\nTIMEBASE=1/1000\nSTART=400\nEND=800\ntitle=Two\n"  # fmt: skip


@pytest.fixture(scope="module")
def assets(tmp_path_factory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("assets")
    (folder / "subs.srt").write_text(SRT)
    (folder / "subs.ass").write_text(ASS)
    (folder / "chapters.txt").write_text(CHAPTERS)
    font = next(iter(sorted(FONT_DIR.rglob("*.ttf"))), None) if FONT_DIR.exists() else None
    font_path = folder / "font.ttf"
    if font is not None:
        shutil.copy(font, font_path)
    else:  # any bytes do: the attachment is carried, not parsed
        font_path.write_bytes(b"\x00\x01\x00\x00" + bytes(range(256)) * 8)
    from gpen_video.synthetic import faces_image_path

    picture = folder / "face.jpg"
    shutil.copy(faces_image_path(), picture)
    return {"srt": str(folder / "subs.srt"), "ass": str(folder / "subs.ass"),
            "chapters": str(folder / "chapters.txt"), "font": str(font_path), "face": str(picture)}  # fmt: skip


def build_input(case: Case, folder: Path, assets: dict[str, str]) -> Path:
    path = folder / f"{case.name}{case.ext}"
    args = [a.format(**assets) if a.startswith("{") else a for a in case.build]
    if case.faces:
        inputs = ["-loop", "1", "-framerate", "25", "-t", "0.4", "-i", assets["face"]]
        if "-shortest" in args:  # a tone as a second input, mapped with the picture
            inputs += args[: args.index("-c:v")]
            args = [*args[args.index("-c:v") : args.index("-shortest")], "-map", "0:v", "-map", "1:a", "-shortest"]
        args = [*inputs, "-vf", "scale=320:240", *args]
    ffmpeg(*args, path)
    if case.remux is not None:
        first = path.with_name(f"{case.name}.first{case.ext}")
        path.rename(first)
        ffmpeg("-i", first, "-map", "0", "-c", "copy", *case.remux, path)
    if case.damage is not None:
        case.damage(path)
    path.chmod(0o444)
    return path


pytestmark = pytest.mark.skipif(ffprobe_exe() is None, reason="ffprobe missing: run scripts/setup.sh --test")


def test_matrix_is_broad_enough() -> None:
    """At least 30 cases, each naming what it keeps and checking something (or the warning it expects)."""
    assert len(CASES) >= 30
    assert len({c.name for c in CASES}) == len(CASES)
    assert all(c.keeps and (c.checks or c.expect_warning) for c in CASES)
    containers = {c.ext for c in CASES} | {c.out_ext for c in CASES if c.out_ext}
    assert {".mov", ".mp4", ".mkv", ".mxf", ".avi", ".ts", ".mpg", ".webm", ".dv"} <= containers


def _param(case: Case):
    marks = [pytest.mark.xfail(strict=True, reason=case.known_gap)] if case.known_gap else []
    return pytest.param(case, id=case.name, marks=marks)


@pytest.mark.parametrize("case", [_param(c) for c in CASES])
@pytest.mark.slow
def test_conformance(case: Case, tmp_path: Path, assets: dict[str, str], run_cli) -> None:
    source = build_input(case, tmp_path, assets)
    output = tmp_path / f"{case.name}.restored{case.out_ext or case.ext}"
    result = run_cli("restore", source, "-o", output, "--model", "identity", "-q", *case.restore_args)
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 0, result.stderr
    assert output.exists()
    if case.expect_warning:
        assert case.expect_warning in result.stderr, result.stderr
    src, out = ffprobe(source), ffprobe(output)
    for check in case.checks:
        check(src, out)
    if case.strict_fails:
        strict_out = tmp_path / f"{case.name}.strict{case.out_ext or case.ext}"
        strict = run_cli("restore", source, "-o", strict_out, "--model", "identity", "-q", "--strict")
        assert strict.returncode == 2, strict.stderr
        assert len(strict.stderr.strip().splitlines()) == 1, strict.stderr
        assert not strict_out.exists()
