"""One reader for the rules files the CLI takes: ``iptables-save`` text, or nft's three forms
(``nft list ruleset`` text, ``nft -j list ruleset`` JSON, an ``nft -f`` transaction as kube-proxy
sends it), told apart by their first meaningful line."""
from __future__ import annotations

import re
import sys
from pathlib import Path

_NFT_WORD = re.compile(r"(table|add|create|insert|replace|flush|delete|destroy|define|include)\s")


def is_nft(text: str) -> bool:
    """True for nft text/JSON/transaction, False for iptables-save/restore text."""
    s = text.lstrip()
    if s.startswith("{") or (s.startswith("[") and not re.match(r"\[\d+:\d+\]", s)):
        return True
    for line in text.splitlines():
        t = line.strip()
        if not t or t.startswith("#"):
            continue
        return bool(_NFT_WORD.match(t))
    return False


def read_rules(path: str | Path, *, strict: bool = False):
    """``(form, ruleset)``: form ``"iptables"`` (a :class:`k8slab.netfilter.Ruleset`) or the nft form
    (``"ruleset"``, ``"json"``, ``"transaction"``; an :class:`NftRuleset`). ``"-"`` reads stdin."""
    from ..iptables.parser import parse, parse_file
    from .listing import loadable
    from .parser import detect_form, parse_nft
    if str(path) == "-":
        text, source = sys.stdin.read(), "<stdin>"
    else:
        try:
            text, source = Path(path).read_text(encoding="utf-8"), str(path)
        except (OSError, UnicodeDecodeError):
            return "iptables", parse_file(path, strict=strict)     # its error names the fix
    if not is_nft(text):
        return "iptables", parse(text, source, strict=strict)
    form = detect_form(text)
    rs = parse_nft(loadable(text) if form == "transaction" else text, form)
    rs.source = source
    return form, rs
