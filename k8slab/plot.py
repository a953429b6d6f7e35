"""The course's figures, drawn the same way in every notebook.

- :func:`plot_path`: one way in as a sequence diagram. Places (the host, a node, a pod's network
  namespace) are tall boxes; each hop is a numbered arrow coloured by the component that owns it,
  with its note on the same row; control-plane hops are dashed.
- :func:`plot_chain_graph`: iptables chains as a tree of boxes, top to bottom, coloured by owner.
- :func:`plot_probabilities`: predicted against measured shares per endpoint.
- :func:`plot_latency`: milliseconds per request, one column per way.

The same component always has the same colour (:data:`COMPONENT_COLORS`); a chain owner maps onto
the component that writes it (:data:`OWNER_COLORS`). Every figure is drawn at :data:`FIGURE_DPI`,
at most :data:`MAX_WIDTH_IN` wide, with no text under :data:`MIN_FONT_PT`: JupyterLab then shows it
at its natural size in the notebook's width, text at 11 px or more. Only matplotlib is needed.
"""
from __future__ import annotations

import re
from collections import OrderedDict, deque
from functools import lru_cache
from typing import Mapping

from .hops import EPHEMERAL_PORT, KERNEL_COMPONENTS, LOOPBACK_CLIENT_PORT, Component, Path

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
    """The course's colour for a component (or its value, e.g. ``"kube-proxy"``, or its label as a
    path's table shows it, ``"kernel (kube-proxy's rules)"``)."""
    try:
        return COMPONENT_COLORS[Component.from_label(str(getattr(component, "value", component)))]
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
        # A fixed DPI: the PNG's width in pixels is then known (see MAX_WIDTH_IN), whatever the
        # learner's matplotlib settings, and JupyterLab shows it at its natural size.
        fig = self.plt.figure(figsize=figsize, dpi=FIGURE_DPI)
        self.plt.close(fig)
        return fig

    def subplots(self, figsize):
        fig = self.figure(figsize)
        return fig, fig.add_subplot()


