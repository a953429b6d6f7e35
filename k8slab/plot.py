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

The figures live in three modules, all re-exported here (``from k8slab.plot import ...`` is the
course's one import): :mod:`k8slab.figure_style` (colours, sizes, text measuring),
:mod:`k8slab.path_figure` (:func:`plot_path`), :mod:`k8slab.chain_figure` (:func:`plot_chain_graph`
and the chain graph's pure pieces); this module holds the small charts (probabilities, latency,
components) and :func:`save`.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Mapping

from .chain_figure import (_CHAIN_ROLE, _PER_SERVICE, _SERVICE_PORT_NAME, REPEAT_LABEL,  # noqa: F401
                           _mentions, _owner_of, _service_in, chain_graph, chain_services, chain_tree,
                           plot_chain_graph)
from .figure_style import (COMPONENT_COLORS, FIGURE_DPI, MAX_WIDTH_IN, MEASURED_COLOR,  # noqa: F401
                           MIN_FONT_PT, OWNER_COLORS, PREDICTED_COLOR, TEXT_PT, TITLE_PT, _Figures, _fit_lines,
                           _font, _plt, _short, _text_width_in, component_color, owner_color)
from .hops import EPHEMERAL_PORT, KERNEL_COMPONENTS, LOOPBACK_CLIENT_PORT, Component, Path  # noqa: F401
from .path_figure import (_REWROTE_LABEL, REWRITE_COLOR, STAND_IN_COLOR, _badge,  # noqa: F401
                          _packet_pieces, path_places, plot_path)


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
