"""The artifact contract: atomic builds, reuse, --force, refusals naming the right stage."""

import json
import os
from dataclasses import dataclass

import pytest

from ssl_toolkit.core.artifacts import (
    MANIFEST,
    ArtifactError,
    build_artifact,
    read_manifest,
    safe_join,
)
from ssl_toolkit.core.config import ConfigError, load_toml, resolve, to_dict


def _build(out, cfg, **kw):
    calls = []
    with build_artifact(out, "features", cfg, **kw) as b:
        if not b.reused:
            calls.append(1)
            (b.dir / "data.txt").write_text(str(cfg))
    return b, calls


def test_build_writes_manifest_and_reuses(tmp_path):
    out = tmp_path / "feat"
    b, calls = _build(out, {"a": 1})
    assert calls == [1]
    man = json.loads((out / "manifest.json").read_text())
    assert man["kind"] == "features" and man["schema"] == 1 and man["config"] == {"a": 1}
    assert (out / "data.txt").read_text() == "{'a': 1}"
    # Same config: reused, nothing rebuilt.
    b2, calls2 = _build(out, {"a": 1})
    assert b2.reused and calls2 == []
    assert b2.manifest.fingerprint == b.manifest.fingerprint


def test_other_config_refused_without_force_and_rebuilt_with_it(tmp_path):
    out = tmp_path / "feat"
    _build(out, {"a": 1})
    with pytest.raises(ArtifactError, match="--force"):
        _build(out, {"a": 2})
    assert (out / "data.txt").read_text() == "{'a': 1}"  # the user's result is untouched
    _, calls = _build(out, {"a": 2}, force=True)
    assert calls == [1]
    assert (out / "data.txt").read_text() == "{'a': 2}"
    assert read_manifest(out, "features").config == {"a": 2}
    assert [p.name for p in tmp_path.iterdir()] == ["feat"]  # no leftovers


def test_input_fingerprint_change_invalidates(tmp_path):
    _build(tmp_path / "in1", {"x": 1})
    _build(tmp_path / "in2", {"x": 2})
    in1 = read_manifest(tmp_path / "in1", "features")
    in2 = read_manifest(tmp_path / "in2", "features")
    with build_artifact(tmp_path / "run", "run", {"e": 1}, [in1]):
        pass
    with pytest.raises(ArtifactError, match="another config or inputs"):
        with build_artifact(tmp_path / "run", "run", {"e": 1}, [in2]):
            pass


def test_interrupted_stage_leaves_nothing_complete_looking(tmp_path):
    out = tmp_path / "feat"
    with pytest.raises(RuntimeError, match="midway"):
        with build_artifact(out, "features", {"a": 1}) as b:
            (b.dir / "half.npy").write_bytes(b"\0" * 100)
            raise RuntimeError("killed midway")
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ArtifactError, match="ssl prep features"):
        read_manifest(out, "features")


def test_interrupted_rebuild_keeps_previous_result(tmp_path):
    out = tmp_path / "feat"
    _build(out, {"a": 1})
    with pytest.raises(RuntimeError):
        with build_artifact(out, "features", {"a": 2}, force=True) as b:
            (b.dir / "data.txt").write_text("partial")
            raise RuntimeError("boom")
    assert (out / "data.txt").read_text() == "{'a': 1}"
    assert read_manifest(out, "features").config == {"a": 1}


