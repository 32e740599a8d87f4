"""Every declared limit is enforced alike through a preset (YAML file), the command line and a manifest row.

The cases are generated from the declaration in ``config.py``: a new option with a ``Range``, ``Choice``,
``Match`` or ``Literal`` is tested here without a new line of test code.
"""

from __future__ import annotations

import ast
import typing
from pathlib import Path

import pytest
import yaml

from gpen_video import cli
from gpen_video.config import (
    COMPARE_MODES,
    Choice,
    JobSettings,
    Match,
    Option,
    Precision,
    Range,
    load_config,
    options,
    per_job_fields,
)
from gpen_video.errors import ConfigError, InputError
from gpen_video.jobs.inputs import discover

ROOT = Path(__file__).resolve().parent.parent


def _bad_and_good(option: Option) -> tuple[object, object]:
    """A value outside the option's limits, and one inside them that differs from the default."""
    if option.choices:
        good = next(c for c in option.choices if c != option.default)
        bad = 3 if isinstance(option.choices[0], int) else "nosuch"
        return bad, good
    constraint = option.constraints[0]
    if isinstance(constraint, Choice):
        return "nosuch", next(n for n in constraint.names if n != option.default)
    if isinstance(constraint, Match):
        assert constraint.problem(constraint.example) is None and constraint.example != option.default
        return "gpu0", constraint.example
    assert isinstance(constraint, Range)
    step = 1 if option.base is int else 0.5
    if constraint.high is not None:
        bad = constraint.high + step
    elif constraint.above is not None:
        bad = constraint.above
    else:
        bad = constraint.low - step
    low = constraint.low if constraint.low is not None else constraint.above + step
    candidates = [constraint.high, constraint.low, low + step]
    good = next(c for c in candidates if c is not None and c != option.default)
    return (int(bad), int(good)) if option.base is int else (bad, good)


LIMITED = [o for o in options() if o.constraints or o.choices]


def _value_at(config: object, dotted: str) -> object:
    for part in dotted.split("."):
        config = getattr(config, part)
    return config


def _nested(dotted: str, value: object) -> dict:
    *parents, leaf = dotted.split(".")
    data: dict = {leaf: value}
    for parent in reversed(parents):
        data = {parent: data}
    return data


def _cli_args(option: Option, value: object) -> list[str]:
    if option.flag is not None:
        return [option.flag.name, str(value)]
    return ["--set", f"{option.dotted}={value}"]


def _main(argv: list[str]) -> int:
    try:
        return cli.main(argv)
    except SystemExit as exc:  # argparse's own refusal (choices, time syntax): also exit 2
        return int(exc.code)


def test_the_declaration_covers_the_known_limits():
    names = {o.dotted for o in LIMITED}
    assert {"compose.blend", "compose.upscale", "output.crf", "output.preset", "restore.precision"} <= names
    assert {"restore.device", "faces.detector", "restore.device_path", "restore.batch_size", "duration"} <= names
    assert len(LIMITED) >= 25


@pytest.mark.parametrize(
    "option", [o for o in options() if not isinstance(o.default, type(None))], ids=lambda o: o.dotted
)
def test_every_default_passes_its_own_limits(option):
    config = load_config(None, {option.dotted: option.default})
    assert _value_at(config, option.dotted) == option.default


@pytest.mark.parametrize("option", LIMITED, ids=lambda o: o.dotted)
def test_limit_through_preset_file(option, tmp_path):
    bad, good = _bad_and_good(option)
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump(_nested(option.dotted, bad)))
    with pytest.raises(ConfigError, match=rf"mine\.yaml: '{option.dotted}'"):
        load_config(str(path))
    path.write_text(yaml.safe_dump(_nested(option.dotted, good)))
    assert _value_at(load_config(str(path)), option.dotted) == good


