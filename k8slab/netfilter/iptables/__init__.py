"""iptables: what ``iptables-save`` prints (and ``iptables-restore`` reads), as a model and DataFrames.

The sibling of :mod:`k8slab.netfilter.nft` (nftables' three forms). Both readers end in the same
places: pandas views with the same owner column, and the tracer's shared types
(:mod:`k8slab.netfilter.tracer`: ``Packet``, ``NodeContext``, ``Trace``, ``Outcome``).

Modules: :mod:`.parser` (text to :class:`Ruleset`, checked line by line; its parts: :mod:`.syntax`
tokens and one rule's grammar, :mod:`.scan` facts by piece of text, :mod:`.rows` the numpy rows and
:class:`LazyChain`, :mod:`.restore` restore commands and excerpts), :mod:`.rules` (the model),
:mod:`.views` (rules and chains frames), :mod:`.owners` (which program wrote a chain), :mod:`.names`
(kube-proxy's chain names). The iptables walk itself is :mod:`k8slab.netfilter.tracer`'s ``walk``,
``matches`` and ``index``.
"""
from .parser import LazyChain, parse, parse_file
from .rules import Addr, Chain, Match, Option, Rule, Ruleset

__all__ = ["parse", "parse_file", "Ruleset", "Rule", "Chain", "Match", "Option", "Addr", "LazyChain"]