def test_resumable_build_keeps_partial_dir(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(RuntimeError):
        with build_artifact(out, "run", {"e": 1}, resumable=True) as b:
            (b.dir / "checkpoint.json").write_text("{}")
            raise RuntimeError("killed")
    assert not out.exists()
    partial = tmp_path / ".run.partial"
    assert (partial / "checkpoint.json").exists() and not (partial / "manifest.json").exists()
    with build_artifact(out, "run", {"e": 1}, resumable=True) as b:
        assert (b.dir / "checkpoint.json").exists()  # the next run continues from it
    assert (out / "checkpoint.json").exists() and not partial.exists()


@pytest.mark.parametrize(
    "kind, maker",
    [
        ("scenes", "ssl prep synth"),
        ("features", "ssl prep features"),
        ("run", "ssl train"),
        ("eval", "ssl eval"),
        ("export", "ssl export"),
    ],
)
def test_missing_or_wrong_kind_names_the_stage(tmp_path, kind, maker):
    with pytest.raises(ArtifactError, match=f"run `{maker}"):
        read_manifest(tmp_path / "nope", kind)
    _build(tmp_path / "feat", {"a": 1})
    if kind != "features":
        with pytest.raises(ArtifactError, match=f"is a 'features' artifact.*{maker}"):
            read_manifest(tmp_path / "feat", kind)


def test_wrong_schema_is_refused(tmp_path):
    out = tmp_path / "feat"
    _build(out, {"a": 1})
    man = json.loads((out / "manifest.json").read_text())
    man["schema"] = 99
    (out / "manifest.json").write_text(json.dumps(man))
    with pytest.raises(ArtifactError, match="schema 99.*--force"):
        read_manifest(out, "features")


def test_refuses_to_write_into_a_foreign_directory(tmp_path):
    out = tmp_path / "results"
    out.mkdir()
    (out / "precious.txt").write_text("keep me")
    with pytest.raises(ArtifactError, match="not an artifact"):
        _build(out, {"a": 1})
    assert (out / "precious.txt").read_text() == "keep me"


def test_safe_join_refuses_escapes(tmp_path):
    assert safe_join(tmp_path, "a/b.wav") == (tmp_path / "a/b.wav").resolve()
    for bad in ("../x.wav", "/etc/passwd", "a/../../x"):
        with pytest.raises(ArtifactError, match="outside"):
            safe_join(tmp_path, bad)


@dataclass(frozen=True)
class _Cfg:
    lr: float = 1e-3
    epochs: int = 10
    name: str = "x"
    sizes: tuple[int, ...] = (8, 8, 2)

    def validate(self):
        if self.epochs <= 0:
            raise ConfigError(f"--epochs must be positive, got {self.epochs}")


def test_config_layers_and_errors(tmp_path):
    toml = tmp_path / "c.toml"
    toml.write_text("[train]\nepochs = 3\nlr = 1\nsizes = [4, 2]\n[other]\nx = 1\n")
    layer = load_toml(toml, section="train")
    cfg = resolve(_Cfg, {"name": "preset"}, layer, {"epochs": None, "name": "cli"})
    assert cfg == _Cfg(lr=1.0, epochs=3, name="cli", sizes=(4, 2))
    assert to_dict(cfg)["sizes"] == [4, 2]
    with pytest.raises(ConfigError, match="unknown option 'epoch'.*epochs"):
        resolve(_Cfg, {"epoch": 3})
    with pytest.raises(ConfigError, match="'epochs' expects int"):
        resolve(_Cfg, {"epochs": "ten"})
    with pytest.raises(ConfigError, match="--epochs must be positive"):
        resolve(_Cfg, {"epochs": 0})
    with pytest.raises(ConfigError, match="does not exist"):
        load_toml(tmp_path / "missing.toml")
    (tmp_path / "bad.toml").write_text("epochs = = 3")
    with pytest.raises(ConfigError, match="bad.toml is not valid TOML"):
        load_toml(tmp_path / "bad.toml")


def test_write_json_is_strict_json(tmp_path):
    import numpy as np

    from ssl_toolkit.core.artifacts import write_json

    write_json(
        tmp_path / "m.json",
        {
            "a": float("nan"),
            "b": [np.float32(np.inf), np.float64(1.5)],
            "c": np.int64(3),
            "d": True,
            "e": np.array([1.0, np.nan]),
        },
    )
    text = (tmp_path / "m.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text) == {"a": None, "b": [None, 1.5], "c": 3, "d": True, "e": [1.0, None]}


def test_an_output_never_overlaps_an_input_even_with_force(tmp_path):
    _build(tmp_path / "scenes", {"x": 1})
    scenes = read_manifest(tmp_path / "scenes", "features")
    for bad in (tmp_path / "scenes", tmp_path / "scenes" / "sub", tmp_path):
        with pytest.raises(ArtifactError, match="overlaps the input"):
            with build_artifact(bad, "run", {"e": 1}, [scenes], force=True):
                pass
    dataset = tmp_path / "dataset"
    (dataset / "wav_ov1").mkdir(parents=True)
    with pytest.raises(ArtifactError, match="overlaps the input"):
        with build_artifact(dataset, "scenes", {}, force=True, protect=(dataset,)):
            pass
    assert (dataset / "wav_ov1").is_dir() and (tmp_path / "scenes" / MANIFEST).is_file()


def test_one_writer_per_output_and_leftovers_of_dead_writers_removed(tmp_path):
    out = tmp_path / "feat"
    stale = tmp_path / ".feat.tmp-999999-deadbeef"  # a killed writer's temporary directory
    stale.mkdir()
    (stale / "big.npy").write_bytes(b"\0" * 1000)
    with build_artifact(out, "features", {"a": 1}) as b:
        assert not stale.exists()
        with pytest.raises(ArtifactError, match=f"another ssl process \\(PID {os.getpid()}\\)"):
            with build_artifact(out, "features", {"a": 2}, force=True):
                pass
        (b.dir / "x").write_text("kept")
    assert (out / "x").read_text() == "kept"  # the first writer finished untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["feat"]


def test_full_disk_or_read_only_gives_one_line_and_keeps_the_old_output(tmp_path, monkeypatch):
    import errno

    from ssl_toolkit.core import artifacts

    out = tmp_path / "feat"
    _build(out, {"a": 1})

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device", str(out))

    monkeypatch.setattr(artifacts, "write_json", full)
    with pytest.raises(ArtifactError, match="no space left on the device.*earlier artifacts"):
        with build_artifact(out, "features", {"a": 2}, force=True) as b:
            (b.dir / "data.txt").write_text("new")
    assert read_manifest(out, "features").config == {"a": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["feat"]
    monkeypatch.undo()
    (tmp_path / "ro").mkdir()
    (tmp_path / "ro").chmod(0o555)
    try:
        if os.access(tmp_path / "ro", os.W_OK):  # root ignores permissions
            pytest.skip("running as root: permissions are not enforced")
        with pytest.raises(ArtifactError, match="permission denied"):
            with build_artifact(tmp_path / "ro" / "x", "features", {}):
                pass
    finally:
        (tmp_path / "ro").chmod(0o755)


def test_an_existing_file_as_output_is_refused(tmp_path):
    (tmp_path / "f").write_text("mine")
    with pytest.raises(ArtifactError, match="existing file"):
        with build_artifact(tmp_path / "f", "features", {}, force=True):
            pass
    assert (tmp_path / "f").read_text() == "mine"
