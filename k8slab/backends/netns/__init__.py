"""The ``netns`` backend: a kind node's data plane on the real Linux kernel, without Docker.

Namespaces for the learner's machine, each node and each pod; the real CNI plugins (ptp, host-local,
portmap) wire the pods; kube-proxy's rules (rendered by :mod:`k8slab.model`) are loaded with
``iptables-restore``; the app and nginx run as real processes. Needs root on Linux.
Like a kind cluster, a lab belongs to no Python process: any process attaches to it with ``up()``
(its state is ``/run/k8slab/<lab>/state.json``), and only ``down()`` removes it.
See :mod:`k8slab.backends.netns.backend` for what stands for what.
"""
from .backend import NetnsBackend, NetnsPortForward
from .plumbing import force_cleanup, root_netns_snapshot

__all__ = ["NetnsBackend", "NetnsPortForward", "force_cleanup", "root_netns_snapshot"]
