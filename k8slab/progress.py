"""Progress for long work (cluster creation, rollouts, namespaces). Deterministic text, no timings,
so that executed notebooks compare equal under nbval."""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Callable, TextIO


@dataclass
class Progress:
    """``step("creating cluster")`` prints one line; ``quiet=True`` collects lines without printing."""
    stream: TextIO | None = None
    quiet: bool = False
    prefix: str = "[k8slab]"
    lines: list[str] = field(default_factory=list)
    listeners: list[Callable[[str], None]] = field(default_factory=list)

    def step(self, text: str) -> None:
        line = f"{self.prefix} {text}"
        self.lines.append(line)
        for listener in self.listeners:
            listener(text)
        if not self.quiet:
            print(line, file=self.stream or sys.stdout, flush=True)


SILENT = Progress(quiet=True)
