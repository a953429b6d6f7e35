"""Small explorers for the notebooks: pick a Service and see its rules, pick a way in and see its hops.

Every explorer has two faces, and a cell that shows one carries both:

- ``explorer.show()``: displays the interactive ipywidgets view **together with** its static HTML (one
  output, two mime types). JupyterLab shows the live widget while the kernel that made it runs; a
  saved notebook keeps only the static view (``k8slab course`` writes notebooks without widget
  views or widget state), so before the cell runs the learner reads a sentence saying what running
  it gives, and the table it will show. Mark the cell ``# NBVAL_IGNORE_OUTPUT``.
- ``explorer`` as the last line of a cell (its ``_repr_html_``), or ``explorer.html()``: the static
  HTML table of the current selection, so the notebook reads the same under nbval, in the HTML
  export and on GitHub, where widgets do not run.

An explorer made with ``from_lab`` reads the lab once, when its cell runs: it is a snapshot, and it
says so. Its widget has a **Refresh** button (and :meth:`refresh`) that reads the lab again, so the
view follows a ``lab.scale`` or ``lab.apply`` made after the cell ran.

The data function :func:`service_rules` is pure: it takes a Ruleset, not the Lab.
"""
from __future__ import annotations

import html
from typing import Callable, Mapping

from .paths import Path, Way
from .plot import component_color, owner_color

RULE_COLUMNS = ["table", "chain", "position", "owner", "target", "to", "probability", "rule"]
#: the mime type of a widget view; a committed notebook keeps only the static HTML beside it
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"

#: what a cell shows before it runs (and what the HTML export shows): this, then the static table
SERVICE_STATIC_NOTE = ("Static view of the rules, saved with the notebook. <b>Run this cell</b> for the "
                       "interactive explorer: a menu of every Service and a <i>Refresh</i> button.")
PATH_STATIC_NOTE = ("Static view of one way in, saved with the notebook. <b>Run this cell</b> for the "
                    "interactive explorer: one button per way in, its hops and its figure.")
SNAPSHOT_NOTE = ("A snapshot of the lab when this cell ran: after scaling or applying, press "
                 "<i>Refresh</i> (or re-run the cell).")


def _owner(table: str, chain: str) -> str:
    from .plot import _owner_of
    return _owner_of(table, chain)


def service_rules(ruleset, service: str):
    """Every rule that belongs to ``service`` ("namespace/name"), as a DataFrame.

    A rule belongs to it when its comment names the service (kube-proxy writes ``ns/name:port``
    into every rule it makes for a service port), or when it sits in a per-service chain reached
    from such a rule.
    """
    import pandas as pd
    rows = []
    own_chains: set[tuple[str, str]] = set()
    for rule in ruleset.iter_rules():
        comment = rule.comment or ""
        if comment.startswith(service + ":") or comment.startswith(service + " ") or comment == service:
            if rule.jumps_to_chain and rule.target.startswith(("KUBE-SVC-", "KUBE-SVL-", "KUBE-EXT-",
                                                              "KUBE-FW-", "KUBE-SEP-")):
                own_chains.add((rule.table, rule.target))
    for rule in ruleset.iter_rules():
        comment = rule.comment or ""
        named = comment.startswith(service + ":") or comment.startswith(service + " ") or comment == service
        if not (named or (rule.table, rule.chain) in own_chains):
            continue
        to = rule.target_option("--to-destination")
        prob = rule.option("statistic", "--probability")
        body = rule.line
        if body.startswith("["):          # drop an iptables-save -c counter prefix
            body = body.split("] ", 1)[-1]
        rows.append({
            "table": rule.table, "chain": rule.chain, "position": rule.position,
            "owner": _owner(rule.table, rule.chain), "target": rule.target or "",
            "to": to.value if to is not None else "",
            "probability": float(prob.value) if prob is not None and prob.value else None,
            "rule": body,
        })
    return pd.DataFrame(_walk_order(rows), columns=RULE_COLUMNS)


