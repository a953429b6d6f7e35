"""The whole course headless on the sim backend; prints the time per notebook and in total.

Target: under 60 s on 2 cores.   python benchmarks/course.py [--only NN ...]
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
    ap.add_argument("--only", action="append")
    ap.add_argument("--html", action="store_true", help="also time the HTML export")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="k8slab-course-") as out:
        start = time.monotonic()
        runs = run_course(backend="sim", out=Path(out), only=args.only, html=args.html,
                          report=lambda r: print(r.line(), flush=True))
        total = time.monotonic() - start
    failed = [r.name for r in runs if not r.ok]
    print(f"course on sim: {len(runs)} notebooks in {total:.1f} s wall "
          f"({os.cpu_count()} CPUs; target < 60 s){'; FAILED: ' + ', '.join(failed) if failed else ''}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
