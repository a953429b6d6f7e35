"""nftables: kube-proxy's nftables mode and whatever else ``nft list ruleset`` shows.

The iptables reader lives beside this package (``k8slab.netfilter.parser``/``views``); this one reads
nft's three forms into one model (:mod:`.model`): ``nft list ruleset`` text, ``nft -j list ruleset``
JSON, and ``nft -f`` transactions (``add table/chain/set/map/element/rule ...``, as kube-proxy sends).
"""
