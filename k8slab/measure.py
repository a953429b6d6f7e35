"""kube-proxy's iptables mode against its nftables mode as the number of Services grows.

For N Services (ClusterIP, one TCP port, ``endpoints`` endpoints each), rendered by the same model
kube-proxy's modes are rendered by everywhere else in k8slab:

- **rules**: how many rules each mode writes (iptables: ``-A`` lines of kube-proxy's restore input;
  nftables: rules of ``table ip kube-proxy``, plus the set/map elements that replace most of them);
- **trace (model)**: the tracer's time for the first packet to the *last* Service (iptables mode
  walks KUBE-SERVICES down to it; nftables mode looks it up in one verdict map);
- **kernel connect (netns, root)**: the real first-packet cost: a client namespace opens ``samples``
  TCP connections to that Service's ClusterIP through a node namespace holding the rules, to a
  listener in a pod namespace; the median ``connect()`` time (SYN to SYN-ACK: the SYN crosses the
  node's prerouting nat, where kube-proxy's rules decide) is reported.

``compare(sizes, backend="netns"|"sim")`` returns a DataFrame (one row per size and mode); on sim
(or without root) the kernel column is empty and ``kernel`` says what would be measured, so a
notebook shows the rule counts and the model's times everywhere and the kernel's where it can.
benchmarks/nftables.py prints it.
"""
from __future__ import annotations

import ipaddress
import os
import statistics
import sys
import time
from dataclasses import dataclass

SERVICE_CIDR = "10.96.0.0/12"
POD_IPS = ("10.244.1.2", "10.244.1.3", "10.244.1.4")   # the endpoints every Service shares
NODE_IP = "192.168.50.1"
CLIENT_IP = "192.168.50.2"
WOULD_MEASURE = ("median connect() time of a new TCP connection to the last Service's ClusterIP, "
                 "through a node namespace holding kube-proxy's rules (needs root and the netns tools)")


#: The kernel's median connect() time (µs) measured by ``compare(backend="netns")`` (benchmarks/nftables.py)
#: on the project's test machine: Debian 12 userland, Linux 6.18, 2 cores, 2026-12-03, 200 connections per point.
#: Shown where this run cannot measure the kernel (sim, kind), always labelled as a recording.
RECORDED_KERNEL_US = {
    "where": "recorded: netns, Linux 6.18, 2 cores, 2026-12-03 (benchmarks/nftables.py)",
    "iptables": {10: 24.0, 1000: 32.6, 10000: 154.3},
    "nftables": {10: 23.6, 1000: 21.5, 10000: 22.7},
}


def recorded_kernel_frame():
    """:data:`RECORDED_KERNEL_US` as rows (services, mode, kernel_connect_us, where)."""
    import pandas as pd
    return pd.DataFrame([{"services": n, "mode": mode, "kernel_connect_us": us, "where": RECORDED_KERNEL_US["where"]}
                         for mode in ("iptables", "nftables") for n, us in RECORDED_KERNEL_US[mode].items()])


def services(n: int, endpoints: int = 3):
    """``n`` ClusterIP Services ``svc-0 .. svc-(n-1)`` (port 80 -> 8080) and their EndpointSlices,
    each with ``endpoints`` endpoints (the same pod IPs for all: rules do not care whose they are)."""
    from .model.objects import Endpoint, EndpointPort, EndpointSlice, Service, ServicePort
    base = int(ipaddress.ip_network(SERVICE_CIDR).network_address) + 10
    pods = [POD_IPS[i % len(POD_IPS)] if i < len(POD_IPS) else f"10.244.{2 + i // 250}.{2 + i % 250}"
            for i in range(endpoints)]
    svcs, slices = [], []
    for i in range(n):
        name = f"svc-{i}"
        svcs.append(Service(name, "default", cluster_ip=str(ipaddress.ip_address(base + i)),
                            ports=[ServicePort(80, "TCP", "http", 8080)], selector={"app": name}))
        slices.append(EndpointSlice(f"{name}-abcde", "default", name,
                                    [Endpoint([ip], node_name="node") for ip in pods],
                                    [EndpointPort(8080, "http", "TCP")]))
    return svcs, slices


