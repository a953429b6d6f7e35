"""The course's figures: rendered with Agg, checked for structure (boxes, arrows, labels, colours)."""
from __future__ import annotations

import matplotlib
import matplotlib.text

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.colors import to_hex  # noqa: E402
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch, Rectangle  # noqa: E402

from k8slab import plot  # noqa: E402
from k8slab.paths import Component  # noqa: E402

from course_samples import SVC, ingress_path, port_forward_path, ruleset  # noqa: E402


@pytest.fixture(autouse=True)
def _close():
    yield
    plt.close("all")


def _patches(fig, cls, prefix):
    return [p for ax in fig.axes for p in ax.patches if isinstance(p, cls) and (p.get_gid() or "").startswith(prefix)]


def _legend_labels(fig):
    legends = list(fig.legends) + [ax.get_legend() for ax in fig.axes if ax.get_legend()]
    return [t.get_text() for lg in legends for t in lg.get_texts()]


@pytest.mark.parametrize("make", [port_forward_path, ingress_path])
def test_plot_path_draws_one_box_per_place_and_one_arrow_per_hop(make):
    path = make()
    fig = plot.plot_path(path)
    places = plot.path_places(path)
    boxes = _patches(fig, FancyBboxPatch, "place-")
    arrows = _patches(fig, FancyArrowPatch, "hop-")
    assert sorted(b.get_gid() for b in boxes) == sorted(f"place-{p}" for p in places)
    assert [a.get_gid() for a in arrows] == [f"hop-{h.index}" for h in path.hops]
    # each arrow has its component's colour, and control-plane hops are dashed
    for arrow, hop in zip(arrows, path.hops):
        assert to_hex(arrow.get_edgecolor()) == plot.COMPONENT_COLORS[hop.component]
        dashed = arrow.get_linestyle() not in ("-", "solid")
        assert dashed == (hop.plane == "control")
    labels = _legend_labels(fig)
    for comp in dict.fromkeys(path.components):
        assert comp.label in labels
    notes = " ".join(t.get_text() for ax in fig.axes for t in ax.texts if (t.get_gid() or "").startswith("note-"))
    for comp in set(path.components) - {Component.CLIENT}:
        assert comp.label + ":" in notes
    assert "CNI portmap:" not in notes and "kube-proxy:" not in notes
    assert ("control plane (dashed)" in labels) == any(h.plane == "control" for h in path.hops)


def test_plot_path_title_says_when_it_is_a_prediction():
    assert "prediction" in plot.plot_path(port_forward_path())._suptitle.get_text()
    assert "prediction" not in plot.plot_path(ingress_path())._suptitle.get_text()


def test_same_component_same_colour_everywhere():
    assert len(set(plot.COMPONENT_COLORS.values())) == len(plot.COMPONENT_COLORS) == len(Component)
    assert plot.owner_color("kube-proxy") == plot.component_color(Component.KUBE_PROXY)
    assert plot.owner_color("CNI portmap") == plot.component_color("CNI portmap")


def test_chain_graph_follows_jumps_by_depth_and_filters_by_service():
    nodes, edges = plot.chain_graph(ruleset(), "PREROUTING", service=SVC)
    assert nodes["PREROUTING"]["depth"] == 0
    assert nodes["KUBE-SERVICES"]["depth"] == 1
    assert nodes["KUBE-SVC-UUUUUUUUUUUUUUUU"]["depth"] == 2
    seps = [n for n in nodes if n.startswith("KUBE-SEP-")]
    assert sorted(seps) == ["KUBE-SEP-AAAAAAAAAAAAAAAA", "KUBE-SEP-BBBBBBBBBBBBBBBB", "KUBE-SEP-CCCCCCCCCCCCCCCC"]
    assert "KUBE-SVC-DNSDNSDNSDNSDNSD" not in nodes          # another service's chain is left out
    assert "DNAT 10.244.0.5:8080" in nodes and nodes["DNAT 10.244.0.5:8080"]["kind"] == "target"
    labels = {(a, b): l for a, b, l in edges}
    assert labels[("KUBE-SVC-UUUUUUUUUUUUUUUU", "KUBE-SEP-AAAAAAAAAAAAAAAA")] == "p=0.33"
    assert labels[("KUBE-SVC-UUUUUUUUUUUUUUUU", "KUBE-SEP-CCCCCCCCCCCCCCCC")] == ""
    assert nodes["CNI-HOSTPORT-DNAT"]["owner"] == "CNI portmap"
    all_nodes, _ = plot.chain_graph(ruleset(), "PREROUTING")
    assert "KUBE-SVC-DNSDNSDNSDNSDNSD" in all_nodes


