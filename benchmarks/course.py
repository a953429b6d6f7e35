"""The whole course headless; prints the time per notebook and in total.

Targets on 2 cores: sim under 60 s, netns (root) under 120 s, kind on the kind emulator (root) under
180 s in each mode.
    python benchmarks/course.py [--backend sim|netns|kind|kind-emulated] [--mode linux|desktop] [--only NN ...]

``kind-emulated`` runs the kind backend's own code against tests/kindemu (docker, kind and kubectl
emulated over the netns backend's real data plane), on an emulated learner's machine.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from k8slab.course import run_course  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backend", choices=("sim", "netns", "kind", "kind-emulated"), default="sim")
    ap.add_argument("--mode", choices=("linux", "desktop"), default="linux",
                    help="kind-emulated: Docker Engine on Linux, or Docker Desktop (node IPs unreachable)")
    ap.add_argument("--only", action="append")
    ap.add_argument("--html", action="store_true", help="also time the HTML export")
    args = ap.parse_args()
    if args.backend == "kind-emulated":
        root = Path(__file__).resolve().parent.parent
        argv = [str(root / "tests" / "kindemu" / "run"), "--mode", args.mode, "--", sys.executable, __file__,
                "--backend", "kind", *[f"--only={o}" for o in args.only or []], *(["--html"] if args.html else [])]
        start = time.monotonic()
        rc = subprocess.call(argv)
        print(f"kind emulator ({args.mode}) including its machine set-up and clean-up: "
              f"{time.monotonic() - start:.1f} s wall (target < 180 s)")
        return rc
    with tempfile.TemporaryDirectory(prefix="k8slab-course-") as out:
        start = time.monotonic()
        runs = run_course(backend=args.backend, out=Path(out), only=args.only, html=args.html,
                          report=lambda r: print(r.line(), flush=True))
        total = time.monotonic() - start
    failed = [r.name for r in runs if not r.ok]
    target = {"sim": "60 s", "netns": "120 s", "kind": "180 s on the emulator"}.get(args.backend, "none set")
    print(f"course on {args.backend}: {len(runs)} notebooks in {total:.1f} s wall "
          f"({os.cpu_count()} CPUs; target < {target}){'; FAILED: ' + ', '.join(failed) if failed else ''}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
