"""The netfilter core: read a node's rules, look at them as DataFrames, trace packets through them.

Two readers, side by side: :mod:`.iptables` (``iptables-save`` text) and :mod:`.nft` (``nft list
ruleset`` text, ``nft -j`` JSON, ``nft -f`` transactions). Both feed :mod:`.tracer`'s shared types
(``Packet``, ``NodeContext``, ``Trace``, ``Outcome``), so paths, plots and exercises read either.
The old module paths (``k8slab.netfilter.parser``, ``.rules``, ``.views``, ``.owners``, ``.names``)
are the iptables modules under their former names.

``parse(text)`` / ``parse_file(path)`` give an iptables :class:`Ruleset`; ``ruleset.rules`` and
``ruleset.chains`` are its pandas views. ``trace``, ``Packet``, ``NodeContext``, ``Trace`` and
``Outcome`` come from :mod:`k8slab.netfilter.tracer` and are imported on first use.
"""
from __future__ import annotations

from .iptables.parser import LazyChain, parse, parse_file
from .iptables.rules import Addr, Chain, Match, Option, Rule, Ruleset

__all__ = ["parse", "parse_file", "Ruleset", "Rule", "Chain", "Match", "Option", "Addr", "LazyChain",
           "trace", "Packet", "NodeContext", "Trace", "Outcome"]

_TRACER_NAMES = ("trace", "Packet", "NodeContext", "Trace", "Outcome", "TraceHop")


def __getattr__(name: str):
    # The tracer is optional at import time: importing k8slab.netfilter must work without it.
    if name in _TRACER_NAMES:
        from . import tracer
        return getattr(tracer, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
