"""k8slab: a hands-on course on Kubernetes networking, from port-forward to Ingress.

``from k8slab import Lab`` is all a notebook needs.
"""
from .errors import K8sLabError, ParseError, TraceError

__version__ = "0.1.0"
__all__ = ["Lab", "K8sLabError", "ParseError", "TraceError", "__version__"]


def __getattr__(name):  # lazy: importing k8slab must not import pandas/matplotlib
    if name == "Lab":
        from .lab import Lab
        return Lab
    raise AttributeError(name)
