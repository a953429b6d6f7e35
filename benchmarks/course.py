"""The whole course headless; prints the time per notebook and in total.

Targets on 2 cores: sim under 60 s, netns (root) under 120 s.
    python benchmarks/course.py [--backend sim|netns] [--only NN ...]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from k8slab.course import run_course  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backend", choices=("sim", "netns", "kind"), default="sim")
    ap.add_argument("--only", action="append")
    ap.add_argument("--html", action="store_true", help="also time the HTML export")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="k8slab-course-") as out:
        start = time.monotonic()
        runs = run_course(backend=args.backend, out=Path(out), only=args.only, html=args.html,
                          report=lambda r: print(r.line(), flush=True))
        total = time.monotonic() - start
    failed = [r.name for r in runs if not r.ok]
    target = {"sim": "60 s", "netns": "120 s"}.get(args.backend, "none set")
    print(f"course on {args.backend}: {len(runs)} notebooks in {total:.1f} s wall "
          f"({os.cpu_count()} CPUs; target < {target}){'; FAILED: ' + ', '.join(failed) if failed else ''}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
