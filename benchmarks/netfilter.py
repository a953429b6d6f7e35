"""How fast is the netfilter core on a kube-proxy-sized node? Prints figures; asserts nothing.

    python benchmarks/netfilter.py                      # 10,000 services x 3 endpoints (~110,000 rules)
    python benchmarks/netfilter.py --services 2000 --traces 200
    python benchmarks/netfilter.py --file node.rules   # any iptables-save dump

Prints: the dump's size, parse time, the time to build each DataFrame, peak RSS, the mean time of
one trace of a random ClusterIP packet (when k8slab.netfilter.tracer exists) and, as root, how long
``iptables-restore --test`` takes on the same file inside a throwaway network namespace. The load
average and a fixed reference workload (``shlex.split`` of a sample of the lines, scaled to the
whole file) are printed too, so that figures from a busy machine can be compared with a quiet one.
"""
from __future__ import annotations

import argparse
import gc
import os
import random
import resource
import shlex
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from gen_dump import generate  # noqa: E402

from k8slab import runner  # noqa: E402
from k8slab.errors import CommandError  # noqa: E402


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def shlex_reference(lines: list[str], sample: int = 50) -> float:
    """Seconds a line-by-line shlex.split of every rule line would take (every ``sample``-th line, scaled)."""
    rule_lines = [line for line in lines if line.startswith(("-A", "["))]
    picked = rule_lines[::sample]
    t0 = time.perf_counter()
    for line in picked:
        shlex.split(line)
    return (time.perf_counter() - t0) * len(rule_lines) / max(1, len(picked))


def bench_traces(rs, count: int, seed: int = 1) -> str:
    try:
        from k8slab.netfilter import tracer
    except ImportError:
        return "skipped: k8slab/netfilter/tracer.py is not there yet"
    frame = rs.rules
    vips = frame[(frame.table == "nat") & (frame.chain == "KUBE-SERVICES") & frame.dst.notna()
                 & frame.dport.notna()]
    if not len(vips):
        return "skipped: no ClusterIP rules in this dump"
    rng = random.Random(seed)
    picks = [vips.iloc[rng.randrange(len(vips))] for _ in range(count)]
    node = tracer.NodeContext(local_ips=frozenset({"172.18.0.2"}), pod_cidrs=("10.244.0.0/16",))
    packets = [tracer.Packet(src="10.244.0.2", dst=row.dst.split("/")[0], dport=int(row.dport),
                             proto=row.protocol or "tcp") for row in picks]
    # the first trace builds the tracer's index: timed on its own, then the others
    t = time.perf_counter()
    result = tracer.trace(rs, packets[0], node)
    first = (time.perf_counter() - t, len(result.outcomes))
    t0 = time.perf_counter()
    for pkt in packets[1:]:
        tracer.trace(rs, pkt, node)
    total = time.perf_counter() - t0
    # the CLI's default: no local IPs, so whether an endpoint is the node's own is a condition the
    # walk follows both ways before the outcomes are merged
    t1 = time.perf_counter()
    rows = 0
    for pkt in packets[1:]:
        rows += len(tracer.trace(rs, pkt, None).outcomes)
    bare = time.perf_counter() - t1
    n = max(1, count - 1)
    return (f"{total / n * 1000:.2f} ms mean over {count - 1} random ClusterIP packets "
            f"after the first (that one: {first[0] * 1000:.0f} ms, {first[1]} outcomes; it builds the "
            f"tracer's index); {bare / n * 1000:.2f} ms mean with no local IPs given "
            f"({rows / n:.2f} outcomes each after merging)")


def bench_restore(path: Path, repeat: int = 3) -> str:
    if os.geteuid() != 0:
        return "skipped: needs root (a throwaway network namespace)"
    if runner.which("ip") is None or runner.which("iptables-restore") is None:
        return "skipped: needs ip and iptables-restore"
    ns = f"k8sbench-{os.getpid()}"
    try:
        runner.run(["ip", "netns", "add", ns], timeout=30)
    except CommandError as exc:
        return f"skipped: cannot create a network namespace ({exc})"
    try:
        runs = []
        for _ in range(max(1, repeat)):
            t0 = time.perf_counter()
            result = runner.run(["ip", "netns", "exec", ns, "iptables-restore", "--test", str(path)],
                                timeout=900, check=False)
            seconds = time.perf_counter() - t0
            if not result.ok:
                return f"failed after {seconds:.2f} s: {result.stderr.strip()[:300]}"
            runs.append(seconds)
        return (f"{min(runs):.2f} s (best of {len(runs)}: {', '.join(f'{r:.2f}' for r in runs)}; "
                f"iptables-restore --test in netns {ns})")
    finally:
        runner.run(["ip", "netns", "delete", ns], timeout=30, check=False)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--services", type=int, default=10_000)
    ap.add_argument("--endpoints", type=int, default=3)
    ap.add_argument("--file", type=Path, help="benchmark this dump instead of a generated one")
    ap.add_argument("--traces", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=3, help="parse+frames runs; the best is reported")
    ap.add_argument("--no-restore", action="store_true", help="skip iptables-restore --test")
    args = ap.parse_args(argv)

    from k8slab.netfilter import parse

    tmp = None
    if args.file is None:
        tmp = tempfile.NamedTemporaryFile("w", suffix=".rules", prefix="k8sbench-", delete=False)
        tmp.write("\n".join(generate(args.services, args.endpoints)) + "\n")
        tmp.close()
        path = Path(tmp.name)
    else:
        path = args.file
    try:
        text = path.read_text()
        lines = text.split("\n")
        print(f"dump: {path} {len(text) / 1e6:.1f} MB, {len(lines)} lines")
        print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs")
        import pandas  # noqa: F401  (import time is not part of the figures)

        best = None
        rss_one = None
        for k in range(max(1, args.repeat)):
            rs = rules = chains = None
            gc.collect()
            t0 = time.perf_counter()
            rs = parse(text, str(path))
            t1 = time.perf_counter()
            rules = rs.rules
            t2 = time.perf_counter()
            chains = rs.chains
            t3 = time.perf_counter()
            if k == 0:
                rss_one = peak_rss_mb()     # one Ruleset and its two frames alive
                t4 = time.perf_counter()
                gc.collect()
                first_gc = time.perf_counter() - t4
            run = (t1 - t0, t2 - t1, t3 - t2)
            if best is None or sum(run) < sum(best):
                best = run
        assert best is not None and rs is not None
        print(f"rules: {len(rules)}, chains: {len(chains)}")
        print(f"parse:          {best[0]:.3f} s")
        print(f"rules frame:    {best[1]:.3f} s")
        print(f"chains frame:   {best[2]:.3f} s")
        print(f"parse + frames: {sum(best):.3f} s (best of {args.repeat}; target: no slower than iptables-restore --test, below)")
        print(f"peak RSS:       {rss_one:.0f} MB after the first parse + frames (target < 400 MB)")
        print(f"first full GC pass over the new objects (paid once, after): {first_gc:.3f} s")
        ref = shlex_reference(lines)
        print(f"reference: a line-by-line shlex.split alone would take {ref:.2f} s now "
              f"(parse + frames = {sum(best) / ref:.1%} of it)")
        print(f"trace: {bench_traces(rs, args.traces)}")
        if not args.no_restore:
            print(f"iptables-restore --test: {bench_restore(path, args.repeat)}")
    finally:
        if tmp is not None:
            os.unlink(tmp.name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
