"""The parse-time scan: pieces of rule text to their view facts, without building rule objects.

Owns the fast paths' facts: :func:`_scan_head` (an IP header's ``header_info``), :func:`_scan_matches`
and :func:`_scan_piece` (the ``-m ...`` pieces' ``match_info``), :func:`_scan_target` (the text after
``-j``/``-g``), each cached by its text for one parse, and :data:`_KP_RULE_RE`, the one regex that
checks and takes apart the five rule shapes kube-proxy writes per service and endpoint. A piece
these do not accept (False) sends its line to the token-by-token path of :mod:`.syntax`, which
names what is wrong. :func:`k8slab.netfilter.iptables.parser.parse` uses them in its line loop.
"""
from __future__ import annotations

import re

from .syntax import _NAT_TO_OPTS, _Interner, _head_pairs, _is_flag, _piece_match, _target_value
from .views import _NAT_TO, InfoTable, canonical_cidr, match_info, service_port_of


def _scan_head(head: str):
    """The IP header's header_info (what the frames show: CIDRs made canonical, "!" kept), or False."""
    pairs = _head_pairs(head)
    if pairs is False:
        return False
    fields = [None, None, None, None, None]
    for k, v, neg in pairs:
        if k < 2 and "/" not in v:
            v = canonical_cidr(v)
        fields[k] = "!" + v if neg else v
    return tuple(fields)


def _scan_matches(pieces: list[str], cache: _Interner):
    """The ``-m ...`` pieces of one line (``pieces[0]`` unused): their combined match_info, or False."""
    tp = cache.t_pieces
    if len(pieces) == 2:
        piece = pieces[1]
        info = tp.get(piece)
        if info is None:
            info = tp[piece] = _scan_piece(piece, cache)
        return info
    infos = []
    for k in range(1, len(pieces)):
        piece = pieces[k]
        info = tp.get(piece)
        if info is None:
            info = tp[piece] = _scan_piece(piece, cache)
        if info is False:
            return False
        infos.append(info)
    if len(infos) == 2:
        a, b = infos
        first = a if a[1] is not None else b
        return (a[0] + "," + b[0], first[1],
                b[2] if b[2] is not None else a[2], b[3] if b[3] is not None else a[3],
                b[4] if b[4] is not None else a[4], first[5])
    modules = ",".join([i[0] for i in infos])
    comment = sport = dport = prob = spn = None
    for i in infos:
        if comment is None:
            comment, spn = i[1], i[5]
        if i[2] is not None:
            sport = i[2]
        if i[3] is not None:
            dport = i[3]
        if i[4] is not None:
            prob = i[4]
    return (modules, comment, sport, dport, prob, spn)


def _scan_piece(piece: str, cache: _Interner):
    """One ``-m MODULE ...`` piece (without the ``-m ``): its match_info, or False."""
    if piece[:18] == "comment --comment ":
        v = piece[18:]
        if v[:1] == '"':
            if len(v) > 1 and v[-1] == '"' and v.count('"') == 2:
                text = v[1:-1]
                return ("comment", text, None, None, None, service_port_of(text))
        else:
            words = v.split()
            if '"' not in v and words and not any(w == "!" or _is_flag(w) for w in words):
                text = " ".join(words)
                return ("comment", text, None, None, None, service_port_of(text))
    m = cache.pieces.get(piece)
    if m is None:
        m = cache.pieces[piece] = _piece_match(piece, cache)
    if m is False:
        return False
    return match_info((m,))


def _code(vals: InfoTable, info: tuple) -> int:
    return vals.add(info)


def _scan_target(tpiece: str, goto: bool, cache: _Interner):
    """The text after ``-j``/``-g``: ``(target, target_info, has_options)``, or False."""
    toks = tpiece.split()
    if len(toks) == 3 and toks[1] in _NAT_TO_OPTS and '"' not in tpiece:
        v = toks[2]
        target, opt = toks[0], toks[1]
        if v != "!" and not _is_flag(v) and target[0] not in "-![":
            # "DNAT --to-destination 10.244.0.5:8080", the most common target with options
            # (the same facts as target_info() gives, without building an Option)
            if _NAT_TO.get(target) == opt:
                return (target, _code(cache.t_vals, (v, v if target == "DNAT" else None)), True)
            return (target, _code(cache.t_vals, (f"{opt} {v}", None)), True)
    key = (tpiece, goto)
    tv = cache.tpieces.get(key)
    if tv is None:
        tv = cache.tpieces[key] = _target_value(tpiece, goto, cache)
    if tv is False:
        return False
    return (tv[0], _code(cache.t_vals, tv[2]), bool(tv[1]))


# The kube-proxy fast path: one anchored regex that accepts (and so fully validates) only the
# shapes kube-proxy writes tens of thousands of times, and gives their view facts in one match():
#   -A KUBE-SERVICES -d VIP/32 -p tcp -m comment --comment "ns/svc:port cluster IP" -m tcp --dport N
#      -j KUBE-SVC-X
#   -A KUBE-SVC-X ! -s POD_CIDR -d VIP/32 -p tcp -m comment --comment "..." -m tcp --dport N
#      -j KUBE-MARK-MASQ
#   -A KUBE-SVC-X -m comment --comment "..." -m statistic --mode random --probability P -j KUBE-SEP-Y
#   -A KUBE-SEP-Y -s EP/32 -m comment --comment "..." -j KUBE-MARK-MASQ
#   -A KUBE-SEP-Y -p tcp -m comment --comment "..." -m tcp -j DNAT --to-destination EP:PORT
# Anything else (another order or option, quotes or backslashes inside, doubled or trailing
# blanks) does not match and takes the general path, which gives the same facts for these lines.
_KP_RULE_RE = re.compile(
    r'-A ([A-Za-z0-9_][-A-Za-z0-9_.]*)'                 # 1 chain
    r'((?:( !)? -s ([0-9a-fA-F.:]+/[0-9]+))?'           # 2 header text, 3 " !", 4 -s CIDR
    r'(?: -d ([0-9a-fA-F.:]+/[0-9]+))?'                 # 5 -d CIDR
    r'(?: -p (tcp|udp|sctp))?)'                         # 6 -p
    r' -m comment --comment "('                         # 7 comment (no quote, no backslash) ...
    r'([a-z0-9][-a-z0-9.]*/[a-z0-9][-a-z0-9.]*(?::[-a-z0-9]*)?)(?: [^"\\]*)?'  # 8 ... that starts
    r'|[^"\\]*)"'                                       # with a service port (views._SPN_RE), or not
    r'(?: -m (tcp|udp|sctp)(?: --dport ([0-9]+))?)?'    # 9 port module, 10 --dport
    r'(?: -m statistic --mode random --probability ([0-9.]+))?'                # 11 probability
    r' -j (?:DNAT --to-destination ([0-9a-fA-F.:\[\]]+)'  # 12 DNAT destination
    r'|([A-Za-z0-9_][-A-Za-z0-9_]*))\Z')                 # 13 or a target without options
# match_info's "modules" text by (port module, has statistic)
_KP_MODULES = {(None, False): "comment", (None, True): "comment,statistic"}
for _m in ("tcp", "udp", "sctp"):
    _KP_MODULES[(_m, False)] = "comment," + _m
    _KP_MODULES[(_m, True)] = "comment," + _m + ",statistic"

