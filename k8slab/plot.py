"""The course's figures, drawn the same way in every notebook.

- :func:`plot_path`: one way in as a sequence diagram. Places (the host, a node, a pod's network
  namespace) are tall boxes; each hop is a numbered arrow coloured by the component that owns it;
  control-plane hops are dashed.
- :func:`plot_chain_graph`: iptables chains as boxes laid out by jump depth, coloured by owner.
- :func:`plot_probabilities`: predicted against measured shares per endpoint.
- :func:`plot_latency`: milliseconds per request, one column per way.

The same component always has the same colour (:data:`COMPONENT_COLORS`); a chain owner maps onto
the component that writes it (:data:`OWNER_COLORS`). Only matplotlib is needed.
"""
from __future__ import annotations

import re
from collections import OrderedDict, deque
from typing import Mapping

from .paths import Component, Path

# One colour per component, kept stable across every figure of the course.
COMPONENT_COLORS: dict[Component, str] = {
    Component.CLIENT: "#4d4d4d",
    Component.KUBECTL: "#1f77b4",
    Component.API_SERVER: "#d62728",
    Component.KUBELET: "#9467bd",
    Component.RUNTIME: "#8c564b",
    Component.DOCKER: "#17becf",
    Component.DOCKER_PROXY: "#0e8a99",
    Component.CNI_PORTMAP: "#ff7f0e",
    Component.KUBE_PROXY: "#2ca02c",
    Component.KINDNET: "#bcbd22",
    Component.ROUTING: "#7f7f7f",
    Component.INGRESS_CONTROLLER: "#e377c2",
    Component.APP: "#393b79",
}

# Chain owners (k8slab.netfilter.owners.owner_of) coloured like the component that writes the chain.
OWNER_COLORS: dict[str, str] = {
    "kube-proxy": COMPONENT_COLORS[Component.KUBE_PROXY],
    "CNI portmap": COMPONENT_COLORS[Component.CNI_PORTMAP],
    "Docker": COMPONENT_COLORS[Component.DOCKER],
    "kind": COMPONENT_COLORS[Component.KINDNET],
    "kindnet": COMPONENT_COLORS[Component.KINDNET],
    "kubelet": COMPONENT_COLORS[Component.KUBELET],
    "builtin": "#c7c7c7",
    "target": "#ffffff",
    "other": "#aec7e8",
}
PREDICTED_COLOR = "#9ecae1"
MEASURED_COLOR = "#08519c"


def component_color(component: Component | str) -> str:
    """The course's colour for a component (or its value, e.g. ``"kube-proxy"``)."""
    try:
        return COMPONENT_COLORS[Component(component)]
    except ValueError:
        return OWNER_COLORS.get(str(component), OWNER_COLORS["other"])


def owner_color(owner: str) -> str:
    return OWNER_COLORS.get(owner, OWNER_COLORS["other"])


def _plt():
    """matplotlib, and a maker of figures that are returned rather than shown.

    Each figure is made by pyplot (which loads the notebook's backend, so Jupyter knows how to
    display a Figure) and closed at once: the notebook then shows the *returned* figure exactly once,
    instead of once more through pyplot's auto-show, and nothing piles up in pyplot's registry when
    a test or a loop draws many. ``save(fig, path)`` writes one to disk.
    """
    import matplotlib
    import matplotlib.pyplot as plt
    return matplotlib, _Figures(plt)


class _Figures:
    def __init__(self, plt):
        self.plt = plt

    def figure(self, figsize):
        fig = self.plt.figure(figsize=figsize)
        self.plt.close(fig)
        return fig

    def subplots(self, figsize):
        fig = self.figure(figsize)
        return fig, fig.add_subplot()


