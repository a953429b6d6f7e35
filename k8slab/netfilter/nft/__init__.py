"""nftables: kube-proxy's nftables mode and whatever else ``nft list ruleset`` shows.

The iptables reader lives beside this package (``k8slab.netfilter.parser``/``views``); this one reads
nft's three forms into one model (:mod:`.model`): ``nft list ruleset`` text, ``nft -j list ruleset``
JSON, and ``nft -f`` transactions (``add table/chain/set/map/element/rule ...``, as kube-proxy sends).

Modules: :mod:`.model` (tables, chains, rules, sets/maps, elements), :mod:`.parser` (the three forms),
:mod:`.listing` (``nft list ruleset`` text back out, and the words nft normalises), :mod:`.views`
(pandas frames and owners), :mod:`.names` (kube-proxy's object names), :mod:`.trace` (one new
connection through every base chain of each hook, with the iptables tracer's Trace/Outcome/TraceHop).
"""
from .listing import list_ruleset, loadable
from .model import Chain, Element, NftRuleset, Rule, Set, Table
from .parser import detect_form, parse_nft
from .trace import trace_nft

__all__ = ["NftRuleset", "Table", "Chain", "Rule", "Set", "Element", "parse_nft", "detect_form",
           "list_ruleset", "loadable", "trace_nft"]
