"""How long the netns backend takes to build and remove the course cluster (root on Linux).

``up`` here is everything a learner waits for before the first request: the node, kind's system pods,
the two url-shortener pods, the ingress controller (nginx) and the Ingress, all ready. Targets on
2 cores: up < 5 s, down < 2 s::

    sudo python benchmarks/netns.py                 # prints the figures
    sudo python benchmarks/netns.py --capture tests/data/netns   # also writes real dumps there

``attach`` is what a second process (another notebook's kernel) waits for in ``up()`` when the lab is
already up: it reads the lab's state file and checks its namespaces, nothing is rebuilt.

``--capture`` sends one request each way in (port-forward, ClusterIP, NodePort, hostPort, Ingress)
and then writes the node's and the host's ``iptables-save -c`` (real kernel output, with counters),
and the node's ``conntrack -L``, for the parser tests.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from k8slab.backends.netns import NetnsBackend, force_cleanup  # noqa: E402
from k8slab.progress import Progress  # noqa: E402


def manifests(name: str) -> list[dict]:
    return [d for d in yaml.safe_load_all((ROOT / "kind" / "manifests" / name).read_text()) if d]


def build(backend: NetnsBackend, replicas: int = 2) -> dict[str, float]:
    """up + app + controller + ingress, each waited for; returns seconds per step."""
    t: dict[str, float] = {}
    s = time.perf_counter()
    backend.up(ROOT / "kind" / "cluster.yaml")
    t["cluster (node, system pods, rules)"] = time.perf_counter() - s
    s2 = time.perf_counter()
    app = manifests("app.yaml")
    for obj in app:
        if obj.get("kind") == "Deployment":
            obj["spec"]["replicas"] = replicas
    backend.apply(app)
    backend.wait_ready()
    t["app (2 pods ready)"] = time.perf_counter() - s2
    s3 = time.perf_counter()
    backend.apply(manifests("ingress-nginx.yaml"))
    backend.wait_ready()
    t["ingress controller (nginx ready)"] = time.perf_counter() - s3
    s4 = time.perf_counter()
    backend.apply(manifests("ingress.yaml"))
    t["ingress (nginx reloaded)"] = time.perf_counter() - s4
    t["up total"] = time.perf_counter() - s
    return t


ATTACH = """
import sys, time
sys.path.insert(0, sys.argv[2])
from pathlib import Path
from k8slab.backends.netns import NetnsBackend
from k8slab.progress import Progress
b = NetnsBackend(sys.argv[1], root=Path(sys.argv[2]), progress=Progress(quiet=True))
s = time.perf_counter()
b.up(Path(sys.argv[2]) / "kind" / "cluster.yaml")
took = time.perf_counter() - s
assert len(b.model().pods) > 0
print(f"ATTACH {took:.4f}")
"""


def attach_seconds(name: str) -> float:
    """How long up() takes in another process while the lab is up (it attaches)."""
    res = subprocess.run([sys.executable, "-c", ATTACH, name, str(ROOT)], capture_output=True, text=True,
                         timeout=120)
    line = next((l for l in res.stdout.splitlines() if l.startswith("ATTACH ")), None)
    if line is None:
        raise RuntimeError(f"the second process did not attach: {res.stderr[-2000:]}")
    return float(line.split()[1])


def capture(backend: NetnsBackend, out: Path) -> list[Path]:
    """One request each way in, then the real dumps."""
    c = backend.model()
    node = c.control_plane
    backend.apply(manifests("app-nodeport.yaml"))
    svc = c.service("url-shortener")
    ing = c.ingresses[0] if c.ingresses else None
    host = ing.rules[0].host if ing and ing.rules else None
    with backend.port_forward("svc/url-shortener", 0, 80) as pf:
        backend.request(f"http://127.0.0.1:{pf.local_port}/whoami")
    backend.request(f"http://{svc.cluster_ip}:80/whoami", from_="pod")
    nodeport = next((s for s in c.services if s.type == "NodePort" and s.namespace == "default"), None)
    if nodeport is not None:
        backend.request(f"http://{node.ip}:{nodeport.ports[0].node_port}/whoami")
    backend.request(f"http://{node.ip}:80/whoami", host=host)
    backend.request("http://127.0.0.1:8080/whoami", host=host)
    out.mkdir(parents=True, exist_ok=True)
    files = {
        out / "node-control-plane.rules": backend.iptables_save(node.name),
        out / "host.rules": backend.host_iptables_save(),
    }
    for path, text in files.items():
        path.write_text(text)
    return list(files)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--name", default="k8s-bench", help="lab name (namespaces start with it)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--capture", type=Path, default=None, help="write real dumps into this directory")
    args = p.parse_args(argv)
    ok, why = NetnsBackend.available()
    if not ok:
        print(f"netns backend unavailable: {why}")
        return 2
    force_cleanup(args.name)
    ups, downs, attaches = [], [], []
    for i in range(args.rounds):
        backend = NetnsBackend(args.name, root=ROOT, progress=Progress(quiet=True))
        try:
            steps = build(backend)
            steps["attach (a second process)"] = attach_seconds(args.name)
            attaches.append(steps["attach (a second process)"])
            if args.capture and i == args.rounds - 1:
                for f in capture(backend, args.capture):
                    print(f"wrote {f}")
        finally:
            s = time.perf_counter()
            backend.down()
            down = time.perf_counter() - s
        ups.append(steps["up total"])
        downs.append(down)
        print(f"round {i + 1}: " + ", ".join(f"{k} {v:.2f}s" for k, v in steps.items()) + f", down {down:.2f}s")
    print(f"up   median {sorted(ups)[len(ups) // 2]:.2f}s (target < 5 s)")
    print(f"down median {sorted(downs)[len(downs) // 2]:.2f}s (target < 2 s)")
    print(f"attach median {sorted(attaches)[len(attaches) // 2]:.3f}s (up() in a second process)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