def test_chain_tree_unrolls_the_graph_in_rule_order():
    nodes, edges = plot.chain_graph(ruleset(), "PREROUTING", service=SVC)
    tree = plot.chain_tree(nodes, edges, "PREROUTING")
    names = [(depth, name) for depth, name, _label, _rep in tree]
    assert names[:4] == [(0, "PREROUTING"), (1, "KUBE-SERVICES"), (2, "KUBE-SVC-UUUUUUUUUUUUUUUU"),
                         (3, "KUBE-MARK-MASQ")]
    # every chain once expanded; a chain met again is a repeated row, not a second subtree
    first = [name for _d, name, _l, rep in tree if not rep]
    assert sorted(first) == sorted(nodes)
    repeats = [name for _d, name, _l, rep in tree if rep]
    assert repeats and set(repeats) == {"KUBE-MARK-MASQ"}
    labels = {name: label for _d, name, label, _r in tree if label}
    assert labels == {"KUBE-SEP-AAAAAAAAAAAAAAAA": "p=0.33", "KUBE-SEP-BBBBBBBBBBBBBBBB": "p=0.50"}
    # top to bottom: every row is one chain, each child directly under its ancestors
    for (d0, _n0, _l0, _r0), (d1, _n1, _l1, _r1) in zip(tree, tree[1:]):
        assert d1 <= d0 + 1


def test_plot_chain_graph_colours_boxes_by_owner():
    fig = plot.plot_chain_graph(ruleset(), "PREROUTING", service=SVC)
    texts = {t.get_gid(): t for ax in fig.axes for t in ax.texts if (t.get_gid() or "").startswith("chain-")}
    nodes, edges = plot.chain_graph(ruleset(), "PREROUTING", service=SVC)
    assert {g for g in texts if "#" not in g} == {f"chain-{n}" for n in nodes}
    assert {g.split("#")[0] for g in texts} == {f"chain-{n}" for n in nodes}
    box = texts["chain-KUBE-SERVICES"].get_bbox_patch()
    assert to_hex(box.get_facecolor()) == plot.owner_color("kube-proxy")
    assert to_hex(texts["chain-CNI-HOSTPORT-DNAT"].get_bbox_patch().get_facecolor()) == plot.owner_color("CNI portmap")
    tree = plot.chain_tree(nodes, edges, "PREROUTING")
    assert len(_patches(fig, FancyArrowPatch, "edge-")) == len(tree) - 1      # one arrow into each row
    assert "kube-proxy" in _legend_labels(fig)


def test_chain_graph_legend_says_what_a_dashed_box_is():
    """Dashed means "drawn above" in a chain graph (and "control plane" in plot_path): the legend
    says so, and every dashed box is tagged "↑ above" (KUBE-MARK-MASQ too, which jumps nowhere)."""
    from conftest import course_lab
    rules = course_lab().iptables()
    fig = plot.plot_chain_graph(rules, "PREROUTING", service="default/url-shortener-nodeport")
    assert plot.REPEAT_LABEL in _legend_labels(fig)
    texts = [t for ax in fig.axes for t in ax.texts]
    dashed = [t.get_gid() for t in texts if (t.get_gid() or "").startswith("chain-") and t.get_bbox_patch()
              and t.get_bbox_patch().get_linestyle() == "--"]
    notes = [t for t in texts if (t.get_gid() or "").startswith("note-")]
    assert any(g.startswith("chain-KUBE-MARK-MASQ#") for g in dashed)
    assert len(dashed) == sum("↑ above" in t.get_text() for t in notes)
    # nothing drawn twice, nothing dashed: no legend entry for it
    assert plot.REPEAT_LABEL not in _legend_labels(plot.plot_chain_graph(rules, "DOCKER_OUTPUT"))


def test_chain_graph_caps_the_number_of_boxes():
    nodes, _ = plot.chain_graph(ruleset(), "PREROUTING", max_nodes=4)
    assert len(nodes) == 4


