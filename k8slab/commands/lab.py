"""``k8slab up``, ``k8slab down [--force] NAME`` and ``k8slab status``: the lab's lifecycle.

``k8slab lab`` itself (no subcommand) belongs to the course helper, which opens JupyterLab; these
verbs are registered as separate top-level subcommands from this module.
"""
from __future__ import annotations

import argparse
import importlib

from ..errors import K8sLabError

BACKEND_CHOICES = ("auto", "kind", "netns", "sim")


def _common(p: argparse.ArgumentParser, name_positional: bool = False) -> None:
    p.add_argument("--backend", "-b", choices=BACKEND_CHOICES, default="auto",
                   help="where the cluster runs (default: auto = kind if Docker works, else sim; "
                        "K8SLAB_BACKEND overrides auto)")
    if name_positional:
        p.add_argument("name", nargs="?", default=None, help="the lab's name (default k8slab)")
    p.add_argument("--name", "-n", dest="name_opt", default=None, help="the lab's name (default k8slab)")


def _name(args) -> str:
    return getattr(args, "name_opt", None) or getattr(args, "name", None) or "k8slab"


def register(subparsers) -> None:
    up = subparsers.add_parser("up", help="create (or reuse) the course cluster, deploy the app and "
                                          "the ingress controller")
    _common(up)
    up.add_argument("--bare", action="store_true", help="only create the cluster; deploy nothing")
    up.add_argument("--replicas", type=int, default=2, help="app replicas (default 2)")
    up.set_defaults(func=cmd_up)

    down = subparsers.add_parser("down", help="remove the course cluster (--force: also leftovers of a "
                                              "crashed run: namespaces, kind containers)")
    _common(down, name_positional=True)
    down.add_argument("--force", action="store_true",
                      help="remove whatever a lab of that name left behind, even without a Lab object")
    down.set_defaults(func=cmd_down)

    status = subparsers.add_parser("status", help="which backend would run, and whether the lab is up")
    _common(status)
    status.set_defaults(func=cmd_status)


def _lab(args, quiet: bool = False):
    from ..lab import Lab
    return Lab(backend=args.backend, name=_name(args), quiet=quiet)


def cmd_up(args) -> int:
    lab = _lab(args)
    lab.up()
    if not args.bare:
        lab.deploy_app(replicas=args.replicas)
        lab.install_ingress_controller()
    print(repr(lab))
    if not lab.live:
        print("note: the sim backend keeps its cluster in memory only; it is gone when this command "
              "ends. Use it from Python (Lab(backend='sim')) or a notebook.")
    return 0


def force_cleanup(name: str, backend: str = "auto") -> list[str]:
    """Remove leftovers of lab ``name`` on every backend that can have some; return what was removed."""
    removed: list[str] = []
    errors: list[str] = []
    if backend in ("auto", "netns"):
        try:
            netns = importlib.import_module("k8slab.backends.netns")
        except ModuleNotFoundError:
            netns = None
        cleanup = getattr(netns, "force_cleanup", None) if netns else None
        if cleanup is not None:
            try:
                result = cleanup(name)
                removed.extend(f"netns: {r}" for r in (result or []))
            except K8sLabError as exc:
                errors.append(f"netns: {exc}")
    if backend in ("auto", "kind"):
        try:
            kind = importlib.import_module("k8slab.backends.kind")
            cls = getattr(kind, "KindBackend")
            ok, why = cls.available()
        except (ModuleNotFoundError, AttributeError):
            ok, why, cls = False, "kind backend not installed", None
        except K8sLabError as exc:
            ok, why, cls = False, str(exc), None
        if ok and cls is not None:
            try:
                from ..lab import find_root
                from ..progress import Progress
                be = cls(name, root=find_root(), progress=Progress(quiet=True))
                if be.is_up():
                    be.down()
                    removed.append(f"kind: cluster {name}")
            except K8sLabError as exc:
                errors.append(f"kind: {exc}")
    if errors:
        raise K8sLabError("; ".join(errors) + (f" (removed so far: {', '.join(removed)})" if removed else ""))
    return removed


def cmd_down(args) -> int:
    name = _name(args)
    if args.force:
        removed = force_cleanup(name, args.backend)
        if removed:
            for r in removed:
                print(f"removed {r}")
        else:
            print(f"nothing of lab {name!r} found to remove")
        return 0
    lab = _lab(args)
    lab.down()
    print(f"lab {name!r} on {lab.backend_name} is down")
    return 0


def cmd_status(args) -> int:
    from ..lab import choose_backend
    chosen, why = choose_backend(args.backend)
    print(f"backend: {chosen}")
    print(f"why: {why}")
    try:
        lab = _lab(args, quiet=True)
    except K8sLabError as exc:
        print(f"state: unavailable ({exc})")
        return 1
    print(repr(lab))
    return 0