def _walk_order(rows: list[dict]) -> list[dict]:
    """Rows in the order a packet meets them: breadth first from the shared chains that match the
    Service (KUBE-SERVICES first, then KUBE-NODEPORTS, ...), each chain's jumps in rule order, so
    KUBE-SVC comes before the KUBE-SEP chains, and those in the order KUBE-SVC picks them; inside a
    chain, by position; the nat table first."""
    chains: dict[tuple[str, str], list[dict]] = {}
    for r in rows:
        chains.setdefault((r["table"], r["chain"]), []).append(r)
    for rs in chains.values():
        rs.sort(key=lambda r: r["position"])
    per_service = ("KUBE-SVC-", "KUBE-SVL-", "KUBE-EXT-", "KUBE-FW-", "KUBE-SEP-")
    starts = sorted((k for k in chains if not k[1].startswith(per_service)),
                    key=lambda k: (k[0] != "nat", k[1] != "KUBE-SERVICES", k[1]))
    order: list[tuple[str, str]] = []
    queue = list(starts)
    while queue:
        key = queue.pop(0)
        if key in order:
            continue
        order.append(key)
        queue.extend((key[0], r["target"]) for r in chains[key] if (key[0], r["target"]) in chains)
    order += sorted(k for k in chains if k not in order)       # a chain nothing here jumps to
    return [r for key in order for r in chains[key]]


def _rule_spec(line: str, chain: str) -> str:
    """The rule without its ``-A CHAIN`` head (the chain has its own column)."""
    head = f"-A {chain} "
    return line[len(head):] if line.startswith(head) else line


def _blank(v) -> bool:
    return v is None or (isinstance(v, float) and v != v) or str(v) == ""


# Inline styles only (no JavaScript, no classes that need a stylesheet): the same table reads the
# same in a widget, in JupyterLab's sanitized HTML output (an untrusted notebook: the sanitizer keeps
# only plain values, so no var(), no overflow-wrap:anywhere), in nbconvert's page and on GitHub.
# Each cell sets its own alignment and line height and the table its layout, because the containers
# override them: JupyterLab right-aligns rendered table cells and fixes the table layout, and a
# widget's HTML box has a 28 px line height.
_TABLE = ("border-collapse:collapse;table-layout:auto;font-size:12px;line-height:1.35;margin:4px 0;"
          "text-align:left;width:100%")
_CELL = "text-align:left;vertical-align:top;padding:2px 8px 2px 4px;line-height:1.35;white-space:nowrap"
_WRAP = ("text-align:left;vertical-align:top;padding:2px 8px 2px 4px;line-height:1.35;white-space:normal;"
         "overflow-wrap:break-word")
_GROW = ";width:100%"
_MONO = "font-family:monospace;font-size:11.5px;"


def _table_html(df, *, caption: str = "", color_by: str | None = None, colors: Callable[[str], str] | None = None,
                max_rows: int = 60, wrap: tuple[str, ...] = (), grow: str | None = None,
                mono: tuple[str, ...] = (), css_class: Mapping[str, str] | None = None,
                min_width: Mapping[str, str] | None = None) -> str:
    """A plain HTML table, left-aligned at a normal line height. ``wrap``: the columns that wrap (the
    others stay on one line); ``grow``: the one that takes the remaining width; ``min_width``: a
    wrapping column's least width (CSS); ``mono``: columns in a monospace font; ``css_class``: a
    class per column (a hook for tests and for learners' own CSS)."""
    cols = list(df.columns)
    css_class = dict(css_class or {})
    min_width = dict(min_width or {})
    parts = [f'<table style="{_TABLE}">']
    if caption:
        parts.append(f'<caption style="text-align:left;font-weight:bold;padding:2px 0">{html.escape(caption)}</caption>')
    parts.append("<tr>" + "".join(f'<th style="{_CELL};border-bottom:1px solid #999;font-weight:bold">'
                                  f"{html.escape(str(c))}</th>" for c in cols) + "</tr>")
    for _, row in df.head(max_rows).iterrows():
        style = ""
        if color_by and colors is not None:
            style = f' style="border-left:6px solid {colors(str(row[color_by]))}"'
        cells = []
        for c in cols:
            v = row[c]
            text = "" if _blank(v) else str(v)
            base = (_WRAP if c in wrap else _CELL) + (_GROW if c == grow else "")
            if c in min_width:
                base += f";min-width:{min_width[c]}"
            font = _MONO if c in mono else ""
            klass = f' class="{css_class[c]}"' if c in css_class else ""
            cells.append(f'<td{klass} style="{font}{base}">{html.escape(text)}</td>')
        parts.append(f"<tr{style}>" + "".join(cells) + "</tr>")
    if len(df) > max_rows:
        parts.append(f'<tr><td colspan="{len(cols)}" style="{_CELL}">… {len(df) - max_rows} more rows</td></tr>')
    parts.append("</table>")
    return "".join(parts)