@pytest.mark.parametrize("option", LIMITED, ids=lambda o: o.dotted)
def test_limit_through_command_line(option, tmp_path, capsys):
    bad, good = _bad_and_good(option)
    missing = tmp_path / "never-read.mp4"  # the options are refused before the input is opened
    assert _main(["restore", str(missing), "--model", "identity", *_cli_args(option, bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert (option.flag.name if option.flag else option.dotted) in err
    args = cli.build_parser().parse_args(["restore", str(missing), *_cli_args(option, good)])
    assert _value_at(cli.config_from_args(args), option.dotted) == good


@pytest.mark.parametrize("option", LIMITED, ids=lambda o: o.dotted)
def test_limit_through_manifest_row(option, tmp_path):
    bad, good = _bad_and_good(option)
    (tmp_path / "a.mp4").write_bytes(b"not probed while the manifest is read")
    manifest = tmp_path / "jobs.csv"
    column = option.flag.dest if option.flag and not option.flag.invert else option.dotted
    manifest.write_text(f"input,{column}\na.mp4,{bad}\n")
    expected = "cannot be set per file" if option.dotted in per_job_fields() else rf"'{option.dotted}'"
    with pytest.raises(InputError, match=rf"jobs\.csv:2: .*{expected}"):
        discover([manifest], tmp_path / "out")
    if option.dotted in per_job_fields():
        return
    manifest.write_text(f"input,{column}\na.mp4,{good}\n")
    (item,) = discover([manifest], tmp_path / "out")
    assert _value_at(load_config(None, item.overrides), option.dotted) == good


def test_manifest_row_with_blend_3_is_refused(tmp_path):
    (tmp_path / "a.mp4").write_bytes(b"x")
    for text in ('{"input": "a.mp4", "blend": 3}\n', '{"input": "a.mp4", "compose.blend": 3}\n'):
        (tmp_path / "jobs.jsonl").write_text(text)
        with pytest.raises(InputError, match=r"jobs\.jsonl:1: 'compose\.blend' \(--blend\) must be between 0 and 1"):
            discover([tmp_path / "jobs.jsonl"], tmp_path / "out")


def test_no_smooth_in_a_manifest_is_inverted_and_checked(tmp_path):
    (tmp_path / "a.mp4").write_bytes(b"x")
    (tmp_path / "jobs.csv").write_text("input,no_smooth\na.mp4,yes\n")
    (item,) = discover([tmp_path / "jobs.csv"], tmp_path / "out")
    assert item.overrides == {"faces.smooth": False}
    (tmp_path / "jobs.csv").write_text("input,no_smooth\na.mp4,maybe\n")
    with pytest.raises(InputError, match="no_smooth"):
        discover([tmp_path / "jobs.csv"], tmp_path / "out")


@pytest.mark.parametrize(
    ("flag", "value", "words"),
    [
        ("--workers", "0", "1 or more"),
        ("--segment-seconds", "-1", "0 or more"),
        ("--overlap-frames", "-2", "0 or more"),
        ("--engine", "nosuch", "invalid choice"),
    ],
)
def test_batch_job_limits(flag, value, words, tmp_path, capsys):
    (tmp_path / "a.mp4").write_bytes(b"x")
    assert _main(["batch", str(tmp_path / "a.mp4"), "-o", str(tmp_path / "out"), flag, value]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and flag in err and words in err
    assert not (tmp_path / "out").exists()


def test_batch_job_settings_are_declared():
    names = {o.dotted for o in options(JobSettings)}
    assert names == {"engine", "address", "workers", "segment_seconds", "overlap_frames"}


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--preset", "nosuch"], "argument --preset: invalid choice: 'nosuch'"),
        (["--config", "nosuch"], "unknown preset 'nosuch'; choose one of: archival-batch, default"),
        (["--set", "nosuch"], "--set takes NAME=VALUE"),
        (["--set", "faces.nosuch=1"], "unknown setting 'faces.nosuch'"),
    ],
)
def test_bad_preset_and_config_are_one_line(args, words, tmp_path, capsys):
    for command in ("restore", "preview"):
        assert _main([command, str(tmp_path / "x.mp4"), *args]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "Traceback" not in err and words in err


def test_archival_batch_makes_no_explicit_preset_choice():
    config = load_config("archival-batch")
    assert config.output.preset is None  # an explicit preset is refused for ProRes/DNx/FFV1 outputs
    assert config.output.x26x_preset == "medium"  # used only where the encoder turns out to be x264/x265


def test_archival_batch_takes_a_prores_source(tmp_path):
    """The ProRes source keeps its codec under --config archival-batch (the preset did refuse it)."""
    import shutil
    import subprocess

    from gpen_video.io.encoding import choose_encoding
    from gpen_video.io.probe import probe

    ffmpeg = shutil.which("ffmpeg")
    assert ffmpeg, "the ffmpeg command-line tool builds this test's input"
    src = tmp_path / "scan.mov"
    subprocess.run(
        [ffmpeg, "-v", "error", "-f", "lavfi", "-i", "testsrc2=s=64x64:r=24:d=0.25", "-c:v", "prores_ks",
         "-profile:v", "3", str(src)],
        check=True,
    )  # fmt: skip
    video = probe(src).video
    settings = choose_encoding(video, load_config("archival-batch").output)
    assert settings.codec == "prores_ks" and "preset" not in settings.options
    preview = load_config("preview", {"output.video_codec": "prores_ks"}).output
    assert choose_encoding(video, preview).codec == "prores_ks"
    with pytest.raises(ConfigError, match="--preset applies to x264"):  # an explicit --preset still is refused
        choose_encoding(video, load_config("archival-batch", {"output.preset": "medium"}).output)


def test_neutral_options_are_out_of_the_settings_hash():
    a, b = load_config(None), load_config(None, {"compose.upscale": 2})
    assert a.hashed_dict() != b.hashed_dict()  # issue 15: the background upscale now changes the output
    assert a.hashed_dict() != load_config(None, {"compose.blend": 0.5}).hashed_dict()
    assert "overwrite" not in a.hashed_dict()["output"] and "threads" not in a.hashed_dict()["reader"]


def test_flag_choices_come_from_the_declaration():
    restore = cli.build_parser()._subparsers._group_actions[0].choices["restore"]  # argparse has no public API
    by_flag = {a.option_strings[0]: a for a in restore._actions if a.option_strings}
    assert tuple(by_flag["--precision"].choices) == typing.get_args(Precision)
    assert tuple(by_flag["--encoder-backend"].choices) == ("pyav", "ffmpeg")
    assert "ultrafast" in by_flag["--preset"].choices and "0 or more" in by_flag["--batch-size"].help
    assert "between 0 and 1" in by_flag["--blend"].help and "mtcnn" in by_flag["--detector"].help
    preview = cli.build_parser()._subparsers._group_actions[0].choices["preview"]
    compare = next(a for a in preview._actions if "--compare" in a.option_strings)
    assert tuple(compare.choices) == COMPARE_MODES == ("side", "split", "none")


def test_no_module_imports_the_cli():
    """cli -> jobs.batch_cli -> jobs.inputs must not lead back to cli (the old import circle)."""
    offenders = []
    for path in (ROOT / "gpen_video").rglob("*.py"):
        if path.name in ("cli.py", "__main__.py"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            if "gpen_video.cli" in names:
                offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []
