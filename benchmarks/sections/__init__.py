"""The benchmarks, by the name `--only` takes, in the order they run and the report lists them."""

from __future__ import annotations

from collections.abc import Callable

from context import Context
from report import Section

from sections.comment import bench_comment
from sections.gate import bench_gate
from sections.hardening import bench_hardening
from sections.memory import bench_memory
from sections.overhead import bench_overhead
from sections.packages import bench_packages
from sections.parallel import bench_parallel
from sections.peers import bench_peers
from sections.profile import bench_profile
from sections.rendering import bench_rendering
from sections.scale import bench_scale
from sections.size import bench_size
from sections.timm_zoo import bench_timm

SECTIONS: dict[str, Callable[[Context], Section]] = {
    "overhead": bench_overhead,
    "gate": bench_gate,
    "peers": bench_peers,
    "scale": bench_scale,
    "size": bench_size,
    "profile": bench_profile,
    "hardening": bench_hardening,
    "rendering": bench_rendering,
    "timm": bench_timm,
    "packages": bench_packages,
    "memory": bench_memory,
    "comment": bench_comment,
    "parallel": bench_parallel,
}