def _note(text: str) -> str:
    return f'<p style="margin:2px 0 4px 0;font-size:12px;line-height:1.4;text-align:left">{text}</p>'


def _display_with_static(widget, static_html: str, plain: str) -> None:
    """Display ``widget`` with its static HTML as the fallback in the same output."""
    from IPython.display import HTML, display
    bundle = widget._repr_mimebundle_() if hasattr(widget, "_repr_mimebundle_") else None
    if not bundle or WIDGET_MIME not in bundle:       # no front-end to talk to: the static view only
        display(HTML(static_html))
        return
    display({WIDGET_MIME: bundle[WIDGET_MIME], "text/html": static_html, "text/plain": plain}, raw=True)


# --------------------------------------------------------------------------------------------
# DataFrames as JupyterLab shows them

_FRAME_TABLE = 'style="table-layout:auto;border-collapse:collapse;line-height:1.35"'
_FRAME_TEXT = ('style="text-align:left;vertical-align:top;white-space:normal;overflow-wrap:break-word;'
               'line-height:1.35"')
_FRAME_NUMBER = 'style="text-align:right;vertical-align:top;line-height:1.35"'


def frame_html(df) -> str | None:
    """pandas' own HTML for ``df`` (its display options decide rows, columns and widths), with inline
    styles that JupyterLab keeps even in an untrusted notebook: text columns left-aligned and
    wrapping at a normal line height, numbers right-aligned, the table laid out by its content.
    JupyterLab right-aligns every cell and fixes the layout, which puts the end of a long rule
    (its ``--to-destination``) out of sight."""
    import re
    from pandas.api.types import is_bool_dtype, is_numeric_dtype
    html = df._repr_html_()
    if not html:
        return None
    text = [not is_numeric_dtype(t) or is_bool_dtype(t) for t in df.dtypes]
    html = html.replace('<table border="1" class="dataframe">', f'<table border="1" class="dataframe" {_FRAME_TABLE}>', 1)
    html = html.replace('<tr style="text-align: right;">', '<tr style="text-align: left;">')

    def cell(match, is_text: bool) -> str:
        content = match.group(1)
        if not is_text:
            return f"<td {_FRAME_NUMBER}>{content}</td>"
        # A token longer than a line (a container id in a CNI comment) would set the column's
        # minimum width and push the table past the notebook's edge: let that cell break anywhere.
        if max((len(w) for w in content.split()), default=0) > 40:
            return f"<td {_FRAME_TEXT[:-1]};word-break:break-all\">{content}</td>"
        return f"<td {_FRAME_TEXT}>{content}</td>"

    def row(match):
        cells = match.group(0).count("<td>")
        kinds = iter(text if cells == len(text) else [True] * cells)   # a "..." column: all as text
        return re.sub(r"<td>(.*?)</td>", lambda m: cell(m, next(kinds)), match.group(0), flags=re.S)

    head, sep, body = html.partition("<tbody>")
    if not sep:
        return html
    head = head.replace("<th>", '<th style="text-align:left;vertical-align:bottom">')
    return head + sep + re.sub(r"<tr>.*?</tr>", row, body, flags=re.S)


def readable_tables(ipython=None):
    """Show every DataFrame in this notebook with :func:`frame_html` (the set-up cells call it).
    Returns the formatter, or None outside IPython."""
    import pandas as pd
    if ipython is None:
        try:
            from IPython import get_ipython
            ipython = get_ipython()
        except ImportError:
            return None
    if ipython is None:
        return None
    formatter = ipython.display_formatter.formatters["text/html"]
    formatter.for_type(pd.DataFrame, frame_html)
    return formatter