def test_plot_probabilities_bars_match_the_numbers():
    pred = {"10.244.0.4:8080": 1 / 3, "10.244.0.5:8080": 1 / 3, "10.244.0.6:8080": 1 / 3}
    meas = {"10.244.0.4:8080": 0.30, "10.244.0.5:8080": 0.37, "10.244.0.6:8080": 0.33}
    rules = {"10.244.0.4:8080": 1 / 3, "10.244.0.5:8080": 0.5, "10.244.0.6:8080": 1.0}
    fig = plot.plot_probabilities(pred, meas, rule_probabilities=rules, n=300)
    ax = fig.axes[0]
    bars = [p for p in ax.patches if isinstance(p, Rectangle)]
    assert len(bars) == 6
    assert sorted(round(b.get_height(), 3) for b in bars) == sorted(round(v, 3) for v in [*pred.values(), *meas.values()])
    texts = [t.get_text() for t in ax.texts]
    assert "rule p = 0.5" in texts and "rule p = 1" in texts
    assert [t.get_text() for t in ax.get_xticklabels()] == list(pred)


def test_plot_probabilities_says_when_the_shares_were_drawn_by_the_model():
    shares = {"10.244.0.4:8080": 0.5, "10.244.0.5:8080": 0.5}
    live = _legend_labels(plot.plot_probabilities(shares, shares, n=300))
    model = _legend_labels(plot.plot_probabilities(shares, shares, n=300, simulated=True))
    assert live == ["predicted (from the rules)", "measured (300 requests)"]
    assert model == ["predicted (from the rules)", "drawn by the model, not measured (300 requests)"]


def test_plot_latency_one_column_per_way_and_says_prediction():
    df = pd.DataFrame({"way": ["port-forward"] * 5 + ["ingress"] * 5,
                       "ms": [5, 6, 7, 8, 9, 1, 2, 3, 4, 5], "predicted": True})
    fig = plot.plot_latency(df)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["port-forward", "ingress"]
    assert len(ax.collections) == 2 and all(len(c.get_offsets()) == 5 for c in ax.collections)
    assert "prediction" in ax.get_title(loc="left")
    assert "7.00 ms" in [t.get_text() for t in ax.texts]      # the median of port-forward
    live = plot.plot_latency(df.assign(predicted=False))
    assert "prediction" not in live.axes[0].get_title(loc="left")


def test_plot_components_marks_who_carries_each_way():
    paths = {"port-forward": port_forward_path(), "ingress": ingress_path()}
    fig = plot.plot_components(paths)
    cells = {p.get_gid() for p in _patches(fig, Rectangle, "cell-")}
    assert "cell-port-forward-API server" in cells
    assert "cell-ingress-API server" not in cells
    assert "cell-ingress-CNI portmap" in cells
    assert len(cells) == sum(len(set(p.components)) for p in paths.values())
    ax = fig.axes[0]
    ticks = [t.get_text() for t in ax.get_xticklabels()]
    # kube-proxy/portmap are not programs on the way: their columns are the kernel's, under "the kernel"
    assert "kernel (CNI portmap's rules)" in ticks and "CNI portmap" not in ticks
    groups = {t.get_gid(): t for t in ax.texts if (t.get_gid() or "").startswith("group-")}
    assert set(groups) == {"group-programs", "group-kernel"}
    assert ticks.index("kernel (CNI portmap's rules)") > max(ticks.index(c.label) for c in
                                                             (Component.API_SERVER, Component.APP))
    title = ax.get_title(loc="left")
    assert "kernel rules by who wrote them" in title and "carries" not in title


