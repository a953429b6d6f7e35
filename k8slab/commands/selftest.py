"""``k8slab selftest``: every way in on your cluster, beside the tracer's prediction, plus a recording.

Run it on a laptop before a class (instructors) or when something looks wrong (learners): it prints
one row per way in (port-forward, ClusterIP from a pod, NodePort, hostPort, Ingress), what answered
and what the rules of the same cluster predict, and writes a recording to attach to a bug report.
Exit status 0 when every way answered as predicted, 1 otherwise, 2 on an error.
"""
from __future__ import annotations

import time
from pathlib import Path


def register(subparsers) -> None:
    p = subparsers.add_parser("selftest", help="try every way in on the cluster and compare with the tracer",
                              description=__doc__.splitlines()[0])
    p.add_argument("--backend", default="auto", choices=["auto", "kind", "netns", "sim"],
                   help="where to run (default: auto: kind where Docker and kind work, else sim)")
    p.add_argument("--name", default="k8slab", help="the lab (kind cluster) name (default: k8slab)")
    p.add_argument("--record", type=Path, default=None,
                   help="where to write the recording (default: build/selftest-<time>)")
    p.add_argument("--down", action="store_true", help="take the lab down afterwards")
    p.set_defaults(func=run)


def run(args) -> int:
    import pandas as pd
    from .. import selftest
    from ..lab import Lab
    lab = Lab(backend=args.backend, name=args.name)
    try:
        selftest.prepare(lab)
        checks = selftest.run(lab)
        df = selftest.frame(checks, lab)
        with pd.option_context("display.width", 200, "display.max_colwidth", 60):
            print(df.drop(columns=["compared"]).to_string(index=False))
        for c in checks:
            print(f"{'ok  ' if c.agrees else 'FAIL'} {c.way}: {c.checked}" + (f" ({c.note})" if c.note else ""))
        out = args.record or lab.root / "build" / f"selftest-{time.strftime('%Y%m%d-%H%M%S')}"
        selftest.record(lab, out)
        print(f"recording: {out}  (attach it to a bug report; replay: Lab(backend='sim', replay='{out}'))")
        print(f"backend: {lab.why}")
        return 0 if all(c.agrees for c in checks) else 1
    finally:
        if args.down:
            lab.down()