class ServiceExplorer:
    """Pick a Service; see the rules kube-proxy (and the CNI plugin) wrote for it.

    ``ServiceExplorer(ruleset, services)``: ``services`` is a list of "namespace/name" strings.
    ``ServiceExplorer.from_lab(lab)`` reads both from the lab (and :meth:`refresh` reads them again).
    """

    def __init__(self, ruleset, services: list[str], selected: str | None = None):
        if not services:
            raise ValueError("ServiceExplorer needs at least one service (is the app deployed?)")
        self.ruleset = ruleset
        self.services = list(services)
        self.selected = selected if selected in self.services else self.services[0]
        self._widget = None
        self._lab = None
        self._node = None
        self._syncing = False

    @staticmethod
    def _read(lab, node):
        svcs = lab.get("services")
        names = [f"{ns}/{name}" for ns, name in zip(svcs["namespace"], svcs["name"])]
        return lab.iptables(node), names

    @classmethod
    def from_lab(cls, lab, selected: str | None = "default/url-shortener", node: str | None = None):
        ruleset, names = cls._read(lab, node)
        explorer = cls(ruleset, names, selected)
        explorer._lab, explorer._node = lab, node
        return explorer

    @property
    def snapshot(self) -> bool:
        """True when the explorer was read from a lab (and may fall behind it until refreshed)."""
        return self._lab is not None

    def refresh(self) -> "ServiceExplorer":
        """Read the Services and the node's rules from the lab again (keeps the selection if it exists)."""
        if self._lab is None:
            raise ValueError("this explorer was built from a Ruleset, not from a lab: nothing to refresh")
        ruleset, services = self._read(self._lab, self._node)
        selected = self.selected if self.selected in services else services[0]
        self.ruleset, self.services = ruleset, services
        if self._widget is not None:
            pick = self._widget.children[0]
            self._syncing = True          # new options reset the dropdown: keep the learner's pick
            try:
                pick.options = services
                pick.value = selected
            finally:
                self._syncing = False
        self.selected = selected
        if self._widget is not None:
            self._widget.children[2].value = self.html()
        return self

    def frame(self, service: str | None = None):
        return service_rules(self.ruleset, service or self.selected)

    def html(self, service: str | None = None) -> str:
        service = service or self.selected
        df = self.frame(service)
        if df.empty:
            return (f"<p><b>{html.escape(service)}</b>: no iptables rule names this Service "
                    "(it has no ClusterIP port, or kube-proxy has not synced yet).</p>")
        tables = sorted(set(df["table"]))
        show = df.assign(**{"#": df["position"],
                            "rule-specification": [_rule_spec(r, c) for r, c in zip(df["rule"], df["chain"])]})
        cols = (["table"] if len(tables) > 1 else []) + ["chain", "#", "owner", "target", "rule-specification"]
        where = f"{tables[0]} table" if len(tables) == 1 else "tables " + ", ".join(tables)
        caption = f"{service}: {len(df)} rules ({where})"
        return _table_html(show[cols], caption=caption, color_by="owner", colors=owner_color,
                           wrap=("rule-specification",), grow="rule-specification",
                           mono=("chain", "target", "rule-specification"),
                           css_class={"rule-specification": "k8slab-rule"})

    def static_html(self) -> str:
        """What the cell shows where no kernel runs: a sentence, then the table of the selection."""
        return _note(SERVICE_STATIC_NOTE) + self.html()

    def _repr_html_(self) -> str:
        return self.html()

    def __repr__(self) -> str:
        return f"ServiceExplorer({self.selected!r}, {len(self.frame())} rules)"

    @property
    def widget(self):
        """The interactive view: a dropdown (and Refresh, from a lab) above an HTML table."""
        if self._widget is None:
            import ipywidgets as w
            pick = w.Dropdown(options=self.services, value=self.selected, description="Service",
                              layout=w.Layout(width="max-content"))
            out = w.HTML(self.html())

            def changed(change):
                if not self._syncing and change["new"] is not None and change["new"] != self.selected:
                    self.selected = change["new"]
                    out.value = self.html()
            pick.observe(changed, names="value")
            bar_items = []
            if self.snapshot:
                button = w.Button(description="Refresh", icon="refresh",
                                  tooltip="read the Services and the node's rules from the lab again")
                button.on_click(lambda _b: self.refresh())
                bar_items = [button, w.HTML(_note(SNAPSHOT_NOTE))]
            self._widget = w.VBox([pick, w.HBox(bar_items), out])
        return self._widget

    def show(self):
        _display_with_static(self.widget, self.static_html(), repr(self))