def settings():
    from .model.kubeproxy_nft import NftProxierSettings
    from .model.settings import ProxierSettings
    base = ProxierSettings(node_name="node", node_ip=NODE_IP, cluster_cidr="10.244.0.0/16",
                           node_port_addresses=(f"{NODE_IP}/32",))
    return base, NftProxierSettings(base=base, service_cidrs=(SERVICE_CIDR,))


def render(n: int, endpoints: int = 3) -> dict[str, str]:
    """kube-proxy's rules for ``n`` Services in both modes: {"iptables": restore text with the
    built-in chains' jumps, "nftables": the nft -f transaction}."""
    from .model.kubeproxy import render_kube_proxy
    from .model.kubeproxy_nft import render_kube_proxy_nft
    svcs, slices = services(n, endpoints)
    base, nft = settings()
    return {"iptables": render_kube_proxy(svcs, slices, base, form="save"),
            "nftables": render_kube_proxy_nft(svcs, slices, nft)}


def rule_counts(texts: dict[str, str]) -> dict[str, dict[str, int]]:
    ipt = sum(1 for ln in texts["iptables"].splitlines() if ln.startswith("-A "))
    lines = texts["nftables"].splitlines()
    return {"iptables": {"rules": ipt, "elements": 0},
            "nftables": {"rules": sum(1 for ln in lines if ln.startswith("add rule ")),
                         "elements": sum(1 for ln in lines if ln.startswith("add element "))}}


def trace_times(texts: dict[str, str], n: int, repeat: int = 5) -> dict[str, float]:
    """Seconds per trace (best of ``repeat``, after a first trace that builds the caches) of a pod's
    first packet to the last Service, in each mode."""
    from .netfilter.iptables.parser import parse
    from .netfilter.nft import parse_nft, trace_nft
    from .netfilter.nft.listing import loadable
    from .netfilter.tracer import Packet, trace
    dst = str(ipaddress.ip_address(int(ipaddress.ip_network(SERVICE_CIDR).network_address) + 10 + n - 1))
    pkt = Packet(src="10.244.0.5", dst=dst, dport=80)
    rulesets = {"iptables": (parse(texts["iptables"]), trace),
                "nftables": (parse_nft(loadable(texts["nftables"])), trace_nft)}
    out = {}
    for mode, (rs, fn) in rulesets.items():
        fn(rs, pkt, [NODE_IP])
        best = float("inf")
        for _ in range(repeat):
            t0 = time.perf_counter()
            fn(rs, pkt, [NODE_IP])
            best = min(best, time.perf_counter() - t0)
        out[mode] = best
    return out


# --- the kernel -----------------------------------------------------------------------------------

CONNECT = r"""
import socket, sys, time, statistics
dst, n = sys.argv[1], int(sys.argv[2])
times = []
for _ in range(n):
    s = socket.socket(); s.settimeout(2)
    t0 = time.perf_counter(); s.connect((dst, 80)); times.append(time.perf_counter() - t0)
    s.close()
print(statistics.median(times))
"""
SERVE = r"""
import socket, threading
def serve(ip):
    l = socket.socket(); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    l.bind((ip, 8080)); l.listen(512)
    while True:
        c, _ = l.accept(); c.close()
import sys
for ip in sys.argv[1:]:
    threading.Thread(target=serve, args=(ip,), daemon=True).start()
print("ready", flush=True)
threading.Event().wait()
"""


def kernel_available() -> tuple[bool, str]:
    from . import runner
    if sys.platform != "linux" or os.geteuid() != 0:
        return False, "needs root on Linux (network namespaces)"
    missing = [t for t in ("ip", "iptables-restore", "nft") if runner.which(t) is None]
    return (not missing, f"missing {', '.join(missing)}: apt-get install -y iproute2 iptables nftables"
            if missing else "root with ip, iptables-restore and nft")


@dataclass
class _Netns:
    node: str
    client: str
    pod: str


