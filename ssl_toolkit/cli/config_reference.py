"""The reference of every TOML key, generated from the config dataclasses.

``python -m ssl_toolkit.cli.config_reference > docs/CONFIG.md`` writes it; a test checks that
the committed file equals what this module generates, so the reference cannot drift from
the code. Each key's text comes from its class's Google-style ``Attributes:`` docstring.
"""

from __future__ import annotations

import dataclasses
import importlib
import re
import typing

__all__ = ["SECTIONS", "reference"]

#: TOML table -> (module, class, the command that reads it).
SECTIONS = {
    "synth": ("ssl_toolkit.data_prep.synth", "SynthConfig", "ssl prep synth --config"),
    "features": ("ssl_toolkit.data_prep.featurize", "FeatureConfig", "ssl prep features --config"),
    "train": ("ssl_toolkit.training.options", "TrainConfig", "ssl train --config"),
    "eval": ("ssl_toolkit.evaluation.evaluate", "EvalConfig", "ssl eval --config"),
    "baseline": ("ssl_toolkit.evaluation.baselines", "BaselineConfig", "ssl baseline --config"),
    "toy": ("ssl_toolkit.experiments.toy.config", "ToyConfig", "ssl toy --config"),
}


def _attribute_docs(cls: type) -> dict[str, str]:
    """``name -> text`` from the ``Attributes:`` section (``a, b: text`` documents both)."""
    doc = cls.__doc__ or ""
    if "Attributes:" not in doc:
        return {}
    body = doc.split("Attributes:", 1)[1]
    out: dict[str, str] = {}
    current: list[str] = []
    for line in body.splitlines():
        m = re.match(r"^\s{4,8}([A-Za-z_][A-Za-z0-9_, ]*):\s*(.*)$", line)
        if m and line.startswith(" " * 8) and not line.startswith(" " * 9):
            current = [n.strip() for n in m.group(1).split(",")]
            for n in current:
                out[n] = m.group(2).strip()
        elif line.strip() and current:
            for n in current:
                out[n] += " " + line.strip()
        elif not line.strip() and out:
            current = []
    return out


def _default(f: dataclasses.Field) -> str:
    if f.default is not dataclasses.MISSING:
        value = f.default
    elif f.default_factory is not dataclasses.MISSING:
        value = f.default_factory()
    else:
        return "(required)"
    if isinstance(value, tuple):
        value = list(value)
    return "(none)" if value is None else f"`{value!r}`".replace("'", '"')


def _type(tp) -> str:
    text = str(tp).replace("typing.", "")
    return getattr(tp, "__name__", text) if not typing.get_args(tp) else text


def reference() -> str:
    """The Markdown reference of every TOML table and key."""
    lines = [
        "# Configuration reference",
        "",
        "Generated from the config dataclasses by `python -m ssl_toolkit.cli.config_reference`;",
        "do not edit by hand. Options resolve as defaults < TOML file < command-line options.",
        "A TOML file may hold the keys at its top level or in the table named below; CLI",
        "options carry the same names with dashes (`n_clips` is `--clips`, as listed in",
        "`--help`).",
    ]
    for table, (module, name, command) in SECTIONS.items():
        cls = getattr(importlib.import_module(module), name)
        hints = typing.get_type_hints(cls)
        docs = _attribute_docs(cls)
        lines += ["", f"## `[{table}]` — `{name}` ({command})", ""]
        lines += ["| key | type | default | meaning |", "| --- | --- | --- | --- |"]
        for f in dataclasses.fields(cls):
            text = docs.get(f.name, "").replace("|", "\\|")
            lines.append(f"| `{f.name}` | `{_type(hints[f.name])}` | {_default(f)} | {text} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(reference(), end="")