def _short(text: str, width: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= width else text[: width - 1] + "…"


# --------------------------------------------------------------------------------------------
# A path as a sequence diagram
# --------------------------------------------------------------------------------------------

def path_places(path: Path) -> list[str]:
    """The boxes of a path's figure, left to right in order of first use (the client's first)."""
    places: list[str] = []
    first = path.hops[0].place if path.hops else path.client
    for place in [first, *(h.place for h in path.hops)]:
        if place not in places:
            places.append(place)
    return places


def _wrap(text: str, width: int = 18, max_lines: int = 3) -> str:
    words, lines, cur = str(text).split(), [], ""
    for w in words:
        if cur and len(cur) + 1 + len(w) > width:
            lines.append(cur)
            cur = w
        else:
            cur = f"{cur} {w}".strip()
    lines.append(cur)
    if len(lines) > max_lines:
        lines = lines[:max_lines]
        lines[-1] = _short(lines[-1] + " …", width)
    return "\n".join(_short(line, width + 4) for line in lines)


def plot_path(path: Path, ax=None, *, title: str | None = None, width: int = 72):
    """Draw one way in: places as boxes, hops as numbered arrows coloured by component.

    Hop N's arrow starts in the box where its component acts and ends where hop N+1 acts (the
    last hop marks its own box). Returns the Figure. Arrows carry ``gid="hop-N"``, place boxes
    ``gid="place-NAME"``, so tests (and curious learners) can find them.
    """
    matplotlib, plt = _plt()
    from matplotlib.lines import Line2D
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

    places = path_places(path)
    n = max(len(path.hops), 1)
    if ax is None:
        fig = plt.figure((1.9 * len(places) + 6.2, 1.7 + 0.5 * n))
        grid = fig.add_gridspec(1, 2, width_ratios=[1.9 * len(places), 6.0], wspace=0.02)
        ax = fig.add_subplot(grid[0, 0])
        tax = fig.add_subplot(grid[0, 1])
    else:
        fig, tax = ax.figure, ax   # one axes given: the hop list goes to its right-hand side
    col = {p: i for i, p in enumerate(places)}
    top, bottom = n + 0.3, -0.1
    for place, x in col.items():
        ax.add_patch(FancyBboxPatch((x - 0.44, bottom), 0.88, top - bottom,
                                    boxstyle="round,pad=0.02,rounding_size=0.08", facecolor="#f4f4f4",
                                    edgecolor="#9a9a9a", linewidth=1.0, zorder=0, gid=f"place-{place}"))
        ax.text(x, top + 0.1, _wrap(place), ha="center", va="bottom", fontsize=8.5, fontweight="bold")

    used: "OrderedDict[Component, None]" = OrderedDict()
    lines = []
    for row, hop in enumerate(path.hops):
        y = n - row - 0.4
        x0 = col[hop.place]
        x1 = col[path.hops[row + 1].place] if row + 1 < len(path.hops) else x0
        color = component_color(hop.component)
        style = "--" if hop.plane == "control" else "-"
        used[hop.component] = None
        if x1 == x0:   # the hop acts inside one box: a short curved arrow in it
            start, end, conn = (x0 - 0.28, y), (x0 + 0.28, y), "arc3,rad=-0.5"
        else:
            start, end, conn = (x0, y), (x1, y), "arc3,rad=0"
        ax.add_patch(FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=14, color=color,
                                     linewidth=2.0, linestyle=style, connectionstyle=conn, zorder=3,
                                     gid=f"hop-{hop.index}"))
        ax.text(start[0] if x1 != x0 else x0, y + (0.0 if x1 != x0 else 0.12), str(hop.index),
                ha="center", va="center", fontsize=8, color="white", fontweight="bold", zorder=4,
                bbox=dict(boxstyle="circle,pad=0.2", facecolor=color, edgecolor="none"))
        addr = f"  → {hop.dst}" if hop.dst else ""
        lines.append((y, color, _wrap(f"{hop.index}. {hop.component.value}: {hop.action}{addr}", width, 2)))

    ax.set_xlim(-0.55, len(places) - 0.45)
    ax.set_ylim(-0.6, top + 0.9)
    ax.axis("off")
    for y, color, text in lines:
        tax.text(0.0 if tax is not ax else len(places) - 0.4, y, text, ha="left", va="center", fontsize=7.5,
                 color=color, transform=tax.transData)
    if tax is not ax:
        tax.set_xlim(0, 1)
        tax.set_ylim(ax.get_ylim())
        tax.axis("off")

    handles = [Line2D([0], [0], color=component_color(c), lw=3, label=c.value) for c in used]
    if any(h.plane == "control" for h in path.hops):
        handles.append(Line2D([0], [0], color="black", lw=1.5, ls="--", label="control plane (dashed)"))
    fig.legend(handles=handles, loc="lower left", bbox_to_anchor=(0.01, 0.0),
               ncol=min(5, max(1, len(handles))), fontsize=8, frameon=False)
    label = title or (f"{path.way.value}: {path.client} → {path.destination or 'nothing answers'}"
                      + ("   (model prediction)" if path.predicted else ""))
    fig.suptitle(label, fontsize=11, x=0.01, ha="left")
    fig.subplots_adjust(left=0.01, right=0.99, top=1 - 0.5 / fig.get_figheight(),
                        bottom=(0.25 + 0.22 * ((len(handles) - 1) // 5 + 1)) / fig.get_figheight())
    return fig


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


def plot_chain_graph(ruleset, start: str | tuple[str, str] = "PREROUTING", service: str | None = None, *,
                     table: str = "nat", ax=None, max_nodes: int = 40, title: str | None = None):
    """Draw the chains reachable from ``start``: columns by jump depth, boxes coloured by owner.

    Returns the Figure. Chain boxes carry ``gid="chain-NAME"``, edges ``gid="edge-A->B"``.
    """
    matplotlib, plt = _plt()
    from matplotlib.patches import FancyArrowPatch, Patch

    nodes, edges = chain_graph(ruleset, start, table=table, service=service, max_nodes=max_nodes)
    by_depth: dict[int, list[str]] = {}
    for name, info in nodes.items():
        by_depth.setdefault(info["depth"], []).append(name)
    rows = max(len(v) for v in by_depth.values())

    def half(name: str) -> float:   # half a box's width: ~0.034 data units per character
        return 0.034 * len(_short(name, 30)) + 0.12

    # Columns as narrow as their widest box, with room for the arrows between them (1 unit ~ 1 inch).
    xs: dict[int, float] = {}
    x = 0.0
    depths = sorted(by_depth)
    for k, depth in enumerate(depths):
        if k:
            prev = max(half(n) for n in by_depth[depths[k - 1]])
            x += prev + max(half(n) for n in by_depth[depth]) + 1.1
        xs[depth] = x
    left = max(half(n) for n in by_depth[depths[0]]) + 0.2
    right = x + max(half(n) for n in by_depth[depths[-1]]) + 0.2
    if ax is None:
        fig, ax = plt.subplots((max(7.0, (left + right) * 0.95 + 1.8), max(2.5, 0.62 * rows + 1.6)))
    else:
        fig = ax.figure
    pos: dict[str, tuple[float, float]] = {}
    parents: dict[str, list[str]] = {}
    for a, b, _label in edges:
        parents.setdefault(b, []).append(a)
    for depth in depths:
        names = by_depth[depth]
        if depth != depths[0]:
            # order a column by where its parents sit (top first): far fewer crossing arrows
            def height(name, names=names):
                ys = [pos[p][1] for p in parents.get(name, []) if p in pos]
                return -(sum(ys) / len(ys)) if ys else 0.0
            names = sorted(names, key=height)
        for i, name in enumerate(names):
            pos[name] = (xs[depth], ((len(names) - 1) / 2 - i) * 0.9)   # centred column
    for a, b, label in edges:
        (x0, y0), (x1, y1) = pos[a], pos[b]
        rad = 0.0 if x1 > x0 else 0.4
        # boxes are about 0.034 data units per character wide (monospace 7.5 pt, ~1 inch per unit)
        start_pt = (x0 + half(a), y0) if x1 > x0 else (x0 + half(a), y0)
        end_pt = (x1 - half(b), y1) if x1 > x0 else (x1 + half(b), y1)
        ax.add_patch(FancyArrowPatch(start_pt, end_pt, arrowstyle="-|>", mutation_scale=10,
                                     color="#555555", lw=0.9, connectionstyle=f"arc3,rad={rad}",
                                     zorder=1, gid=f"edge-{a}->{b}"))
        if label:
            ax.text((start_pt[0] + end_pt[0]) / 2, (start_pt[1] + end_pt[1]) / 2 + 0.08, label,
                    fontsize=7, ha="center", va="bottom", color="#333333",
                    bbox=dict(boxstyle="round,pad=0.1", fc="white", ec="none", alpha=0.8), zorder=2)
    owners_seen: "OrderedDict[str, None]" = OrderedDict()
    for name, info in nodes.items():
        x, y = pos[name]
        owner = info["owner"]
        owners_seen[owner] = None
        ax.text(x, y, _short(name, 30), ha="center", va="center", fontsize=7.5, zorder=3,
                family="monospace", gid=f"chain-{name}",
                bbox=dict(boxstyle="round,pad=0.3", fc=owner_color(owner),
                          ec="black" if info["kind"] == "chain" else "#555555",
                          ls="-" if info["kind"] == "chain" else ":", alpha=0.9))
    handles = [Patch(facecolor=owner_color(o), edgecolor="black",
                     label="rule target (leaf)" if o == "target" else o) for o in owners_seen]
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False,
              title="owner", title_fontsize=8)
    ys = [p[1] for p in pos.values()] or [0]
    ax.set_xlim(-left, right)
    ax.set_ylim(min(ys) - 0.7, max(ys) + 0.7)
    ax.axis("off")
    start_name = start[1] if isinstance(start, tuple) else start
    capped = f"   (first {max_nodes} boxes; raise max_nodes for more)" if len(nodes) >= max_nodes else ""
    ax.set_title(title or f"{table} {start_name}" + (f" for {service}" if service else "") + capped,
                 fontsize=11, loc="left")
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------------------------
# Numbers
# --------------------------------------------------------------------------------------------

def _as_mapping(values) -> "OrderedDict[str, float]":
    if values is None:
        return OrderedDict()
    if hasattr(values, "to_dict"):
        values = values.to_dict()
    if isinstance(values, Mapping):
        return OrderedDict((str(k), float(v)) for k, v in values.items())
    return OrderedDict((str(i + 1), float(v)) for i, v in enumerate(values))


def plot_probabilities(predicted, measured=None, *, rule_probabilities=None, ax=None,
                       title: str = "Which endpoint answers?", n: int | None = None,
                       simulated: bool = False):
    """Bars of the predicted share of each endpoint next to the measured share.

    ``predicted``/``measured``: mappings endpoint -> fraction (or sequences). ``rule_probabilities``
    (endpoint -> the ``--probability`` of its rule) is printed above the bars, so 1/3, 1/2, 1 can be
    seen turning into 1/3 each. ``n``: how many requests were measured, for the title. ``simulated``:
    the "measured" shares are the sim backend's draws (``Response.predicted``), and the legend says so.
    """
    matplotlib, plt = _plt()
    pred = _as_mapping(predicted)
    meas = _as_mapping(measured)
    rules = _as_mapping(rule_probabilities)
    labels = list(OrderedDict.fromkeys([*pred, *meas]))
    if ax is None:
        fig, ax = plt.subplots((max(6.0, 1.6 * len(labels) + 2), 3.6))
    else:
        fig = ax.figure
    xs = range(len(labels))
    w = 0.38 if meas else 0.6
    ax.bar([x - (w / 2 if meas else 0) for x in xs], [pred.get(k, 0.0) for k in labels], width=w,
           color=PREDICTED_COLOR, edgecolor="black", label="predicted (from the rules)")
    if meas:
        ax.bar([x + w / 2 for x in xs], [meas.get(k, 0.0) for k in labels], width=w,
               color=MEASURED_COLOR, edgecolor="black",
               label=("drawn by the model, not measured" if simulated else "measured")
               + (f" ({n} requests)" if n else ""))
    for x, k in zip(xs, labels):
        if k in rules:
            ax.text(x, max(pred.get(k, 0), meas.get(k, 0)) + 0.03, f"rule p = {rules[k]:.3g}",
                    ha="center", va="bottom", fontsize=8)
    ax.set_xticks(list(xs))
    ax.set_xticklabels([_short(k, 22) for k in labels], fontsize=8)
    top = max([*pred.values(), *meas.values(), 0.5])
    ax.set_ylim(0, min(1.15, top + 0.2))
    ax.set_ylabel("share of requests")
    ax.set_title(title, fontsize=11, loc="left")
    ax.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    return fig


def plot_latency(df, *, ax=None, value: str = "ms", by: str = "way", title: str | None = None):
    """Each request's latency as a dot, one column per way, with the median as a bar.

    ``df``: one row per request with columns ``by`` and ``value`` (and optionally ``predicted``).
    """
    matplotlib, plt = _plt()
    from matplotlib.lines import Line2D
    groups = list(OrderedDict.fromkeys(df[by].tolist()))
    if ax is None:
        fig, ax = plt.subplots((max(6.0, 1.8 * len(groups) + 2), 3.6))
    else:
        fig = ax.figure
    predicted = bool("predicted" in df.columns and df["predicted"].any())
    for i, g in enumerate(groups):
        vals = df.loc[df[by] == g, value].astype(float).tolist()
        color = _way_color(g)
        jitter = [((k * 37) % 11 - 5) / 40 for k in range(len(vals))]   # deterministic spread
        ax.scatter([i + j for j in jitter], vals, s=14, color=color, alpha=0.7, zorder=2)
        if vals:
            med = sorted(vals)[len(vals) // 2]
            ax.add_line(Line2D([i - 0.3, i + 0.3], [med, med], color="black", lw=2, zorder=3))
            ax.text(i + 0.33, med, f"{med:.2f} ms", va="center", fontsize=8)
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels(groups)
    ax.set_xlim(-0.6, len(groups) - 0.2)
    ax.set_ylabel("milliseconds per request")
    ax.set_ylim(bottom=0)
    ax.set_title(title or ("Latency per way in" + ("  (a model's prediction, not measured)" if predicted else "")),
                 fontsize=11, loc="left")
    fig.tight_layout()
    return fig


def plot_components(paths: Mapping[str, Path], *, ax=None, title: str | None = None):
    """Which component carries which way in: a grid of ways (rows) x components (columns).

    A filled square means the component has at least one hop on that way (the number inside is how
    many); dashed outline: the hop is on the control plane. Squares carry ``gid="cell-WAY-COMPONENT"``.
    """
    matplotlib, plt = _plt()
    from matplotlib.patches import Rectangle
    ways = [getattr(k, "value", str(k)) for k in paths]
    comps = [c for c in Component if any(c in p.components for p in paths.values())]
    if ax is None:
        fig, ax = plt.subplots((1.05 * len(comps) + 2.6, 0.55 * len(ways) + 2.0))
    else:
        fig = ax.figure
    for i, (way, path) in enumerate(zip(ways, paths.values())):
        y = len(ways) - 1 - i
        for j, comp in enumerate(comps):
            hops = [h for h in path.hops if h.component is comp]
            if not hops:
                ax.add_patch(Rectangle((j - 0.4, y - 0.4), 0.8, 0.8, facecolor="white", edgecolor="#dddddd"))
                continue
            control = any(h.plane == "control" for h in hops)
            ax.add_patch(Rectangle((j - 0.4, y - 0.4), 0.8, 0.8, facecolor=component_color(comp),
                                   edgecolor="black", linestyle="--" if control else "-", linewidth=1.2,
                                   gid=f"cell-{way}-{comp.value}"))
            ax.text(j, y, str(len(hops)), ha="center", va="center", color="white", fontsize=9,
                    fontweight="bold")
    ax.set_xticks(range(len(comps)))
    ax.set_xticklabels([c.value for c in comps], rotation=35, ha="right", fontsize=9)
    ax.set_yticks(range(len(ways)))
    ax.set_yticklabels(list(reversed(ways)), fontsize=9)
    ax.set_xlim(-0.6, len(comps) - 0.4)
    ax.set_ylim(-0.6, len(ways) - 0.4)
    ax.set_aspect("equal")
    for side in ("top", "right", "left", "bottom"):
        ax.spines[side].set_visible(False)
    ax.tick_params(length=0)
    predicted = any(p.predicted for p in paths.values())
    ax.set_title(title or ("Which component carries each way in (hops per component; dashed = control plane)"
                           + ("\n(model prediction)" if predicted else "")), fontsize=10, loc="left")
    fig.tight_layout()
    return fig


# The colour of a way: the component that makes it a way (who carries the traffic in).
_WAY_COMPONENT = {
    "port-forward": Component.API_SERVER,
    "clusterip": Component.KUBE_PROXY,
    "nodeport": Component.KUBE_PROXY,
    "hostport": Component.CNI_PORTMAP,
    "ingress": Component.INGRESS_CONTROLLER,
}


def _way_color(way) -> str:
    comp = _WAY_COMPONENT.get(getattr(way, "value", str(way)))
    return COMPONENT_COLORS[comp] if comp else "#555555"


def save(fig, path: str, dpi: int = 110) -> str:
    """Write a figure as PNG (for the HTML pages and for looking at it outside Jupyter)."""
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    return path


__all__ = ["COMPONENT_COLORS", "OWNER_COLORS", "component_color", "owner_color", "path_places", "plot_path",
           "chain_graph", "plot_chain_graph", "plot_probabilities", "plot_latency", "plot_components", "save"]