def test_figures_save_as_png(tmp_path):
    out = plot.save(plot.plot_path(ingress_path()), str(tmp_path / "ingress.png"))
    data = open(out, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000


# --------------------------------------------------------------------------------------------
# Readable at the notebook's width: what IPython sends to JupyterLab for each course figure

def _png_width(fig) -> int:
    """The width of the PNG the notebook shows (IPython's inline formatter: bbox_inches="tight")."""
    import struct
    from IPython.core.pylabtools import print_figure
    data = print_figure(fig, "png", bbox_inches="tight")
    return struct.unpack(">II", data[16:24])[0]


def _smallest_font(fig) -> float:
    texts = [t for t in fig.findobj(matplotlib.text.Text) if t.get_visible() and t.get_text().strip()]
    return min(t.get_fontsize() for t in texts)


def _course_figures():
    """The figures the notebooks draw, from the course's own cluster on sim."""
    from conftest import course_lab
    lab = course_lab()
    rules = lab.iptables()
    yield "chain graph, whole PREROUTING (01)", plot.plot_chain_graph(rules, "PREROUTING")
    for svc in ("default/url-shortener", "default/url-shortener-nodeport", "ingress-nginx/ingress-nginx-controller"):
        yield f"chain graph for {svc}", plot.plot_chain_graph(rules, "PREROUTING", service=svc)
    paths = {}
    for way in ("port-forward", "clusterip", "nodeport", "hostport", "ingress"):
        paths[way] = lab.path(way)
        yield f"path {way}", plot.plot_path(paths[way])
    yield "components", plot.plot_components(paths)
    shares = {f"10.244.0.{i}:8080": 0.2 for i in range(4, 9)}
    yield "probabilities (5 pods)", plot.plot_probabilities(shares, shares, rule_probabilities=shares, n=300)


def test_course_figures_fit_the_notebook_width_with_readable_text():
    """JupyterLab shrinks an image wider than the notebook (about 970 px at 1400 px with the file
    browser open) and its text with it: every figure must be at most MAX_WIDTH_IN at FIGURE_DPI
    (930 px) once IPython has cropped it, with no text under 8 pt (11 px at 100 dpi)."""
    limit = round(plot.MAX_WIDTH_IN * plot.FIGURE_DPI)
    assert limit <= 940
    assert plot.MIN_FONT_PT * plot.FIGURE_DPI / 72 >= 10.5
    for name, fig in _course_figures():
        assert fig.dpi == plot.FIGURE_DPI, name
        width = _png_width(fig)
        assert 300 < width <= limit, (name, width)
        assert _smallest_font(fig) >= plot.MIN_FONT_PT, (name, _smallest_font(fig))


def test_fit_lines_measures_and_never_exceeds_the_width():
    text = ("docker-proxy listens on 0.0.0.0:8080; for 127.0.0.1 the kernel DNAT is skipped (the DOCKER "
            "rule needs a non-loopback destination), so docker-proxy accepts and opens a new connection")
    lines = plot._fit_lines(text, 3.0, max_lines=10)
    assert " ".join(lines) == text                      # nothing lost when it may take the lines it needs
    assert all(plot._text_width_in(line) <= 3.0 for line in lines) and len(lines) > 2
    short = plot._fit_lines(text, 3.0, max_lines=2)
    assert len(short) == 2 and short[-1].endswith("…")
    pod = plot._fit_lines("pod ingress-nginx-controller-xzj7krrbjj-glr8m", 1.0, max_lines=5)
    assert all(line.endswith("-") for line in pod[1:-1])  # a long name breaks after its dashes


# --------------------------------------------------------------------------------------------
# What the figures say: the packet at each hop, stand-ins, nothing cut, chains named by service

def _texts(fig) -> list[matplotlib.text.Text]:
    return [t for t in fig.findobj(matplotlib.text.Text) if t.get_visible() and t.get_text().strip()]


def _by_gid(fig) -> dict[str, matplotlib.text.Text]:
    return {t.get_gid(): t for t in _texts(fig) if t.get_gid()}


@pytest.fixture(scope="module")
def sim_lab():
    from conftest import course_lab
    return course_lab()


@pytest.mark.parametrize("way", ["port-forward", "clusterip", "nodeport", "hostport", "ingress"])
def test_path_figure_shows_the_packet_after_each_hop_and_the_rewrite(sim_lab, way):
    path = sim_lab.path(way)
    fig = plot.plot_path(path)
    texts = _by_gid(fig)
    for hop in path.hops:
        src, dst = texts[f"packet-{hop.index}-src"], texts[f"packet-{hop.index}-dst"]
        assert (src.get_text(), dst.get_text()) == (hop.src, hop.dst)
        rewritten = {"dst": {"dst"}, "src": {"src"}, "src and dst": {"src", "dst"},
                     "new connection": {"src", "dst"}}.get(hop.rewrote, set())
        for key, t in (("src", src), ("dst", dst)):
            bold = t.get_fontweight() in ("bold", 700)
            assert bold == (key in rewritten), (way, hop.index, key)
            assert (to_hex(t.get_color()) == plot.REWRITE_COLOR) == (key in rewritten)
        assert (f"packet-{hop.index}-rewrote" in texts) == bool(hop.rewrote)
    assert not any(g.startswith("stand-in-") for g in (p.get_gid() or "" for p in fig.axes[0].patches))


def test_port_forward_figure_title_says_the_app_accepts_on_loopback(sim_lab):
    path = sim_lab.path("port-forward")
    title = plot.plot_path(path)._suptitle.get_text().replace("\n", " ")
    pod_ip = path.destination.split(":")[0]
    assert "127.0.0.1:8080" in title and pod_ip not in title
    assert path.hops[-1].place.split(" (")[0] in title      # the pod's name, whole


def test_stand_in_hops_are_framed_and_labelled_on_netns_like_nodes(sim_lab):
    from dataclasses import replace
    from k8slab.paths import build_path
    nodes = [replace(n, runs_as=f"network namespace {n.name} (standing in for the Docker container)")
             for n in sim_lab.backend.nodes()]
    path = build_path("port-forward", cluster_model=sim_lab.backend.model(), node_rules=sim_lab.iptables(),
                      nodes=nodes, backend="netns")
    fig = plot.plot_path(path)
    frames = {p.get_gid() for p in fig.axes[0].patches if (p.get_gid() or "").startswith("stand-in-")}
    assert frames == {f"stand-in-{h.index}" for h in path.hops if h.stand_in} and len(frames) == 4
    for p in fig.axes[0].patches:
        if p.get_gid() in frames:
            assert p.get_linestyle() not in ("-", "solid")
    notes = _by_gid(fig)
    for h in path.hops:
        assert notes[f"note-{h.index}"].get_text().startswith("(stand-in)") == h.stand_in
    assert any("stand-in" in label for label in _legend_labels(fig))


def test_course_figures_cut_nothing(sim_lab):
    """No "…" anywhere: pod names in headers, DNAT targets, chain names and notes are whole."""
    rules = sim_lab.iptables()
    figs = [plot.plot_path(sim_lab.path(w)) for w in ("port-forward", "clusterip", "nodeport", "hostport",
                                                       "ingress")]
    figs += [plot.plot_chain_graph(rules, "PREROUTING", service=s) for s in
             ("default/url-shortener", "default/url-shortener-nodeport", "ingress-nginx/ingress-nginx-controller")]
    figs.append(plot.plot_chain_graph(rules, "PREROUTING"))
    for fig in figs:
        for t in _texts(fig):
            assert "…" not in t.get_text(), t.get_text()
    # every header holds its place's whole name (broken at dashes and spaces, never cut)
    path = sim_lab.path("ingress")
    headers = _by_gid(plot.plot_path(path))
    for place in plot.path_places(path):
        assert headers[f"header-{place}"].get_text().replace("\n", "").replace(" ", "") == place.replace(" ", "")


def test_chain_graph_names_each_service_chain_by_its_service(sim_lab):
    rules = sim_lab.iptables()
    model = sim_lab.backend.model()
    fig = plot.plot_chain_graph(rules, "PREROUTING", service="default/url-shortener")
    texts = _by_gid(fig)
    names = plot.chain_services(rules)
    chains = [g[len("chain-"):] for g in texts if g.startswith("chain-") and "#" not in g]
    svc_chains = [c for c in chains if c.startswith(("KUBE-SVC-", "KUBE-SEP-", "KUBE-EXT-", "KUBE-FW-"))]
    assert svc_chains
    endpoints = set(model.endpoints_of("url-shortener"))
    seps = []
    for c in svc_chains:
        label = texts[f"service-{c}"].get_text().replace("\n", " ")
        assert label.startswith("default/url-shortener:http") and label == names[c]
        if c.startswith("KUBE-SEP-"):
            seps.append(label.split(" → ")[1])
    assert set(seps) == endpoints                        # each endpoint chain named by its endpoint
    # read off the comments, not the hash: the same chain names its service in every graph
    other = _by_gid(plot.plot_chain_graph(rules, "PREROUTING", service="ingress-nginx/ingress-nginx-controller"))
    assert any(t.get_text().startswith("ingress-nginx/ingress-nginx-controller:http") for g, t in other.items()
               if g.startswith("service-KUBE-SVC-"))


def test_chain_services_reads_the_comments():
    rs = ruleset()
    names = plot.chain_services(rs)
    assert names["KUBE-SVC-DNSDNSDNSDNSDNSD"] == "kube-system/kube-dns:dns"
    assert names["KUBE-SEP-AAAAAAAAAAAAAAAA"] == "default/url-shortener:http → 10.244.0.4:8080"
    assert names["KUBE-SEP-DDDDDDDDDDDDDDDD"] == "kube-system/kube-dns:dns → 10.244.0.2:53"
    assert all(not c.startswith(("KUBE-SERVICES", "KUBE-MARK-", "KUBE-POSTROUTING")) for c in names)


def _crossings(fig) -> list[tuple[str, str]]:
    """(edge gid, text) pairs where a drawn connector passes through a text's box (1 px inset)."""
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    renderer = canvas.get_renderer()
    boxes = [(t.get_text(), t.get_window_extent(renderer).expanded(1, 1)) for t in _texts(fig)
             if not t.get_text().isdigit()]
    out = []
    for patch in fig.axes[0].patches:
        gid = patch.get_gid() or ""
        if not gid.startswith(("edge-", "hop-")):
            continue
        paths, _fill = patch._get_path_in_displaycoord()
        for path in paths:
            codes = path.codes if path.codes is not None else [1] * len(path.vertices)
            verts = [v for v, code in zip(path.vertices, codes) if code != path.CLOSEPOLY]
            for a, b in zip(verts[:-1], verts[1:]):
                pts = [a + (b - a) * k for k in np.linspace(0, 1, 25)]
                for text, box in boxes:
                    x0, y0, x1, y1 = box.x0 + 1, box.y0 + 1, box.x1 - 1, box.y1 - 1
                    if any(x0 < x < x1 and y0 < y < y1 for x, y in pts):
                        out.append((gid, text))
    return out


def test_chain_graphs_fit_the_width_and_no_line_crosses_a_label(sim_lab):
    rules = sim_lab.iptables()
    limit = round(plot.MAX_WIDTH_IN * plot.FIGURE_DPI)
    for svc in (None, "default/url-shortener", "default/url-shortener-nodeport",
                "ingress-nginx/ingress-nginx-controller"):
        fig = plot.plot_chain_graph(rules, "PREROUTING", service=svc)
        assert _png_width(fig) <= limit and _smallest_font(fig) >= plot.MIN_FONT_PT
        assert _crossings(fig) == [], svc


def test_chain_graph_puts_a_long_name_under_its_box_clear_of_the_connectors(sim_lab):
    """On a narrow figure the service names go on their own line, still crossed by no connector."""
    fig = plot.plot_chain_graph(sim_lab.iptables(), "PREROUTING", service="ingress-nginx/ingress-nginx-controller",
                                max_width=5.2)
    assert _crossings(fig) == []
    sep = next(t for g, t in _by_gid(fig).items() if g.startswith("service-KUBE-SEP-"))
    assert "10.244." in sep.get_text() and sep.get_va() == "top"


def test_path_figures_have_no_line_through_a_note(sim_lab):
    for way in ("port-forward", "nodeport", "ingress"):
        assert _crossings(plot.plot_path(sim_lab.path(way))) == [], way


def test_probabilities_title_counts_the_endpoints_of_the_data(sim_lab):
    sim_lab.scale("url-shortener", 4)
    eps = sim_lab.backend.model().endpoints_of("url-shortener")
    fig = plot.plot_probabilities({e: 1 / len(eps) for e in eps})
    assert fig.axes[0].get_title(loc="left") == "Which of the 4 endpoints answers?"
    sim_lab.scale("url-shortener", 2)


def test_chain_graph_title_counts_the_endpoints_in_the_rules():
    from conftest import course_lab
    lab = course_lab()
    title = plot.plot_chain_graph(lab.iptables(), "PREROUTING", service="default/url-shortener")._suptitle
    assert title.get_text() == "nat PREROUTING for default/url-shortener (2 endpoints)"
    lab.scale("url-shortener", 4)
    title = plot.plot_chain_graph(lab.iptables(), "PREROUTING", service="default/url-shortener")._suptitle
    assert title.get_text() == "nat PREROUTING for default/url-shortener (4 endpoints)"
