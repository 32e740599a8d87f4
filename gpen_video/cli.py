"""``gpen-video``: restore, preview, batch, probe, weights.

The CLI turns flags into one ``Config`` (preset + overrides), runs the library, shows a tqdm bar,
and turns every ``GpenVideoError`` into one line on stderr and exit code 2. ``-v`` adds tracebacks.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from pathlib import Path
from typing import Any, NoReturn

from gpen_video import __version__
from gpen_video.config import (
    COMPARE_MODES,
    Config,
    add_flags,
    add_set_flag,
    config_from_flags,
    load_config,
    preset_names,
)
from gpen_video.config import parse_seconds as parse_seconds  # re-exported: times on the command line
from gpen_video.errors import GpenVideoError

log = logging.getLogger("gpen_video")

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad command line in one line, like every other error."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="gpen-video", description="Restore the faces in video and film scans with GPEN.")
    parser.add_argument("--version", action="version", version=f"gpen-video {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    restore = sub.add_parser("restore", help="restore the faces of a video (the main job)")
    restore.add_argument("input", type=Path,
                         help="video, image sequence (reel_%%06d.dpx, 'scan/*.tif', a folder) or still")  # fmt: skip
    restore.add_argument("-o", "--output", type=Path, help="output file (default: NAME.restored.EXT beside the input)")
    _add_run_options(restore)

    probe = sub.add_parser("probe", help="show what a video holds and what would be done with it")
    probe.add_argument("input", type=Path)
    probe.add_argument("--json", action="store_true", help="machine-readable output")
    probe.add_argument("--exact", action="store_true", help="count every packet (reads the whole file)")
    probe.add_argument("--plan", action="store_true", help="also show what restore would do with each stream")
    probe.add_argument("-o", "--output", type=Path, help="with --plan: the output restore would write")
    probe.add_argument("--config", default="default", help="with --plan: the preset or YAML restore would use")
    _add_verbosity(probe)

    preview = sub.add_parser("preview", help="restore a few seconds and write a before/after clip and contact sheet")
    preview.add_argument("input", type=Path)
    preview.add_argument("-o", "--output", type=Path, help="prefix of the outputs (default: NAME.preview)")
    preview.add_argument("--compare", choices=COMPARE_MODES, default=COMPARE_MODES[0],
                         help="comparison clip: side by side, split screen, or none")  # fmt: skip
    _add_run_options(preview)

    from gpen_video.jobs import batch_cli
    from gpen_video.models import weights_cli

    batch_cli.add_parser(sub, _add_run_options)
    weights_cli.add_parser(sub)
    _add_verbosity(sub.choices["weights"])
    return parser


def _add_verbosity(p: argparse.ArgumentParser) -> None:
    p.add_argument("-v", "--verbose", action="count", default=0, help="more detail (tracebacks with -v)")
    p.add_argument("-q", "--quiet", action="store_true", help="errors only, no progress bar")


def _add_run_options(p: argparse.ArgumentParser) -> None:
    """The flags of a run: the preset, one flag per declared option (``config.py``), the report."""
    p.add_argument("--config", default="default", help=f"preset ({', '.join(preset_names())}) or a YAML file")
    add_flags(p, Config)
    add_set_flag(p)
    p.add_argument("--report", type=Path, help="write a JSON report of the run here")
    _add_verbosity(p)


def config_from_args(args: argparse.Namespace) -> Config:
    """The preset named by ``--config``, then the flags given; checked by ``load_config``."""
    return config_from_flags(args.config, vars(args))


def _setup_logging(verbose: int, quiet: bool) -> None:
    level = logging.ERROR if quiet else {0: logging.WARNING, 1: logging.INFO}.get(verbose, logging.DEBUG)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("gpen-video: %(message)s"))
    root = logging.getLogger("gpen_video")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
    logging.getLogger("libav").setLevel(logging.ERROR)


def cmd_restore(args: argparse.Namespace) -> int:
    config = config_from_args(args)  # a bad option is answered before the pipeline's imports (about 4 s)
    from tqdm import tqdm

    from gpen_video.run.restore import job_frames, restore_job, run_restore

    if args.report:  # issue 12: an unwritable report path fails now, not after the run
        from gpen_video.io.output import check_writable

        check_writable(args.report)
    job = restore_job(args.input, args.output, config)  # video or image sequence: decided here, once
    total = job_frames(job)  # a sequence's too: every long run shows the time left
    with tqdm(total=total, unit="frame", disable=True if args.quiet else None, dynamic_ncols=True) as bar:

        def progress(done: int) -> None:
            bar.update(done - bar.n)

        report = run_restore(dataclasses.replace(job, progress=progress))
    for warning in report.warnings:
        print(f"gpen-video: warning: {warning}", file=sys.stderr)  # issue 12: warnings survive -q
    if not args.quiet:
        print(f"gpen-video: wrote {job.output}: {report.summary()}", file=sys.stderr)
        if report.hint:
            print(f"gpen-video: hint: {report.hint}", file=sys.stderr)
    if args.report:
        report.write(args.report)
    return 0


def cmd_preview(args: argparse.Namespace) -> int:
    chosen = config_from_args(args)  # a bad option is answered before the pipeline's imports
    from tqdm import tqdm

    from gpen_video.io.probe import probe
    from gpen_video.preview import preview_config, run_preview
    from gpen_video.run import planned_frames

    config = preview_config(chosen, args.start, args.duration)
    info = probe(args.input)
    total = planned_frames(info, config)
    with tqdm(total=total, unit="frame", disable=True if args.quiet else None, dynamic_ncols=True) as bar:
        result = run_preview(args.input, config, args.compare, args.output, lambda done: bar.update(done - bar.n),
                             info=info)  # fmt: skip
    for warning in result.report.warnings:
        print(f"gpen-video: warning: {warning}", file=sys.stderr)  # issue 12: warnings survive -q
    if args.report:
        result.report.write(args.report)
    if not args.quiet:
        out = result.outputs
        written = [str(p) for p in (out.restored, out.comparison, out.contact_sheet) if p is not None]
        print(f"gpen-video: preview {result.report.summary()}\n  " + "\n  ".join(written), file=sys.stderr)
    return 0


def cmd_probe(args: argparse.Namespace) -> int:
    from gpen_video.io.sequence import looks_like_sequence

    if looks_like_sequence(args.input):  # issue 22: a folder, pattern, glob or image file
        return probe_sequence_command(args)
    from gpen_video.io.field_check import check_fields
    from gpen_video.io.probe import probe

    info = probe(args.input, exact=args.exact)  # --exact scans; else the container's index
    info = check_fields(info, tagged_progressive_too=True)  # not tagged tff/bff: the first pictures judged
    plan = None
    if args.plan:  # issue 12: the logic is io/plan.py
        from gpen_video.io.output import default_output_path
        from gpen_video.io.plan import plan_for
        from gpen_video.run.identity import plan_guard

        config = load_config(args.config)
        plan = plan_for(info, args.output or default_output_path(args.input), config.output)
        guard = plan_guard(config.identity)
    if args.json:
        data = info.to_dict()
        if plan is not None:
            data["plan"] = {"format": plan.output_format, "video": plan.video.describe(), "reason": plan.video.reason,
                            "streams": [vars(p) for p in plan.streams], "warnings": plan.warnings,
                            "fusion": dataclasses.asdict(config.fusion),
                            "selection": {**dataclasses.asdict(config.selection),
                                          "describe": config.selection.describe()},
                            "identity": dataclasses.asdict(guard)}  # fmt: skip
        print(json.dumps(data, indent=2, default=str))
        return 0
    print(format_probe(info))
    if plan is not None:
        lines = [f"  {config.fusion.describe()}", f"  {config.selection.describe()}", f"  {guard.line}"]
        print("\n".join([*plan.describe(), *lines]))
    return 0


def probe_sequence_command(args: argparse.Namespace) -> int:
    """``probe`` on an image sequence: its range, holes, picture and header; with --plan, what restore writes."""
    from gpen_video.io.sequence_probe import probe_sequence
    from gpen_video.run.sequence import plan_sequence

    found = probe_sequence(args.input)
    plan = plan_sequence(args.input, args.output, load_config(args.config)) if args.plan else None
    if args.json:
        data = found.to_dict() | ({"plan": dataclasses.asdict(plan)} if plan else {})
        print(json.dumps(data, indent=2, default=str))
    else:
        print("\n".join(found.describe() + (plan.describe() if plan else [])))
    return 0


_ESTIMATED = {"estimate": " (estimated)"}  # issue 13: a frame count from duration × rate


def format_probe(info: Any) -> str:
    v = info.video
    rate = f"{float(v.frame_rate):.3f} fps" if v.frame_rate else "unknown rate"
    lines = [
        f"{info.path}: {info.format_name}, {info.size_bytes / 1e6:.1f} MB, {v.duration:.3f}s",
        f"  video #{v.index}: {v.codec}" + (f" ({v.profile})" if v.profile else "") + f", {v.width}x{v.height}, "
        f"{rate}{' (VFR)' if v.is_vfr else ''}, {v.frame_count} frames{_ESTIMATED.get(v.frame_count_source, '')}, "
        f"time base {v.time_base}",
        f"    colour: {v.colour.describe()}",
        f"    rotation: {v.rotation}°" + (f", timecode {v.timecode}" if v.timecode else ""),
        *(f"    {line}" for line in v.metadata.describe()),  # aspect, fields, HDR, chapters, attachments
    ]
    if v.field_check is not None:  # issue 15: what the first pictures show where the tag says no field order
        lines.append(f"    fields from the pictures: {field_check_line(v)}")
    from gpen_video.io.field_check import TELECINE_RATE, probe_telecine

    if v.frame_rate == TELECINE_RATE and info.path.is_file():
        lines.append(f"    pulldown: {probe_telecine(str(info.path), v.index).describe()}")
    for s in info.streams:
        detail = s.codec or "unknown codec"
        if s.type == "audio":
            detail += f", {s.sample_rate} Hz, {s.layout or s.channels}"
        if s.language and s.language != "und":
            detail += f", language {s.language}"
        count = {"estimate": f"about {s.packets} packets", "none": "packets not counted (--exact counts them)"}
        lines.append(f"  {s.type} #{s.index}: {detail}, {count.get(s.packet_count_source, f'{s.packets} packets')}")
    if info.damaged_packets:
        lines.append(f"  damaged: {info.damaged_packets} packet(s) could not be read")
    return "\n".join(lines)


def field_check_line(video: Any) -> str:
    """``interlaced, top field first (confident: ...)``, with what a restore does with it."""
    analysis = video.field_check.analysis
    said = f"{analysis.describe()}, {video.field_check.milliseconds:.0f} ms"
    if video.metadata.field_order_id == 1 and analysis.confident:  # tagged progressive, yet combed
        return f"{said}; restore treats it as tagged (progressive) unless given --field-order {analysis.order}"
    if analysis.confident:
        return f"{said}; restore works per field"
    return f"{said}; restore treats it as progressive"


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    _setup_logging(getattr(args, "verbose", 0), getattr(args, "quiet", False))
    handlers = {"restore": cmd_restore, "preview": cmd_preview, "probe": cmd_probe}
    from gpen_video.io.termination import install_termination_handlers

    install_termination_handlers()  # issue 12: SIGTERM/SIGHUP clean up like Ctrl-C
    try:
        if args.command == "weights":
            from gpen_video.models import weights_cli

            return weights_cli.run(args)
        if args.command == "batch":
            from gpen_video.jobs import batch_cli

            return batch_cli.run(args)
        return handlers[args.command](args)
    except GpenVideoError as exc:
        if getattr(args, "verbose", 0):
            log.exception("traceback:")
        print(f"gpen-video: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("gpen-video: interrupted; no output was written", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    raise SystemExit(main())
