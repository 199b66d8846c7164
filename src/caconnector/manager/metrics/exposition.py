"""The Prometheus text exposition format, version 0.0.4, written by hand: a few families rendered at
scrape time do not need prometheus_client's registry, its global state or its multiprocess files.

Format: https://prometheus.io/docs/instrumenting/exposition_formats/ (`# HELP`, `# TYPE`, then one
`name{label="value"} number` line per sample). Label values escape backslash, double quote and newline;
HELP texts backslash and newline.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Literal

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

MetricType = Literal["counter", "gauge", "histogram"]

_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*\Z")
_LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*\Z")


def escape_label_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def format_value(value: float) -> str:
    """Go's spelling of a float, which every parser reads: integers without a fraction (counts stay
    exact past 2**53 as Python ints), +Inf, -Inf, NaN."""
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(value)


@dataclass(frozen=True)
class Sample:
    suffix: str  # "" for counters and gauges; "_bucket", "_sum", "_count" for a histogram's lines
    labels: tuple[tuple[str, str], ...]
    value: float


@dataclass
class Family:
    """One metric: its name, type, help and samples. A counter's name ends in `_total`, as the format's
    conventions (and OpenMetrics parsers) expect."""

    name: str
    type: MetricType
    help: str
    samples: list[Sample] = field(default_factory=list)

    def __post_init__(self) -> None:
        # Names are ours, fixed in code: a bad one is a programming error, caught by any test that scrapes.
        if not _NAME.match(self.name):
            raise ValueError(f"not a Prometheus metric name: {self.name!r}")

    def add(self, value: float, suffix: str = "", **labels: str) -> None:
        for name in labels:
            if not _LABEL.match(name):
                raise ValueError(f"not a Prometheus label name: {name!r}")
        self.samples.append(Sample(suffix, tuple(labels.items()), value))


def _line(name: str, sample: Sample) -> str:
    if not sample.labels:
        return f"{name}{sample.suffix} {format_value(sample.value)}\n"
    labels = ",".join(f'{key}="{escape_label_value(value)}"' for key, value in sample.labels)
    return f"{name}{sample.suffix}{{{labels}}} {format_value(sample.value)}\n"


def render(families: list[Family]) -> bytes:
    lines: list[str] = []
    for family in families:
        lines.append(f"# HELP {family.name} {escape_help(family.help)}\n")
        lines.append(f"# TYPE {family.name} {family.type}\n")
        lines.extend(_line(family.name, sample) for sample in family.samples)
    return "".join(lines).encode("utf-8")
