"""The course's figures: rendered with Agg, checked for structure (boxes, arrows, labels, colours)."""
from __future__ import annotations

import matplotlib

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
        assert comp.value in labels
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


def test_plot_chain_graph_colours_boxes_by_owner():
    fig = plot.plot_chain_graph(ruleset(), "PREROUTING", service=SVC)
    texts = {t.get_gid(): t for ax in fig.axes for t in ax.texts if (t.get_gid() or "").startswith("chain-")}
    nodes, edges = plot.chain_graph(ruleset(), "PREROUTING", service=SVC)
    assert set(texts) == {f"chain-{n}" for n in nodes}
    box = texts["chain-KUBE-SERVICES"].get_bbox_patch()
    assert to_hex(box.get_facecolor()) == plot.owner_color("kube-proxy")
    assert to_hex(texts["chain-CNI-HOSTPORT-DNAT"].get_bbox_patch().get_facecolor()) == plot.owner_color("CNI portmap")
    assert len(_patches(fig, FancyArrowPatch, "edge-")) == len(edges)
    assert "kube-proxy" in _legend_labels(fig)


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


def test_figures_save_as_png(tmp_path):
    out = plot.save(plot.plot_path(ingress_path()), str(tmp_path / "ingress.png"))
    data = open(out, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
