"""``k8slab rules FILE``: parse an iptables-save dump (or nft rules) and print its rules, filtered.

    k8slab rules dump.rules --table nat --owner kube-proxy
    iptables-save | k8slab rules - --chain KUBE-SERVICES --format csv
    nft list ruleset | k8slab rules - --table kube-proxy      # nft text, nft -j JSON or nft -f input
"""
from __future__ import annotations

import argparse
import sys

from ..errors import K8sLabError

FORMATS = ("table", "csv", "json")
#: the columns the table format shows (csv and json carry every column)
TABLE_COLUMNS = ("table", "chain", "position", "src", "dst", "protocol", "dport", "comment", "target",
                 "target_args", "owner")
NFT_COLUMNS = ("family", "table", "chain", "position", "matches", "verdict", "comment", "owner")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "rules", help="parse an iptables-save dump (or nft rules) and print its rules",
        description="Parse iptables-save output, or nft's rules (nft list ruleset text, nft -j JSON, or an "
                    "nft -f transaction as kube-proxy sends it; the form is detected), from FILE or - for "
                    "standard input, and print one row per rule, optionally filtered by table, chain and owner.")
    p.add_argument("file", metavar="FILE", help="the dump (iptables-save or nft output); - reads standard input")
    p.add_argument("--table", "-t", help="only this table (raw, mangle, nat, filter, security; nft: any "
                                         "table name, e.g. kube-proxy)")
    p.add_argument("--chain", "-c", help="only this chain")
    p.add_argument("--owner", "-o",
                   help="only chains of this owner (kube-proxy, kubelet, 'CNI portmap', Docker, kind, ...)")
    p.add_argument("--format", "-f", choices=FORMATS, default="table", help="output format (default: table)")
    p.add_argument("--strict", action="store_true",
                   help="refuse excerpts (no *table line, undeclared chains) instead of inferring")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..netfilter.nft.files import read_rules
    from ..netfilter.owners import OWNERS
    from ..netfilter.rules import TABLES

    if args.owner is not None and args.owner not in OWNERS:
        raise K8sLabError(f"unknown owner {args.owner!r}; use one of {', '.join(OWNERS)}")
    form, rs = read_rules(args.file, strict=args.strict)
    if form != "iptables":
        return _run_nft(args, rs)
    if args.table is not None and args.table not in TABLES:
        raise K8sLabError(f"unknown table {args.table!r}; use one of {', '.join(TABLES)}")
    for warning in rs.warnings:
        print(f"k8slab: warning: {warning}", file=sys.stderr)
    frame = rs.rules
    if args.table is not None:
        frame = frame[frame["table"] == args.table]
    has_chain = lambda chain: any(chain in chains for chains in rs.tables.values())
    return _print(args, frame, rs.source, has_chain, TABLE_COLUMNS)


def _run_nft(args: argparse.Namespace, rs) -> int:
    """The same filters and formats over an nft ruleset's rules (``NftRuleset.rules_frame``)."""
    frame = rs.rules_frame
    if args.table is not None:
        if rs.table("ip", args.table) is None and not any(t.name == args.table for t in rs.tables):
            raise K8sLabError(f"no table {args.table!r} in {rs.source}; tables: "
                              + ", ".join(f"{t.family} {t.name}" for t in rs.tables))
        frame = frame[frame["table"] == args.table]
    has_chain = lambda chain: any(chain in t.chains for t in rs.tables)
    return _print(args, frame, rs.source, has_chain, NFT_COLUMNS)


def _print(args: argparse.Namespace, frame, source: str, has_chain, columns: tuple[str, ...]) -> int:
    """Filter ``frame`` by chain and owner and print it in ``args.format``: both readers end here."""
    if args.chain is not None:
        frame = frame[frame["chain"] == args.chain]
        if not len(frame) and not has_chain(args.chain):
            raise K8sLabError(f"no chain {args.chain!r} in {source}; "
                              f"'k8slab rules {args.file} --format csv' lists every rule")
    if args.owner is not None:
        frame = frame[frame["owner"] == args.owner]
    out = sys.stdout
    if args.format == "csv":
        frame.to_csv(out, index=False)
    elif args.format == "json":
        out.write(frame.to_json(orient="records", indent=1))
        out.write("\n")
    else:
        if not len(frame):
            print("(no rules match)", file=out)
            return 0
        shown = frame[list(columns)].fillna("").astype(str)
        out.write(shown.to_string(index=False, max_colwidth=60))
        out.write(f"\n({len(frame)} rules)\n")
    return 0
