"""The ``sim`` backend: a kind cluster as a pure-Python model, and predictions of what it would do.

Nothing runs: the cluster is a :class:`k8slab.model.Cluster` built from ``kind/cluster.yaml``; the
node's rules are rendered from it; every request is *predicted* by tracing the rules each hop would
meet (the host's Docker rules, the node's kube-proxy/portmap/kindnet rules) and by modelling the
user-space programs on the way (docker-proxy, the ingress controller, the app). Every Response it
returns has ``predicted=True``.

Deterministic: where the kernel would pick at random (``statistic --mode random``), a
``random.Random(seed)`` picks among the tracer's outcomes by their exact probabilities, so the same
seed and the same calls give the same answers and the same counters.

What the sim keeps, as a node would:

* packet/byte counters on every rule a predicted connection matched (the first packet of each
  connection, 60 bytes: exactly what the nat table sees; on a real node filter rules would also count
  the later packets of the connection);
* conntrack entries for the connections it predicted (state TIME_WAIT: each request is over);
* round-robin positions of the ingress controller's upstreams.

The app is modelled minimally: ``/whoami`` (JSON like app/server.py's) and ``/healthz``; any other
path answers 404. HTTPS is not modelled.
"""
from .backend import SimBackend
# Moved to the modules of this package; importable from here as before.
from .kernel import FIRST_SPORT, _is_app, _process_of, _stable_port  # noqa: F401
from .portforward import PortInUse, SimPortForward
from .rules import BYTES_PER_PACKET, HOST, _Rules  # noqa: F401
from .traffic import (_error, _Http, _last_rule, _nat_port, _pod_at, _rejected_service,  # noqa: F401
                      _request_id, _split, _veth)

__all__ = ["SimBackend", "SimPortForward", "PortInUse", "BYTES_PER_PACKET", "HOST", "FIRST_SPORT"]
