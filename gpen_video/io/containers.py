"""FFmpeg format and family names that behave alike in one way, each set declared once with what it is for.

Demuxer sets are matched against ``MediaInfo.format_name`` (the demuxer's first name); family sets against
``formats.container_family`` of a muxer's name.
"""

from __future__ import annotations

# -- demuxers ------------------------------------------------------------------------------------------------
# Demuxers without an index: their seek lands on any packet before the target, not on a key frame.
UNINDEXED_FORMATS = ("mpegts", "mpeg", "mpegvideo", "h264", "hevc", "m4v", "mpeg1video", "mpeg2video")

# Demuxers whose packet position (``packet.pos``) is a point they can start reading from: a TS packet or a PS pack
# that begins a PES packet. A batch segment whose plan found its key frame by seeking knows that key frame's
# position, and opens the file there (FFmpeg's ``skip_initial_bytes``) instead of seeking by timestamp: a timestamp
# seek there bisects the file, reading its last 250 kB for the end's timestamp, and the open's stream analysis
# reads its first 250 kB, both again for every segment. Opened at the key frame, the analysis reads the packets
# the segment decodes anyway.
BYTE_START_FORMATS = ("mpegts", "mpeg")

# Demuxers whose container duration FFmpeg estimates from the timestamps (the last 250 kB of the file read again),
# not from a header: a cut tail cannot be told from it. Matched as name prefixes (``mpegvideo`` too).
PTS_DURATION_FORMATS = ("mpegts", "mpeg")

# Demuxers with an index (cues) only after the first seek, and of key frames only.
CUE_FORMATS = ("matroska", "webm")

# -- stream types ----------------------------------------------------------------------------------------------
# The side streams a batch's output holds (assembly copies these; attachments and extra video are left out).
ASSEMBLED_SIDE_TYPES = ("audio", "subtitle", "data")

# -- muxer families ----------------------------------------------------------------------------------------------
# Containers whose index has no presentation timestamps per frame: B-frames come out mistimed (AVI stores
# only decode order; FFmpeg's MXF muxer writes H.264 without its reorder delay). Encoders reorder nothing here.
NO_REORDER_FAMILIES = frozenset({"avi", "mxf", "mxf_d10", "mxf_opatom", "dv", "mpeg", "vob", "gxf"})

# Containers where ``auto`` takes the muxer's own video codec: H.264/HEVC cannot be timed or held there (AVI: even
# without B-frames, FFmpeg's H.264 decoder guesses a reorder delay there and shows every frame one late).
MUXER_CODEC_FAMILIES = ("mpeg", "vob", "dv", "mxf", "webm", "avi")

# A batch segment's own file, in order of preference: NUT keeps every timestamp exactly; codecs it cannot hold
# (ProRes) go in MOV (intra: no B-frame shift). (suffix, muxer) pairs.
SEGMENT_CONTAINERS = ((".nut", "nut"), (".mov", "mov"))
