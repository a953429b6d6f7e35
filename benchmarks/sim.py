"""How fast the sim backend is. Prints two figures (no assertions; the targets are in the comments).

1. The course on the sim: up + deploy_app + install_ingress_controller + the Ingress + all five
   paths (target: under 1 s).
2. 1,000 more ClusterIP Services (each selecting the app's pods): render the node's iptables-save,
   parse it, and trace a request to each of 100 of them, then predict 100 requests (target: under 2 s).

    python benchmarks/sim.py [--services 1000] [--repeat 3]
"""
from __future__ import annotations

import argparse
import time


def course(seed: int = 0) -> float:
    from k8slab import Lab
    t0 = time.perf_counter()
    lab = Lab(backend="sim", quiet=True, seed=seed)
    lab.up()
    lab.deploy_app()
    lab.install_ingress_controller()
    lab.apply("kind/manifests/ingress.yaml")
    lab.apply("kind/manifests/app-nodeport.yaml")
    for way in ("port-forward", "clusterip", "nodeport", "hostport", "ingress"):
        lab.path(way)
    return time.perf_counter() - t0


def many_services(n: int, traced: int = 100) -> tuple[float, float, float, int]:
    from k8slab import Lab
    lab = Lab(backend="sim", quiet=True)
    lab.up()
    lab.deploy_app()
    services = [{"apiVersion": "v1", "kind": "Service",
                 "metadata": {"name": f"bench-{i}", "namespace": "default"},
                 "spec": {"selector": {"app": "url-shortener"},
                          "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}} for i in range(n)]
    t0 = time.perf_counter()
    lab.apply(services)
    rules = lab.iptables()              # render + parse
    t_render = time.perf_counter() - t0
    model = lab.backend.model()
    ips = {f"bench-{i}": model.service(f"bench-{i}").cluster_ip for i in range(n)}
    step = max(1, n // traced)
    for i in range(0, n, step):
        lab.trace(ips[f"bench-{i}"], 80)
    t_trace = time.perf_counter() - t0
    for i in range(0, n, step):
        r = lab.request(f"http://{ips[f'bench-{i}']}/whoami", from_="pod")
        assert r.status == 200, r.error
    lab.iptables()                      # counters changed: render + parse again
    t_total = time.perf_counter() - t0
    return t_render, t_trace, t_total, rules.rule_count


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--services", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    best = min(course() for _ in range(args.repeat))
    print(f"course on sim (up, app, ingress controller, Ingress, NodePort, 5 paths): {best:.3f} s "
          f"(target < 1 s)")
    runs = [many_services(args.services) for _ in range(args.repeat)]
    render, trace, total, count = min(runs, key=lambda r: r[2])
    print(f"{args.services} services: render+parse {render:.3f} s ({count} rules), +100 traces "
          f"{trace:.3f} s, +100 predicted requests and a re-read {total:.3f} s (target < 2 s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