def _short(text: str, width: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= width else text[: width - 1] + "…"


# --------------------------------------------------------------------------------------------
# Sizes: every figure fits JupyterLab's notebook width at 100 % zoom, with readable text
#
# JupyterLab scales an image down to the output area's width (about 970 px in a 1400 px window with
# the file browser open), and text in a scaled-down PNG shrinks with it. So the course's figures are
# drawn at a fixed DPI, never wider than MAX_WIDTH_IN, with no text smaller than MIN_FONT_PT:
# 8 pt at 100 dpi is 11 px in the browser. Layouts are measured in inches (one data unit = one inch).

FIGURE_DPI = 100
MAX_WIDTH_IN = 9.3            # 930 px at FIGURE_DPI: inside the notebook's width
MIN_FONT_PT = 8.0             # 8 pt at 100 dpi = 11.1 px
TEXT_PT = 8.0                 # labels, notes, legends
TITLE_PT = 10.5


@lru_cache(maxsize=None)
def _font(size: float, family: str, weight: str):
    from matplotlib.font_manager import FontProperties
    from matplotlib.textpath import TextToPath
    return TextToPath(), FontProperties(family=family, size=size, weight=weight)


@lru_cache(maxsize=8192)
def _text_width_in(text: str, size: float = TEXT_PT, *, family: str = "sans-serif", weight: str = "normal") -> float:
    """The width of one line of ``text`` in inches, as matplotlib will draw it."""
    to_path, prop = _font(size, family, weight)
    width, _h, _d = to_path.get_text_width_height_descent(text, prop, ismath=False)
    return width / 72.0


def _fit_lines(text: str, width_in: float, size: float = TEXT_PT, *, max_lines: int = 4,
               family: str = "sans-serif", weight: str = "normal") -> list[str]:
    """``text`` wrapped at spaces into lines no wider than ``width_in`` (measured, not guessed);
    a word wider than a line is cut into pieces; past ``max_lines`` the last line ends with "…"."""
    def fits(s: str) -> bool:
        # 5 % of slack: Agg at 100 dpi draws a line a little wider than the font's own metrics
        return _text_width_in(s, size, family=family, weight=weight) * 1.05 <= width_in

    lines: list[str] = []
    cur = ""
    for word in str(text).split():
        while not fits(word):                      # a very long token: break it after - . : / if it can
            k = len(word)
            while k > 1 and not fits(word[:k]):
                k -= 1
            cut = max(word.rfind(ch, 0, k) for ch in "-.:/,")
            k = cut + 1 if cut > 0 else k
            if cur:
                lines.append(cur)
                cur = ""
            lines.append(word[:k])
            word = word[k:]
        cand = f"{cur} {word}" if cur else word
        if fits(cand):
            cur = cand
        else:
            lines.append(cur)
            cur = word
    if cur or not lines:
        lines.append(cur)
    if len(lines) > max_lines:
        lines = lines[:max_lines]
        last = lines[-1]
        while last and not fits(last + " …"):
            last = last[:-1]
        lines[-1] = last.rstrip() + " …"
    return lines


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


def _badge(ax, x, y, number, color, zorder=4):
    ax.text(x, y, str(number), ha="center", va="center", fontsize=TEXT_PT, color="white", fontweight="bold",
            zorder=zorder, bbox=dict(boxstyle="circle,pad=0.25", facecolor=color, edgecolor="none"))


REWRITE_COLOR = "#c62828"     # the address a hop rewrote, in the packet line of a path figure
STAND_IN_COLOR = "#6b6b6b"
_REWROTE_LABEL = {"dst": "DNAT: dst rewritten", "src": "masquerade: src rewritten",
                  "src and dst": "src and dst rewritten", "new connection": "new connection"}


def _packet_pieces(hop) -> list[tuple[str, bool, str]]:
    """The packet line of a hop as (text, bold, gid suffix) pieces: the rewritten address bold."""
    if not hop.src and not hop.dst:
        return []
    rw = hop.rewrote or ""
    new_src = rw in ("src", "src and dst", "new connection")
    new_dst = rw in ("dst", "src and dst", "new connection")
    pieces = [(hop.src or "?", new_src, "src"), ("→", False, "arrow"), (hop.dst or "?", new_dst, "dst")]
    if rw:
        pieces.append((_REWROTE_LABEL.get(rw, rw), False, "rewrote"))
    return pieces


def plot_path(path: Path, ax=None, *, title: str | None = None, max_width: float = MAX_WIDTH_IN):
    """Draw one way in: places as boxes, hops as numbered arrows coloured by component, and on each
    hop's row the packet after it (``source → destination``, the address the hop rewrote in bold
    red) above what the hop does.

    Hop N's arrow starts in the box where its component acts and ends where hop N+1 acts (the
    last hop marks its own box). A hop a stand-in does on this backend (``Hop.stand_in``) has its row
    framed by a dashed box and its note starts with "(stand-in)". At most ``max_width`` inches wide
    (JupyterLab's notebook width at 100 dpi); no text under 8 pt; nothing cut: each row is as tall
    as its note. Returns the Figure. Arrows carry ``gid="hop-N"``, place boxes ``gid="place-NAME"``,
    notes ``gid="note-N"``, the packet's addresses ``gid="packet-N-src"`` / ``"packet-N-dst"``,
    the rewrite label ``"packet-N-rewrote"``, stand-in frames ``"stand-in-N"``.
    """
    matplotlib, plt = _plt()
    from matplotlib.lines import Line2D
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

    places = path_places(path)
    hops = list(path.hops)
    W = max_width - 0.2            # savefig's tight bounding box adds 0.1 in on each side
    margin, gap = 0.08, 0.18
    col_w = min(1.3, 4.2 / max(len(places), 1))     # the boxes take under half; the notes the rest
    diagram_w = col_w * len(places)
    notes_x = margin + diagram_w + gap
    text_x = notes_x + 0.24                       # after the number badge
    notes_w = W - text_x - margin
    line_h = 0.15

    place_lines = [_fit_lines(p, col_w - 0.1, TEXT_PT + 0.5, max_lines=20, weight="bold") for p in places]
    header_h = 0.17 * max(len(l) for l in place_lines) + 0.12
    notes = []
    for hop in hops:
        prefix = "(stand-in) " if hop.stand_in else ""
        notes.append(_fit_lines(f"{prefix}{hop.component.label}: {hop.action}", notes_w, TEXT_PT, max_lines=40))
    packet_rows = [1 if _packet_pieces(h) else 0 for h in hops]
    row_h = [max(0.36, line_h * (len(lines) + k) + 0.14) for lines, k in zip(notes, packet_rows)] or [0.4]

    used: "OrderedDict[Component, None]" = OrderedDict((h.component, None) for h in hops)
    control = any(h.plane == "control" for h in hops)
    stood = any(h.stand_in for h in hops)
    n_handles = len(used) + (1 if control else 0) + (1 if stood else 0)
    legend_cols = 4
    legend_h = 0.22 * ((n_handles - 1) // legend_cols + 1) + 0.12 if n_handles else 0.0
    key_lines = _fit_lines("each row: the packet after the hop, source → destination; bold red: the address "
                           f"the hop rewrote; ports {EPHEMERAL_PORT} and {LOOPBACK_CLIENT_PORT} stand for the ephemeral port "
                           "a client picks",
                           W - 2 * margin, TEXT_PT, max_lines=4)
    key_h = 0.15 * len(key_lines) + 0.1 if any(packet_rows) else 0.0
    title_text = title or (path.headline() + ("   (model prediction)" if path.predicted else ""))
    title_lines = _fit_lines(title_text, W - 2 * margin, TITLE_PT, max_lines=6)
    title_h = 0.2 * len(title_lines) + 0.16
    H = title_h + header_h + sum(row_h) + 0.15 + key_h + legend_h

    if ax is None:
        fig = plt.figure((W, H))
        ax = fig.add_axes((0, 0, 1, 1))
    else:
        fig = ax.figure
    ax.set_xlim(0, W)
    ax.set_ylim(0, H)
    ax.axis("off")

    col = {p: margin + col_w * (i + 0.5) for i, p in enumerate(places)}
    top = H - title_h
    rows_top = top - header_h
    bottom = rows_top - sum(row_h) - 0.06
    for (place, x), lines in zip(col.items(), place_lines):
        ax.add_patch(FancyBboxPatch((x - col_w / 2 + 0.05, bottom), col_w - 0.1, top - bottom,
                                    boxstyle="round,pad=0.0,rounding_size=0.06", facecolor="#f4f4f4",
                                    edgecolor="#9a9a9a", linewidth=1.0, zorder=0, gid=f"place-{place}"))
        ax.text(x, top - 0.06, "\n".join(lines), ha="center", va="top", fontsize=TEXT_PT + 0.5,
                fontweight="bold", linespacing=1.15, gid=f"header-{place}")

    y_top = rows_top
    for row, (hop, lines, h) in enumerate(zip(hops, notes, row_h)):
        y = y_top - h / 2
        x0 = col[hop.place]
        x1 = col[hops[row + 1].place] if row + 1 < len(hops) else x0
        color = component_color(hop.component)
        style = "--" if hop.plane == "control" else "-"
        if x1 == x0:   # the hop acts inside one box: a short curved arrow in it
            start, end, conn = (x0 - 0.3 * col_w, y), (x0 + 0.3 * col_w, y), "arc3,rad=-0.45"
        else:
            start, end, conn = (x0, y), (x1, y), "arc3,rad=0"
        ax.add_patch(FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=14, color=color,
                                     linewidth=2.0, linestyle=style, connectionstyle=conn, zorder=3,
                                     gid=f"hop-{hop.index}"))
        _badge(ax, start[0] if x1 != x0 else x0, y + (0.0 if x1 != x0 else 0.07), hop.index, color)
        _badge(ax, notes_x + 0.09, y, hop.index, color)
        if hop.stand_in:
            ax.add_patch(FancyBboxPatch((notes_x - 0.04, y_top - h + 0.03), W - margin - notes_x + 0.04, h - 0.06,
                                        boxstyle="round,pad=0.0,rounding_size=0.04", facecolor="none",
                                        edgecolor=STAND_IN_COLOR, linewidth=1.0, linestyle="--", zorder=1,
                                        gid=f"stand-in-{hop.index}"))
        text_top = y + line_h * (len(lines) + packet_rows[row]) / 2
        if packet_rows[row]:
            x = text_x
            for piece, bold, key in _packet_pieces(hop):
                family = "sans-serif" if key == "rewrote" else "monospace"
                weight = "bold" if bold else "normal"
                ax.text(x, text_top, piece, ha="left", va="top", fontsize=TEXT_PT, family=family,
                        fontweight=weight, color=REWRITE_COLOR if (bold or key == "rewrote") else "#1a1a1a",
                        gid=f"packet-{hop.index}-{key}", zorder=4)
                # pieces are measured and spaced explicitly (a leading space would not be measured)
                x += _text_width_in(piece, TEXT_PT, family=family, weight=weight) * 1.05 + \
                    _text_width_in("n", TEXT_PT, family="monospace") * (2.5 if key == "dst" else 1.0)
            text_top -= line_h
        ax.text(text_x, text_top, "\n".join(lines), ha="left", va="top", fontsize=TEXT_PT,
                color=STAND_IN_COLOR if hop.stand_in else "#1a1a1a", linespacing=1.3, gid=f"note-{hop.index}")
        y_top -= h

    if key_h:
        ax.text(margin, legend_h + key_h / 2, "\n".join(key_lines), ha="left", va="center", fontsize=TEXT_PT,
                color="#333333", gid="packet-key", linespacing=1.3)
    handles = [Line2D([0], [0], color=component_color(c), lw=3, label=c.label) for c in used]
    if control:
        handles.append(Line2D([0], [0], color="black", lw=1.5, ls="--", label="control plane (dashed)"))
    if stood:
        handles.append(Line2D([0], [0], color=STAND_IN_COLOR, lw=1.0, ls="--",
                              label="stand-in on this backend (dashed frame)"))
    if handles:
        fig.legend(handles=handles, loc="lower left", bbox_to_anchor=(margin / W, 0.02 / H),
                   ncol=min(legend_cols, len(handles)), fontsize=TEXT_PT, frameon=False,
                   handlelength=1.6, columnspacing=1.2)
    fig.suptitle("\n".join(title_lines), fontsize=TITLE_PT, x=margin / W, y=1 - 0.06 / H, ha="left", va="top")
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

    if ax is None:
        fig = plt.figure((W, H))
        ax = fig.add_axes((0, 0, 1, 1))
    else:
        fig = ax.figure
    ax.set_xlim(0, W)
    ax.set_ylim(0, H)
    ax.axis("off")

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
                       title: str | None = None, n: int | None = None,
                       simulated: bool = False):
    """Bars of the predicted share of each endpoint next to the measured share.

    ``predicted``/``measured``: mappings endpoint -> fraction (or sequences). ``rule_probabilities``
    (endpoint -> the ``--probability`` of its rule) is printed above the bars, so 1/3, 1/2, 1 can be
    seen turning into 1/3 each. ``n``: how many requests were measured, for the legend. ``simulated``:
    the "measured" shares are the sim backend's draws (``Response.predicted``), and the legend says so.
    The default title counts the endpoints in the data (after scaling to 4: "4 endpoints").
    """
    matplotlib, plt = _plt()
    pred = _as_mapping(predicted)
    meas = _as_mapping(measured)
    rules = _as_mapping(rule_probabilities)
    labels = list(OrderedDict.fromkeys([*pred, *meas]))
    if ax is None:
        fig, ax = plt.subplots((min(MAX_WIDTH_IN, max(6.0, 1.6 * len(labels) + 2)), 3.6))
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
    if title is None:
        title = f"Which of the {len(labels)} endpoints answers?" if len(labels) != 1 else "One endpoint answers"
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
        fig, ax = plt.subplots((min(MAX_WIDTH_IN, max(6.0, 1.8 * len(groups) + 2)), 3.6))
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


