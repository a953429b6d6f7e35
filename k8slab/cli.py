"""``k8slab`` command line. Each subcommand lives in ``k8slab/commands/<name>.py`` and exposes
``register(subparsers)``, which adds its parser and sets ``func(args) -> int``.

Every :class:`k8slab.errors.K8sLabError` becomes one line on stderr and exit status 2.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from .errors import K8sLabError

COMMANDS = ("rules", "trace", "render", "doctor", "lab", "course", "selftest")


class _Parser(argparse.ArgumentParser):
    """Usage mistakes are one line on stderr and exit status 2, like every other error."""

    def error(self, message: str):
        self.exit(2, f"k8slab: error: {self.prog}: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="k8slab",
        description="How traffic reaches a Pod: from kubectl port-forward to Ingress, down to iptables.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"k8slab.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"k8slab.commands.{name}":
                raise
            continue
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except K8sLabError as exc:
        print(f"k8slab: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        return 0
    except KeyboardInterrupt:
        print("k8slab: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
