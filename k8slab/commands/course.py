"""``k8slab course``: run every notebook headless (the README's main command);
``k8slab lab``: open JupyterLab at the first notebook."""
from __future__ import annotations

import os
import sys
from pathlib import Path

BACKENDS = ("auto", "kind", "netns", "sim")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "course", help="execute the course notebooks in order, headless; write notebooks + HTML to build/course")
    p.add_argument("--backend", "-b", choices=BACKENDS, default=None,
                   help="backend for every notebook (default: K8SLAB_BACKEND, else auto: kind where Docker "
                        "and kind work, else sim)")
    p.add_argument("--out", "-o", type=Path, default=None, help="output folder (default build/course)")
    p.add_argument("--only", action="append", metavar="NN",
                   help="run only notebook NN (repeatable, e.g. --only 03 --only 06)")
    p.add_argument("--solutions", action="store_true",
                   help="fill every exercise with its solution from the exercise bank before running")
    p.add_argument("--in-place", action="store_true",
                   help="also store the outputs in notebooks/ (how the committed sim outputs are made)")
    p.add_argument("--no-html", action="store_true", help="skip the HTML pages")
    p.add_argument("--timeout", type=int, default=600, help="seconds per cell (default 600)")
    p.set_defaults(func=cmd_course)

    lab = subparsers.add_parser("lab", help="open JupyterLab at the first notebook")
    lab.add_argument("--backend", "-b", choices=BACKENDS, default=None,
                     help="sets K8SLAB_BACKEND for the notebooks' kernels")
    lab.add_argument("jupyter_args", nargs="*", help="extra arguments for `jupyter lab` (after --)")
    lab.set_defaults(func=cmd_lab)


def _backend(arg: str | None) -> str:
    if arg:
        return arg
    return os.environ.get("K8SLAB_BACKEND") or "auto"


def cmd_course(args) -> int:
    from ..course import find_notebooks, run_course
    from ..lab import choose_backend
    # Resolve "auto" once, here: every notebook's kernel then gets the same backend, and the
    # learner reads which one and why before the first notebook starts.
    backend, why = choose_backend(_backend(args.backend))
    paths = find_notebooks(None, args.only)
    print(f"k8slab course: {len(paths)} notebooks on backend {why}", flush=True)
    runs = run_course(backend=backend, out=args.out, only=args.only, solutions=args.solutions,
                      in_place=args.in_place, html=not args.no_html, timeout=args.timeout,
                      report=lambda r: print(r.line(), flush=True))
    failed = [r for r in runs if not r.ok]
    out = runs[0].executed.parent if runs else args.out
    total = sum(r.seconds for r in runs)
    print(f"{len(runs) - len(failed)}/{len(runs)} ok in {total:.1f} s; executed notebooks and HTML in {out}")
    if failed:
        print("failed: " + ", ".join(r.name for r in failed) + " (open the executed notebook to see the cell)",
              file=sys.stderr)
        return 1
    return 0


def cmd_lab(args) -> int:
    from .. import runner
    from ..course import find_notebooks
    first = find_notebooks()[0]
    env = {}
    if args.backend:
        env["K8SLAB_BACKEND"] = args.backend
    argv = [sys.executable, "-m", "jupyter", "lab", str(first), *args.jupyter_args]
    proc = runner.spawn(argv, env=env, cwd=str(first.parent), stdout=None, stderr=None,
                        hint="install the course's dependencies: pip install -e .")
    try:
        return proc.wait() or 0
    except KeyboardInterrupt:
        runner.stop(proc)
        return 130