class PathExplorer:
    """Pick a way in (port-forward, clusterip, nodeport, hostport, ingress); see its hops and figure.

    ``PathExplorer(paths)`` with ``paths`` a mapping way -> :class:`Path`;
    ``PathExplorer.from_lab(lab)`` builds every way the lab can show (and :meth:`refresh` again).
    """

    def __init__(self, paths: Mapping[str, Path], selected: str | None = None):
        if not paths:
            raise ValueError("PathExplorer needs at least one path")
        self.paths = {getattr(k, "value", str(k)): v for k, v in paths.items()}
        self.selected = selected if selected in self.paths else next(iter(self.paths))
        self._widget = None
        self._lab = None
        self._ways: tuple[str, ...] = ()

    @classmethod
    def from_lab(cls, lab, ways=tuple(w.value for w in Way), selected: str | None = None):
        explorer = cls({way: lab.path(way) for way in ways}, selected)
        explorer._lab, explorer._ways = lab, tuple(getattr(w, "value", str(w)) for w in ways)
        return explorer

    @property
    def snapshot(self) -> bool:
        return self._lab is not None

    def refresh(self) -> "PathExplorer":
        """Build every way again from the lab's current rules and objects."""
        if self._lab is None:
            raise ValueError("this explorer was built from paths, not from a lab: nothing to refresh")
        self.paths = {way: self._lab.path(way) for way in self._ways}
        if self._widget is not None:
            self._update()
        return self

    def frame(self, way: str | None = None):
        return self.paths[way or self.selected].frame()

    def caption(self, way: str | None = None) -> str:
        way = way or self.selected
        path = self.paths[way]
        note = " (a model's prediction)" if path.predicted else ""
        return path.headline() + note

    def html(self, way: str | None = None) -> str:
        way = way or self.selected
        path = self.paths[way]
        table = _table_html(self.frame(way), caption=self.caption(way), color_by="component",
                            colors=component_color, wrap=("component", "place", "action", "packet after this hop"), grow="action",
                            min_width={"place": "15em"}, mono=("packet after this hop",),
                            css_class={"action": "k8slab-action"})
        notes = [n for n in path.notes if not n.startswith("predicted by a model")]
        if notes:
            table += ('<ul style="margin:2px 0 4px 0;padding-left:18px;font-size:12px;line-height:1.4;'
                      'text-align:left">' + "".join(f"<li>{html.escape(n)}</li>" for n in notes) + "</ul>")
        return table

    def static_html(self) -> str:
        return _note(PATH_STATIC_NOTE) + self.html()

    def _repr_html_(self) -> str:
        return self.html()

    def __repr__(self) -> str:
        return f"PathExplorer({self.selected!r}, {len(self.paths[self.selected].hops)} hops)"

    def _update(self):
        pick, _bar, table, _figure = self._widget.children
        table.value = self.html()
        self._draw()

    def _draw(self):
        from IPython.display import display
        from .plot import plot_path
        figure = self._widget.children[3]
        figure.clear_output(wait=True)
        with figure:
            display(plot_path(self.paths[self.selected]))

    @property
    def widget(self):
        """Toggle buttons for the ways (and Refresh, from a lab), the hop table and the figure below."""
        if self._widget is None:
            import ipywidgets as w
            pick = w.ToggleButtons(options=list(self.paths), value=self.selected, description="Way in")
            table = w.HTML(self.html())
            figure = w.Output()

            def changed(change):
                if change["new"] is not None:
                    self.selected = change["new"]
                    self._update()
            pick.observe(changed, names="value")
            bar_items = []
            if self.snapshot:
                button = w.Button(description="Refresh", icon="refresh",
                                  tooltip="build every way again from the lab's current rules")
                button.on_click(lambda _b: self.refresh())
                bar_items = [button, w.HTML(_note(SNAPSHOT_NOTE))]
            self._widget = w.VBox([pick, w.HBox(bar_items), table, figure])
            self._draw()
        return self._widget

    def show(self):
        _display_with_static(self.widget, self.static_html(), repr(self))


__all__ = ["service_rules", "ServiceExplorer", "PathExplorer", "RULE_COLUMNS", "WIDGET_MIME", "frame_html",
           "readable_tables"]
