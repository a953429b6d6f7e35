"""The chain graph: iptables chains reachable from a hook as a tree of boxes, top to bottom,
coloured by owner (:func:`plot_chain_graph`), and the pure pieces it draws from: :func:`chain_graph`
(chains and jumps), :func:`chain_tree` (the graph unrolled), :func:`chain_services` (kube-proxy's
per-service chains named by their service). Re-exported by :mod:`k8slab.plot`; colours and sizes
from :mod:`k8slab.figure_style`.
"""
from __future__ import annotations

import re
from collections import OrderedDict, deque

from .figure_style import MAX_WIDTH_IN, TEXT_PT, TITLE_PT, _fit_lines, _plt, _text_width_in, owner_color


# --------------------------------------------------------------------------------------------
# iptables chains as a graph
# --------------------------------------------------------------------------------------------

def _owner_of(table: str, chain: str) -> str:
    from .paths import owner_of   # netfilter.owners when present, else by the chain's prefix
    return owner_of(table, chain)


_PER_SERVICE = ("KUBE-SVC-", "KUBE-SVL-", "KUBE-EXT-", "KUBE-FW-", "KUBE-SEP-")


def _mentions(rule, service: str) -> bool:
    """True when the rule's comment names exactly this service ("ns/name:port ..." or "ns/name ...")."""
    comment = rule.comment or ""
    return re.search(r"(^|[\s\"])" + re.escape(service) + r"([:\s\"]|$)", comment) is not None


def chain_graph(ruleset, start: str | tuple[str, str] = "PREROUTING", *, table: str = "nat",
                service: str | None = None, max_nodes: int = 40):
    """Chains reachable from ``start`` by jumps, as ``(nodes, edges)``.

    ``nodes``: ordered dict name -> {"depth", "owner", "kind"} ("chain" or "target" for DNAT,
    MASQUERADE, ... leaves). ``edges``: list of (from, to, label). With ``service``
    ("namespace/name"), per-service chains are followed only from rules that mention it.
    """
    if isinstance(start, tuple):
        table, start = start
    chains = ruleset.tables.get(table, {})
    nodes: "OrderedDict[str, dict]" = OrderedDict()
    edges: list[tuple[str, str, str]] = []
    nodes[start] = {"depth": 0, "owner": _owner_of(table, start), "kind": "chain"}
    queue = deque([start])
    while queue:
        name = queue.popleft()
        chain = chains.get(name)
        if chain is None:
            continue
        # Per-service chains reached along the filtered path are the service's own; follow all.
        inside_service = name.startswith(_PER_SERVICE)
        for rule in chain.rules:
            target = rule.target
            if not target:
                continue
            if rule.jumps_to_chain:
                if service and target.startswith(_PER_SERVICE) and not inside_service \
                        and not _mentions(rule, service):
                    continue
                label = ""
                prob = rule.option("statistic", "--probability")
                if prob is not None and prob.value:
                    label = f"p={float(prob.value):.2f}"
                if target not in nodes:
                    if len(nodes) >= max_nodes:
                        continue
                    nodes[target] = {"depth": 0, "owner": _owner_of(table, target), "kind": "chain"}
                    queue.append(target)
                edges.append((name, target, label))
            elif target in ("DNAT", "SNAT", "MASQUERADE", "REDIRECT"):
                dest = rule.target_option("--to-destination") or rule.target_option("--to-source")
                leaf = f"{target} {dest.value}" if dest is not None and dest.value else target
                if leaf not in nodes:
                    if len(nodes) >= max_nodes:
                        continue
                    nodes[leaf] = {"depth": 0, "owner": "target", "kind": "target"}
                edges.append((name, leaf, ""))
    # Depth = the longest jump path from the start, so every edge points rightwards (the kernel
    # refuses jump loops, so the graph is acyclic; the bound only guards against a broken input).
    for _ in range(len(nodes)):
        changed = False
        for a, b, _label in edges:
            if b != start and nodes[b]["depth"] < nodes[a]["depth"] + 1:
                nodes[b]["depth"] = nodes[a]["depth"] + 1
                changed = True
        if not changed:
            break
    return nodes, edges


