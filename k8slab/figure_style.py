"""The course's figure style, shared by every figure module: one colour per component
(:data:`COMPONENT_COLORS`) and per chain owner (:data:`OWNER_COLORS`), the figure maker (:func:`_plt`:
figures returned, never auto-shown), and the sizes every figure keeps (:data:`FIGURE_DPI`,
:data:`MAX_WIDTH_IN`, :data:`MIN_FONT_PT`) with the text measuring and wrapping that fits them
(:func:`_text_width_in`, :func:`_fit_lines`). Only matplotlib is needed. :mod:`k8slab.plot` re-exports
all of it; the figures live in :mod:`k8slab.path_figure`, :mod:`k8slab.chain_figure` and
:mod:`k8slab.plot` (the small charts).
"""
from __future__ import annotations

from functools import lru_cache

from .hops import Component

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

    def canvas(self, ax, width: float, height: float):
        """(fig, ax) for a drawing laid out in inches: a new ``width`` x ``height`` figure, or the
        caller's ``ax``; axes from (0, 0) to (width, height), no frame or ticks."""
        if ax is None:
            fig = self.figure((width, height))
            ax = fig.add_axes((0, 0, 1, 1))
        else:
            fig = ax.figure
        ax.set_xlim(0, width)
        ax.set_ylim(0, height)
        ax.axis("off")
        return fig, ax


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