def _setup(tag: str) -> _Netns:
    from . import runner
    ns = _Netns(f"k8s-m{tag}-n", f"k8s-m{tag}-c", f"k8s-m{tag}-p")
    run = lambda *a, **kw: runner.run(list(a), timeout=30, check=True, **kw)
    for name in (ns.node, ns.client, ns.pod):
        run("ip", "netns", "add", name)
    N, C, P = (["ip", "netns", "exec", x] for x in (ns.node, ns.client, ns.pod))
    run("ip", "link", "add", "k8s-c", "netns", ns.client, "type", "veth", "peer", "name", "k8s-nc", "netns", ns.node)
    run("ip", "link", "add", "k8s-p", "netns", ns.pod, "type", "veth", "peer", "name", "k8s-np", "netns", ns.node)
    for cmd in (N + ["ip", "addr", "add", f"{NODE_IP}/24", "dev", "k8s-nc"],
                N + ["ip", "addr", "add", "10.244.1.1/24", "dev", "k8s-np"],
                N + ["ip", "link", "set", "k8s-nc", "up"], N + ["ip", "link", "set", "k8s-np", "up"],
                N + ["ip", "link", "set", "lo", "up"], N + ["sysctl", "-qw", "net.ipv4.ip_forward=1"],
                C + ["ip", "addr", "add", f"{CLIENT_IP}/24", "dev", "k8s-c"], C + ["ip", "link", "set", "k8s-c", "up"],
                C + ["ip", "link", "set", "lo", "up"], C + ["ip", "route", "add", "default", "via", NODE_IP],
                P + ["ip", "link", "set", "k8s-p", "up"], P + ["ip", "link", "set", "lo", "up"]):
        run(*cmd)
    for ip in POD_IPS:
        run(*P, "ip", "addr", "add", f"{ip}/24", "dev", "k8s-p")
    run(*P, "ip", "route", "add", "default", "via", "10.244.1.1")
    return ns


def _teardown(ns: _Netns) -> None:
    from . import runner
    for name in (ns.client, ns.pod, ns.node):
        runner.run(["ip", "netns", "del", name], timeout=30, check=False)


def kernel_connect_times(texts: dict[str, str], n: int, samples: int = 200) -> dict[str, float]:
    """Median seconds of ``connect()`` to the last Service's ClusterIP, per mode, on the real kernel."""
    from . import runner
    from .netfilter.nft.listing import loadable
    dst = str(ipaddress.ip_address(int(ipaddress.ip_network(SERVICE_CIDR).network_address) + 10 + n - 1))
    out = {}
    for mode in ("iptables", "nftables"):
        ns = _setup(f"{os.getpid() % 100000}{mode[0]}")
        server = None
        try:
            N = ["ip", "netns", "exec", ns.node]
            if mode == "iptables":
                runner.run(N + ["iptables-restore"], input=texts["iptables"], timeout=300, check=True)
            else:
                runner.run(N + ["nft", "-f", "-"], input=loadable(texts["nftables"]), timeout=300, check=True)
            server = runner.spawn(["ip", "netns", "exec", ns.pod, sys.executable, "-c", SERVE, *POD_IPS],
                                  stdout=-1)
            server.stdout.readline()
            res = runner.run(["ip", "netns", "exec", ns.client, sys.executable, "-c", CONNECT, dst, str(samples)],
                             timeout=300, check=True)
            out[mode] = float(res.stdout.strip())
        finally:
            if server is not None:
                runner.stop(server)
            _teardown(ns)
    return out


def compare(sizes=(10, 1000, 10000), backend: str = "sim", endpoints: int = 3, samples: int = 200):
    """One row per (services, mode): rules, elements, trace_ms (model), kernel_connect_us (netns, or
    None with ``kernel`` saying what it would measure). ``backend="netns"`` measures the kernel (root);
    ``"sim"`` (or a Lab's ``backend_name``) gives the counts and the model's times only."""
    import pandas as pd
    measure_kernel = backend == "netns"
    ok, why = kernel_available() if measure_kernel else (False, "sim backend: a model, no kernel")
    rows = []
    for n in sizes:
        texts = render(n, endpoints)
        counts = rule_counts(texts)
        traces = trace_times(texts, n)
        kernel = kernel_connect_times(texts, n, samples) if measure_kernel and ok else {}
        for mode in ("iptables", "nftables"):
            k = kernel.get(mode)
            rows.append({"services": n, "mode": mode, "rules": counts[mode]["rules"],
                         "elements": counts[mode]["elements"], "trace_ms": traces[mode] * 1e3,
                         "kernel_connect_us": None if k is None else k * 1e6,
                         "kernel": "measured" if k is not None else f"would measure the {WOULD_MEASURE} ({why})"})
    df = pd.DataFrame(rows)
    df.attrs["predicted"] = not (measure_kernel and ok)
    return df