def chain_tree(nodes, edges, start: str) -> list[tuple[int, str, str, bool]]:
    """The graph unrolled into the tree a packet can walk, depth first in rule order: rows of
    ``(depth, name, edge label, repeated)``. A chain met again (KUBE-MARK-MASQ from every endpoint,
    a KUBE-SVC reached from both KUBE-SERVICES and KUBE-EXT) is a row of its own, ``repeated``,
    and is not expanded a second time."""
    children: dict[str, list[tuple[str, str]]] = {}
    for a, b, label in edges:
        kids = children.setdefault(a, [])
        if all(b != k for k, _ in kids):
            kids.append((b, label))
    rows: list[tuple[int, str, str, bool]] = []
    seen: set[str] = set()

    def walk(name: str, depth: int, label: str) -> None:
        repeated = name in seen
        rows.append((depth, name, label, repeated))
        if repeated:
            return
        seen.add(name)
        for child, child_label in children.get(name, []):
            if child in nodes:
                walk(child, depth + 1, child_label)

    walk(start, 0, "")
    return rows


# "namespace/name:port" (or "namespace/name") as kube-proxy writes it into its rule comments, e.g.
# "default/url-shortener:http -> 10.244.0.5:8080", "masquerade traffic for ns/svc:http external destinations"
# (kubernetes pkg/proxy/iptables/proxier.go: svcPortNameString in every per-service rule's comment).
_SERVICE_PORT_NAME = re.compile(r"(?<![\w./-])([a-z0-9]([-a-z0-9]*[a-z0-9])?/[a-z0-9]([-a-z0-9.]*[a-z0-9])?"
                                r"(:[-a-zA-Z0-9]+)?)(?![\w./])")
_CHAIN_ROLE = {"KUBE-EXT-": " (external)", "KUBE-FW-": " (load balancer)", "KUBE-SVL-": " (local endpoints)"}


def _service_in(comment: str | None) -> str | None:
    m = _SERVICE_PORT_NAME.search(comment or "")
    return m.group(1) if m else None


def chain_services(ruleset, table: str = "nat") -> dict[str, str]:
    """kube-proxy's per-service chains named by what they serve, read off the rule comments:
    ``KUBE-SVC-…`` -> ``"default/url-shortener:http"``, ``KUBE-SEP-…`` -> ``"default/url-shortener:http →
    10.244.0.5:8080"`` (its DNAT target), ``KUBE-EXT-…`` -> ``"… (external)"``, ``KUBE-FW-…`` ->
    ``"… (load balancer)"``. A chain whose rules carry no comment (kube-proxy drops them in very
    large clusters) is named from the comment of a rule that jumps to it, else left out."""
    chains = ruleset.tables.get(table, {})
    from_jumps: dict[str, str] = {}
    for chain in chains.values():
        for rule in chain.rules:
            if rule.target and rule.target.startswith(_PER_SERVICE) and rule.target not in from_jumps:
                svc = _service_in(rule.comment)
                if svc:
                    from_jumps[rule.target] = svc
    out: dict[str, str] = {}
    for name, chain in chains.items():
        if not name.startswith(_PER_SERVICE):
            continue
        svc = next((x for x in (_service_in(r.comment) for r in chain.rules) if x), None) or from_jumps.get(name)
        if not svc:
            continue
        if name.startswith("KUBE-SEP-"):
            dest = next((r.target_option("--to-destination") for r in chain.rules if r.target == "DNAT"), None)
            out[name] = f"{svc} → {dest.value}" if dest is not None and dest.value else svc
        else:
            out[name] = svc + next((v for k, v in _CHAIN_ROLE.items() if name.startswith(k)), "")
    return out


#: the chain graph's legend entry for a dashed box (a chain met again, drawn above)
REPEAT_LABEL = "dashed: chain drawn above (↑ above), not expanded again"


