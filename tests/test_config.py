"""One typed config: presets, YAML files, CLI overrides, clear errors."""

from __future__ import annotations

import pytest

from gpen_video.cli import parse_seconds
from gpen_video.config import Config, load_config, preset_names
from gpen_video.errors import ConfigError


def test_presets_exist_and_load():
    assert {"default", "film-reel", "archival-batch", "preview"} <= set(preset_names())
    for name in preset_names():
        assert isinstance(load_config(name), Config)
    assert load_config("preview").output.video_codec == "libx264"
    assert load_config("film-reel").reader.strict is True


def test_overrides_are_typed():
    config = load_config("default", {"output.crf": "18", "faces.smooth": "false", "compose.blend": "0.5"})
    assert config.output.crf == 18 and config.faces.smooth is False and config.compose.blend == 0.5
    assert load_config("default", {"output.crf": "none"}).output.crf is None


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"output.crf": "high"}, "output.crf"),
        ({"output.nope": 1}, "unknown setting 'output.nope'"),
        ({"faces.smooth": "maybe"}, "faces.smooth"),
        ({"output": 3}, "is a section"),
        ({"restore.batch_size": 2.5}, "restore.batch_size"),
    ],
)
def test_bad_overrides(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config("default", overrides)


def test_yaml_file(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("output:\n  crf: 12\nfaces:\n  smooth_window: 5\n")
    config = load_config(str(path))
    assert config.output.crf == 12 and config.faces.smooth_window == 5
    path.write_text("output: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(str(path))
    with pytest.raises(ConfigError, match="unknown preset"):
        load_config("nonexistent")


@pytest.mark.parametrize(
    ("text", "seconds"), [("12", 12.0), ("12.5", 12.5), ("01:30", 90.0), ("00:12:03", 723.0), ("1:00:00.250", 3600.25)]
)
def test_parse_seconds(text, seconds):
    assert parse_seconds(text) == pytest.approx(seconds)
