"""``k8slab doctor``: can this machine run the lab? One line per check, with the exact fix.

Exit status 0 when every blocking check passes, 1 when one fails (warnings do not count).
"""
from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

from ..backends.base import Finding
from ..errors import BackendUnavailable
from ..progress import Progress

CLASS_NAMES = {"kind": "KindBackend", "netns": "NetnsBackend", "sim": "SimBackend"}


def register(subparsers) -> None:
    p = subparsers.add_parser("doctor", help="check Docker, kind, kubectl, host ports and memory",
                              description=__doc__.splitlines()[0])
    p.add_argument("--backend", default="kind", choices=sorted(CLASS_NAMES),
                   help="which backend to check (default: kind)")
    p.add_argument("--name", default="k8slab", help="the lab (kind cluster) name (default: k8slab)")
    p.add_argument("--config", type=Path, default=None,
                   help="kind cluster config (default: kind/cluster.yaml in the project)")
    p.set_defaults(func=run)


def project_root(start: Path | None = None) -> Path:
    """The nearest directory upward holding kind/ (the checkout), else the package's parent."""
    here = (start or Path.cwd()).resolve()
    for d in (here, *here.parents):
        if (d / "kind").is_dir():
            return d
    return Path(__file__).resolve().parents[2]


def findings_for(backend: str, name: str, config: Path | None = None, root: Path | None = None) -> list[Finding]:
    root = root or project_root()
    progress = Progress(quiet=True)
    if backend == "kind":
        from ..backends.kind import KindBackend, validate_name
        validate_name(name, "lab name")
        return KindBackend(name, root=root, progress=progress, config=config).doctor()
    try:
        module = importlib.import_module(f"k8slab.backends.{backend}")
        cls = getattr(module, CLASS_NAMES[backend])
    except (ImportError, AttributeError) as exc:
        raise BackendUnavailable(f"the {backend} backend is not part of this installation ({exc})") from exc
    try:
        return cls(name, root=root, progress=progress).doctor()
    except TypeError:
        ok, why = cls.available()
        return [Finding(backend, ok, why)]


def table(findings: list[Finding]) -> str:
    """Fixed-width text: status, check, detail; the fix on its own indented line."""
    width = max([len(f.check) for f in findings] + [5])
    lines = []
    for f in findings:
        mark = "ok" if f.ok else ("FAIL" if f.blocking else "warn")
        lines.append(f"{mark:<5} {f.check:<{width}}  {f.detail}")
        if not f.ok and f.fix:
            lines.append(f"{'':<5} {'':<{width}}  fix: {f.fix}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    found = findings_for(args.backend, args.name, args.config)
    print(table(found))
    failed = [f for f in found if not f.ok and f.blocking]
    if failed:
        print(f"\n{len(failed)} blocking check(s) failed: fix them, then run `k8slab doctor` again.",
              file=sys.stderr)
        return 1
    print(f"\nready: the {args.backend} backend can run here.")
    return 0
