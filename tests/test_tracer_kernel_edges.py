"""The tracer's chain semantics at the edges, against the real kernel.

Each case is a small ruleset loaded with ``iptables-restore`` into a throwaway namespace of ours
(``k8s-tr-<pid>-edge-<backend>``, for the legacy and the nf_tables backend when both exist), where a
server listens on 127.0.0.1:9001 and :9002 and answers with its port. One connection to
127.0.0.1:9001 from inside the namespace goes OUTPUT -> POSTROUTING -> lo -> PREROUTING -> INPUT, the
path the tracer walks for ``Packet("127.0.0.1", "127.0.0.1", 9001)``. Two witnesses per case:

* the connection: answered by 9001 or 9002 (ACCEPT, and where a DNAT sent it), refused (REJECT) or
  timed out (DROP);
* the counters (``iptables-save -c``): the rules the tracer's path matched are exactly the rules
  whose counters moved (replies are matched first by an ESTABLISHED rule, left out of both).

The cases: a goto from a built-in chain into a chain that returns or falls off its end (the kernel's
``ipt_do_table`` finds its jump stack empty and applies the *built-in chain's* policy: the rule after
the goto is never reached), RETURN in a built-in chain, a goto inside a jumped-to chain (back to the
jumper), policy DROP, a goto in the nat table (no DNAT that follows it), and a chain jumped to from a
goto'd chain. Root only; the namespaces are deleted in the fixture's teardown, also on failure.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
from dataclasses import dataclass

import pytest

import conftest
from k8slab import runner
from k8slab.netfilter.tracer import NodeContext, Packet, trace
from kernel_lab import in_ns, ip, remove_stale

parser = pytest.importorskip("k8slab.netfilter.parser")

PY = sys.executable
EST = "-A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT"

SERVER = r"""
import selectors, socket
sel = selectors.DefaultSelector()
for port in (9001, 9002):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", port)); s.listen(64); s.setblocking(False)
    sel.register(s, selectors.EVENT_READ, port)
print("ready", flush=True)
while True:
    for key, _ in sel.select():
        c, _ = key.fileobj.accept()
        c.setblocking(True)
        try:
            c.sendall(f"{key.data}\n".encode())
        finally:
            c.close()
"""

CLIENT = r"""
import errno, json, socket, sys
s = socket.socket(); s.settimeout(float(sys.argv[2]))
try:
    s.connect(("127.0.0.1", int(sys.argv[1])))
    print(json.dumps("ok:" + s.recv(20).decode().strip()))
except socket.timeout:
    print(json.dumps("timeout"))
except ConnectionRefusedError:
    print(json.dumps("refused"))
except OSError as exc:
    print(json.dumps("eperm" if exc.errno == errno.EPERM else f"error:{exc.errno}"))
"""


@dataclass(frozen=True)
class Edge:
    name: str
    filter: str                  # the *filter table, without COMMIT
    nat: str = ""                # the *nat table's rules and user chains, without COMMIT
    kernel: str = ""             # what the kernel did when this was written (the test compares
                                 # the tracer with the kernel of the day, and both with this)


def _filter(policy: str, rules: str, chains: str = "") -> str:
    return "\n".join(["*filter", f":INPUT {policy} [0:0]", ":FORWARD ACCEPT [0:0]", ":OUTPUT ACCEPT [0:0]",
                      *[f":{c} - [0:0]" for c in chains.split()], *rules.strip().splitlines()])


EDGES = [
    Edge("goto into a chain that falls off: INPUT's policy",
         _filter("DROP", f"""{EST}
-A INPUT -p tcp --dport 9001 -g C
-A INPUT -p tcp --dport 9001 -j ACCEPT
-A C -p tcp""", "C"), kernel="timeout"),
    Edge("goto into a chain that returns: INPUT's policy",
         _filter("DROP", f"""{EST}
-A INPUT -p tcp --dport 9001 -g C
-A INPUT -p tcp --dport 9001 -j ACCEPT
-A C -p tcp -j RETURN""", "C"), kernel="timeout"),
    Edge("jump into a chain that falls off: back to INPUT",
         _filter("DROP", f"""{EST}
-A INPUT -p tcp --dport 9001 -j C
-A INPUT -p tcp --dport 9001 -j ACCEPT
-A C -p tcp""", "C"), kernel="ok:9001"),
    Edge("goto, policy ACCEPT: the DROP after the goto is never reached",
         _filter("ACCEPT", """-A INPUT -p tcp --dport 9001 -g C
-A INPUT -p tcp --dport 9001 -j DROP""", "C"), kernel="ok:9001"),
    Edge("goto into a chain that jumps to one that returns, then falls off",
         _filter("DROP", f"""{EST}
-A INPUT -p tcp --dport 9001 -g C
-A INPUT -p tcp --dport 9001 -j ACCEPT
-A C -p tcp -j D
-A D -p tcp -j RETURN""", "C D"), kernel="timeout"),
    Edge("RETURN in a built-in chain: its policy",
         _filter("DROP", f"""{EST}
-A INPUT -p tcp --dport 9001 -j RETURN
-A INPUT -p tcp --dport 9001 -j ACCEPT"""), kernel="timeout"),
    Edge("goto inside a jumped-to chain: RETURN goes back to the jumper",
         _filter("DROP", f"""{EST}
