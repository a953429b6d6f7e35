"""Backends: ``kind`` (a real cluster), ``netns`` (a kind node's data plane on the real kernel),
``sim`` (a pure-Python model). See :mod:`k8slab.backends.base` for the interface."""