#: plot_components' two groups of columns: the programs a way passes through (processes that accept
#: or hand on the bytes), then the kernel's hops by whose rules (or routes) it walks.
_PROGRAMS = (Component.CLIENT, Component.KUBECTL, Component.DOCKER_PROXY, Component.API_SERVER, Component.KUBELET,
             Component.RUNTIME, Component.INGRESS_CONTROLLER, Component.APP)
_KERNEL = (Component.ROUTING, Component.DOCKER, Component.KINDNET, Component.KUBE_PROXY, Component.CNI_PORTMAP)


def plot_components(paths: Mapping[str, Path], *, ax=None, title: str | None = None):
    """What each way in passes through: a grid of ways (rows) x columns, first the programs (client,
    kubectl, docker-proxy, API server, ..., app), then the kernel's hops by who wrote the rules it
    walks ("kernel (kube-proxy's rules)", :attr:`Component.label`): kube-proxy and the CNI portmap
    plugin are in no way's path, their rules are.

    A filled square means the column has at least one hop on that way (the number inside is how
    many); dashed outline: the hop is on the control plane. Squares carry ``gid="cell-WAY-COMPONENT"``
    (the component's value, e.g. ``cell-clusterip-kube-proxy``); the group captions
    ``gid="group-programs"`` and ``gid="group-kernel"``.
    """
    matplotlib, plt = _plt()
    from matplotlib.patches import Rectangle
    ways = [getattr(k, "value", str(k)) for k in paths]
    used = {c for p in paths.values() for c in p.components}
    order = list(_PROGRAMS) + list(_KERNEL) + [c for c in Component if c not in _PROGRAMS + _KERNEL]
    comps = [c for c in order if c in used]
    n_prog = sum(1 for c in comps if c not in KERNEL_COMPONENTS)
    if ax is None:
        fig, ax = plt.subplots((min(MAX_WIDTH_IN, 1.05 * len(comps) + 2.6), 0.55 * len(ways) + 2.9))
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
    top = len(ways) - 0.4
    groups = [("programs", "programs (processes on the way)", 0, n_prog),
              ("kernel", "the kernel", n_prog, len(comps))]
    for gid, text, a, b in groups:
        if a >= b:
            continue
        ax.plot([a - 0.4, b - 0.6], [top + 0.15, top + 0.15], color="#555555", lw=1.0, solid_capstyle="butt")
        ax.text((a + b - 1) / 2, top + 0.22, text, ha="center", va="bottom", fontsize=9, color="#333333",
                gid=f"group-{gid}")
    if 0 < n_prog < len(comps):
        ax.axvline(n_prog - 0.5, color="#999999", lw=0.8, ls=":")
    ax.set_xticks(range(len(comps)))
    ax.set_xticklabels([c.label for c in comps], rotation=35, ha="right", fontsize=9)
    ax.set_yticks(range(len(ways)))
    ax.set_yticklabels(list(reversed(ways)), fontsize=9)
    ax.set_xlim(-0.6, len(comps) - 0.4)
    ax.set_ylim(-0.6, len(ways) + 0.3)
    ax.set_aspect("equal")
    for side in ("top", "right", "left", "bottom"):
        ax.spines[side].set_visible(False)
    ax.tick_params(length=0)
    predicted = any(p.predicted for p in paths.values())
    ax.set_title(title or ("What each way in passes through: programs, and kernel rules by who wrote them\n"
                           "(hops per column; dashed = control plane)"
                           + ("  (model prediction)" if predicted else "")), fontsize=10, loc="left")
    fig.tight_layout()
    return fig


# The colour of a way: the component that makes it a way (the program, or whose kernel rules, that
# brings the traffic in).
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


def save(fig, path: str, dpi: int = FIGURE_DPI) -> str:
    """Write a figure as PNG (for the HTML pages and for looking at it outside Jupyter)."""
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    return path


__all__ = ["COMPONENT_COLORS", "OWNER_COLORS", "FIGURE_DPI", "MAX_WIDTH_IN", "MIN_FONT_PT", "component_color", "owner_color", "path_places", "plot_path",
           "chain_graph", "chain_services", "plot_chain_graph", "plot_probabilities", "plot_latency", "plot_components", "save"]