-A INPUT -p tcp --dport 9001 -j A
-A INPUT -p tcp --dport 9001 -j ACCEPT
-A A -p tcp -g B
-A A -p tcp -j DROP
-A B -p tcp -j RETURN""", "A B"), kernel="ok:9001"),
    Edge("policy DROP, no rule for the packet",
         _filter("DROP", f"""{EST}
-A INPUT -p tcp --dport 9999 -j ACCEPT"""), kernel="timeout"),
    Edge("REJECT in a goto'd chain",
         _filter("DROP", f"""{EST}
-A INPUT -p tcp --dport 9001 -g C
-A C -p tcp -j REJECT --reject-with tcp-reset""", "C"), kernel="refused"),
    Edge("nat: a goto that returns skips the DNAT after it",
         _filter("ACCEPT", ""), nat="""-A OUTPUT -p tcp --dport 9001 -g C
-A OUTPUT -p tcp --dport 9001 -j DNAT --to-destination 127.0.0.1:9002
-A C -p tcp -j RETURN""", kernel="ok:9001"),
    Edge("nat: a jump that returns reaches the DNAT after it",
         _filter("ACCEPT", ""), nat="""-A OUTPUT -p tcp --dport 9001 -j C
-A OUTPUT -p tcp --dport 9001 -j DNAT --to-destination 127.0.0.1:9002
-A C -p tcp -j RETURN""", kernel="ok:9002"),
]


def _restore_text(edge: Edge) -> str:
    nat_chains = sorted({line.split()[1] for line in edge.nat.splitlines()
                         if line.startswith("-A ") and line.split()[1] not in ("PREROUTING", "INPUT", "OUTPUT",
                                                                               "POSTROUTING")})
    nat = ["*nat", ":PREROUTING ACCEPT [0:0]", ":INPUT ACCEPT [0:0]", ":OUTPUT ACCEPT [0:0]",
           ":POSTROUTING ACCEPT [0:0]", *[f":{c} - [0:0]" for c in nat_chains], *edge.nat.splitlines(),
           "COMMIT"]
    return "\n".join([edge.filter, "COMMIT", *nat, ""])


BACKENDS = [b for b in ("legacy", "nft") if shutil.which(f"iptables-{b}-restore")]


@pytest.fixture(scope="module", params=BACKENDS or ["none"])
def edge_ns(request):
    backend = request.param
    conftest.skip_unless_root("ip", f"iptables-{backend}-restore", f"iptables-{backend}-save")
    remove_stale()
    ns = f"k8s-tr-{os.getpid()}-edge-{backend}"
    ip("netns", "add", ns)
    server = None
    try:
        ip("-n", ns, "link", "set", "lo", "up")
        probe = in_ns(ns, [f"iptables-{backend}-restore"], input=_restore_text(EDGES[0]), check=False)
        if probe.returncode != 0:
            pytest.skip(f"iptables-{backend}-restore does not work here: {probe.stderr.strip()[:200]}")
        server = runner.spawn(["ip", "netns", "exec", ns, PY, "-u", "-c", SERVER])
        line = server.stdout.readline().decode().strip()
        assert line == "ready", server.stderr.read().decode() if server.poll() is not None else line
        yield ns, backend
    finally:
        if server is not None:
            runner.stop(server)
        for pid in ip("netns", "pids", ns, check=False).stdout.split():
            try:
                os.kill(int(pid), 9)
            except (ProcessLookupError, ValueError):
                pass
        ip("netns", "del", ns, check=False)


def _witness(predicted) -> str:
    if predicted.verdict == "DROP":
        return "timeout"
    if predicted.verdict == "REJECT":
        return "refused"
    port = predicted.destination.rsplit(":", 1)[1] if predicted.destination else "9001"
    return f"ok:{port}"


def _moved(saved: str) -> set[tuple[str, str, int]]:
    rs = parser.parse(saved, "iptables-save -c")
    return {(r.table, r.chain, r.position) for r in rs.iter_rules()
            if r.packets and "ESTABLISHED" not in (r.line or "")}


@pytest.mark.root
@pytest.mark.parametrize("edge", EDGES, ids=[e.name for e in EDGES])
def test_tracer_does_what_the_kernel_does(edge_ns, edge):
    ns, backend = edge_ns
    text = _restore_text(edge)
    t = trace(parser.parse(text, edge.name), Packet("127.0.0.1", "127.0.0.1", 9001),
              NodeContext(frozenset({"127.0.0.1"})))
    (predicted,) = t.outcomes                      # no fact is open here: one outcome
    matched = {(h.table, h.chain, h.position) for h in predicted.hops
               if h.rule is not None and not h.action.startswith("no match")}

    if shutil.which("conntrack"):
        in_ns(ns, ["conntrack", "-F"], check=False)
    in_ns(ns, [f"iptables-{backend}-restore"], input=text)
    got = json.loads(in_ns(ns, [PY, "-c", CLIENT, "9001", "1.5"], timeout=30).stdout)
    saved = in_ns(ns, [f"iptables-{backend}-save", "-c"]).stdout

    assert got == _witness(predicted), (edge.name, got, t.text())
    assert got == edge.kernel, (edge.name, got)
    assert _moved(saved) == matched, (edge.name, saved, t.text())
