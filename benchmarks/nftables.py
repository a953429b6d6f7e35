"""kube-proxy's nftables mode at scale. Prints (no assertions; the targets are in the comments):

1. A 10,000-Service ruleset (rendered by k8slab's kube-proxy nftables renderer, 3 endpoints each, as
   the ``nft -f`` transaction kube-proxy sends): parse + the four frames (rules, chains, sets,
   elements) against ``nft -c -f`` on the same file (nft's C parser and the kernel's dry-run check,
   in a throwaway network namespace; target: no slower); a trace of the last Service (target < 5 ms);
   peak Python memory of the parse (tracemalloc).
2. The course's comparison series (k8slab.measure.compare): rules and first-packet cost for
   10 / 1,000 / 10,000 Services, iptables mode against nftables mode: the tracer's time, and with
   root the real kernel's connect() time in namespaces.

    python benchmarks/nftables.py [--services 10000] [--sizes 10,1000,10000] [--samples 200] [--no-kernel]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def parse_and_frames(text: str, repeat: int = 3) -> tuple[float, int, object]:
    from k8slab.netfilter.nft import parse_nft
    from k8slab.netfilter.nft.listing import loadable
    best, rs = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        rs = parse_nft(loadable(text))
        frames = (rs.rules_frame, rs.chains_frame, rs.sets_frame, rs.elements_frame)
        best = min(best, time.perf_counter() - t0)
    return best, sum(len(f) for f in frames), rs


def peak_memory(text: str) -> int:
    from k8slab.netfilter.nft import parse_nft
    from k8slab.netfilter.nft.listing import loadable
    tracemalloc.start()
    rs = parse_nft(loadable(text))
    _ = (rs.rules_frame, rs.chains_frame, rs.sets_frame, rs.elements_frame)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


def nft_check(text: str, repeat: int = 3) -> float | None:
    """Seconds for ``nft -c -f FILE`` (best of ``repeat``) in a throwaway namespace; None without
    root or nft."""
    from k8slab import runner
    from k8slab.netfilter.nft.listing import loadable
    if os.geteuid() != 0 or runner.which("nft") is None:
        return None
    ns = f"k8s-nftb-{os.getpid()}"
    with tempfile.NamedTemporaryFile("w", suffix=".nft", delete=False) as f:
        f.write(loadable(text))
    runner.run(["ip", "netns", "add", ns], timeout=30, check=True)
    try:
        best = float("inf")
        for _ in range(repeat):
            t0 = time.perf_counter()
            runner.run(["ip", "netns", "exec", ns, "nft", "-c", "-f", f.name], timeout=600, check=True)
            best = min(best, time.perf_counter() - t0)
        return best
    finally:
        runner.run(["ip", "netns", "del", ns], timeout=30, check=False)
        os.unlink(f.name)


def main(argv: list[str] | None = None) -> int:
    from k8slab import measure
    from k8slab.netfilter.nft import trace_nft
    from k8slab.netfilter.tracer import Packet
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--services", type=int, default=10000)
    ap.add_argument("--sizes", default="10,1000,10000")
    ap.add_argument("--samples", type=int, default=200, help="connections per kernel measurement")
    ap.add_argument("--no-kernel", action="store_true", help="skip the namespaces (rule counts and model only)")
    args = ap.parse_args(argv)

    n = args.services
    t0 = time.perf_counter()
    text = measure.render(n)["nftables"]
    print(f"{n} services x 3 endpoints: nft -f transaction rendered in {time.perf_counter() - t0:.2f} s "
          f"({len(text.splitlines())} lines, {len(text) / 1e6:.1f} MB)")
    parse_s, rows, rs = parse_and_frames(text)
    check_s = nft_check(text)
    print(f"parse + 4 frames ({rows} rows): {parse_s:.3f} s;  nft -c -f: "
          + (f"{check_s:.3f} s" if check_s is not None else "not run (needs root and nft)")
          + "  (target: parse + frames no slower than nft -c -f)")
    dst = measure.services(n, 1)[0][-1].cluster_ip
    pkt = Packet(src="10.244.0.5", dst=dst, dport=80)
    trace_nft(rs, pkt, [measure.NODE_IP])
    best = float("inf")
    for _ in range(20):
        t1 = time.perf_counter()
        tr = trace_nft(rs, pkt, [measure.NODE_IP])
        best = min(best, time.perf_counter() - t1)
    print(f"trace to the last Service ({dst}): {best * 1e3:.2f} ms, {len(tr.outcomes)} outcomes "
          f"(target < 5 ms)")
    print(f"peak Python memory of parse + frames (tracemalloc): {peak_memory(text) / 2**20:.0f} MiB")

    sizes = tuple(int(s) for s in args.sizes.split(","))
    df = measure.compare(sizes, backend="sim" if args.no_kernel else "netns", samples=args.samples)
    print()
    print(df.drop(columns=["kernel"]).to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    if df.attrs.get("predicted"):
        print(f"kernel_connect_us: {df['kernel'].iloc[0]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