def plot_chain_graph(ruleset, start: str | tuple[str, str] = "PREROUTING", service: str | None = None, *,
                     table: str = "nat", ax=None, max_nodes: int = 40, title: str | None = None,
                     max_width: float = MAX_WIDTH_IN):
    """Draw the chains reachable from ``start`` as a tree, top to bottom: each chain one row,
    indented under the chain that jumps to it, in rule order; boxes coloured by owner; kube-proxy's
    ``--probability`` beside the endpoint chain it picks, and each per-service chain named by its
    service (a SEP also by its endpoint, :func:`chain_services`). A chain met a second time is drawn
    again (dashed, not expanded: "↑ above"); rule targets (DNAT ...) are dotted. The figure is at
    most ``max_width`` wide and as tall as the tree; a name that does not fit beside its box goes
    on a line of its own under it, right of every connector; the owners' legend is under the title.

    Why an own layout and no graph-layout library: docs/architecture.md ("chain graphs").

    Returns the Figure. Each chain's first box carries ``gid="chain-NAME"`` (repeats
    ``"chain-NAME#2"``, ...), its service name ``gid="service-NAME"``, each edge ``gid="edge-A->B"``.
    """
    matplotlib, plt = _plt()
    from matplotlib.patches import FancyArrowPatch, Patch

    nodes, edges = chain_graph(ruleset, start, table=table, service=service, max_nodes=max_nodes)
    names = chain_services(ruleset, table)
    start_name = start[1] if isinstance(start, tuple) else start
    tree = chain_tree(nodes, edges, start_name)
    margin, pad, indent, row_h, box_h, line_h = 0.12, 0.05, 0.34, 0.28, 0.21, 0.17

    def box_w(name: str) -> float:
        return _text_width_in(name, TEXT_PT, family="monospace") * 1.05 + 2 * pad

    def side_text(name: str, edge_label: str, repeated: bool) -> str:
        notes = [edge_label] if edge_label else []
        if repeated and nodes[name]["kind"] == "chain":     # every dashed box says where it is drawn
            notes.append("↑ above")
        return "  ".join(notes)

    def label_of(name: str) -> str:
        return names.get(name, "")

    def width_of(text: str) -> float:
        return _text_width_in(text, TEXT_PT) * 1.05 if text else 0.0

    # the widest row with every name beside its box, and the widest with names on their own line
    beside = [margin + d * indent + box_w(n) + 0.1 + width_of(side_text(n, l, r))
              + (0.12 + width_of(label_of(n)) if label_of(n) else 0.0) for d, n, l, r in tree]
    W = min(max_width - 0.2, max(max(beside) + margin, 5.0))     # savefig pads 0.1 in a side
    capped = f"   (first {max_nodes} boxes; raise max_nodes for more)" if len(nodes) >= max_nodes else ""
    # the endpoints counted in the rules drawn, so the title follows a scale (2 -> 4 replicas)
    n_eps = len({names[n].split(" → ", 1)[1] for _d, n, _l, _r in tree
                 if n.startswith("KUBE-SEP-") and " → " in names.get(n, "")})
    eps = f" ({n_eps} endpoint{'' if n_eps == 1 else 's'})" if service and n_eps else ""
    label = title or f"{table} {start_name}" + (f" for {service}{eps}" if service else "") + capped
    title_lines = _fit_lines(label, W - 2 * margin, TITLE_PT, max_lines=6)
    title_h = 0.18 * len(title_lines) + 0.16
    owners_seen: "OrderedDict[str, None]" = OrderedDict((nodes[n]["owner"], None) for _d, n, _l, _r in tree)
    legend_labels = ["rule target (leaf)" if o == "target" else o for o in owners_seen]
    # dashed means "drawn above" here (in plot_path it means the control plane): say so
    repeats = any(r and nodes[n]["kind"] == "chain" for _d, n, _l, r in tree)
    if repeats:
        legend_labels.append(REPEAT_LABEL)
    # the legend in rows under the title, as many entries a row as fit
    entry_w = [width_of(l) + 0.45 for l in legend_labels]
    rows_of_legend, used_w = 1, 0.0
    for w in entry_w:
        if used_w + w > W - 2 * margin:
            rows_of_legend, used_w = rows_of_legend + 1, 0.0
        used_w += w
    per_row = max(1, -(-len(entry_w) // rows_of_legend))
    legend_h = 0.2 * rows_of_legend + 0.12

    rows = []          # (depth, name, edge label, repeated, x, side text, service label, label below)
    for d, n, l, r in tree:
        x = margin + d * indent
        side = side_text(n, l, r)
        svc = label_of(n)
        below = bool(svc) and beside[len(rows)] + margin > W
        rows.append((d, n, l, r, x, side, svc, below))
    heights = [row_h + (line_h * len(_fit_lines(svc, W - margin - (x + indent), TEXT_PT, max_lines=6))
                        if below else 0.0) for _d, _n, _l, _r, x, _s, svc, below in rows]
    H = title_h + legend_h + sum(heights) + 0.12

    fig, ax = plt.canvas(ax, W, H)

    pos: dict[int, tuple[float, float]] = {}     # row -> (left x, centre y of the box)
    stack: list[int] = []                          # rows of the current ancestors, by depth
    count: dict[str, int] = {}
    y_top = H - title_h - legend_h
    for i, ((depth, name, edge_label, repeated, x, side, svc, below), h) in enumerate(zip(rows, heights)):
        y = y_top - row_h / 2
        y_top -= h
        pos[i] = (x, y)
        del stack[depth:]
        info = nodes[name]
        count[name] = count.get(name, 0) + 1
        gid = f"chain-{name}" if count[name] == 1 else f"chain-{name}#{count[name]}"
        ax.text(x + pad, y, name, ha="left", va="center", fontsize=TEXT_PT, zorder=3, family="monospace",
                gid=gid, bbox=dict(boxstyle=f"round,pad={pad * 72 / TEXT_PT:.2f}", fc=owner_color(info["owner"]),
                                   ec="black" if info["kind"] == "chain" else "#555555",
                                   ls=":" if info["kind"] != "chain" else "--" if repeated else "-",
                                   alpha=0.9))
        after = x + box_w(name) + 0.1
        if side:
            ax.text(after, y, side, ha="left", va="center", fontsize=TEXT_PT, color="#333333", zorder=3,
                    gid=f"note-{name}")
            after += width_of(side) + 0.12
        if svc:
            sgid = f"service-{name}" if count[name] == 1 else f"service-{name}#{count[name]}"
            if below:      # under the box, right of this box's own connector (which runs at x + 0.45 indent)
                sx = x + indent
                lines = _fit_lines(svc, W - margin - sx, TEXT_PT, max_lines=6)
                ax.text(sx, y - row_h / 2 + 0.02, "\n".join(lines), ha="left", va="top", fontsize=TEXT_PT,
                        color="#1f3b73", zorder=3, gid=sgid, linespacing=1.25)
            else:
                ax.text(after, y, svc, ha="left", va="center", fontsize=TEXT_PT, color="#1f3b73", zorder=3,
                        gid=sgid)
        if stack:
            parent = stack[-1]
            px, py = pos[parent]
            ax.add_patch(FancyArrowPatch((px + indent * 0.45, py - box_h / 2), (x - 0.01, y),
                                         arrowstyle="-|>", mutation_scale=9, color="#555555", lw=0.9,
                                         connectionstyle="angle,angleA=-90,angleB=180,rad=0",
                                         shrinkA=0, shrinkB=0, zorder=1, gid=f"edge-{tree[parent][1]}->{name}"))
        stack.append(i)

    handles = [Patch(facecolor=owner_color(o), edgecolor="black", label=l, linestyle=":" if o == "target" else "-")
               for o, l in zip(owners_seen, legend_labels)]
    if repeats:
        handles.append(Patch(facecolor="white", edgecolor="black", linestyle="--", label=REPEAT_LABEL))
    fig.legend(handles=handles, loc="upper left", bbox_to_anchor=(margin / W, 1 - (title_h - 0.04) / H),
               ncol=per_row, fontsize=TEXT_PT, frameon=False, handlelength=1.4, columnspacing=1.0,
               borderaxespad=0.0, borderpad=0.1)
    fig.suptitle("\n".join(title_lines), fontsize=TITLE_PT, x=margin / W, y=1 - 0.06 / H, ha="left", va="top")
    return fig
