"""The path figure (:func:`plot_path`): one way in as a sequence diagram. Places (the host, a node,
a pod's network namespace) are tall boxes; each hop is a numbered arrow coloured by the component
that owns it, with the packet after it and its note on the same row; control-plane hops are dashed,
stand-in hops framed. Re-exported by :mod:`k8slab.plot`; colours and sizes from
:mod:`k8slab.figure_style`.
"""
from __future__ import annotations

from collections import OrderedDict

from .figure_style import MAX_WIDTH_IN, TEXT_PT, TITLE_PT, _fit_lines, _plt, _text_width_in, component_color
from .hops import EPHEMERAL_PORT, LOOPBACK_CLIENT_PORT, Component, Path


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

    fig, ax = plt.canvas(ax, W, H)

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
