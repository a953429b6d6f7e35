"""The ``kind`` backend: a real Kubernetes cluster in Docker containers on the learner's machine.

A package, split the way ``backends/netns/`` is:

- :mod:`.errors`       what goes wrong, one class each, and the name checks;
- :mod:`.parse`        pure functions over what docker, kind, kubectl and the node's tools print;
- :mod:`.doctor`       can it run here: Docker, kind, kubectl, host ports, memory, image store;
- :mod:`.portforward`  supervised ``kubectl port-forward`` and the pure-Python variant;
- :mod:`.backend`      :class:`KindBackend`, which runs the tools through :mod:`k8slab.runner`.

Everything the notebooks and tests use is importable from here.
"""
from .backend import APP_IMAGE, CLIENT_IMAGE, DEFAULT_CONFIG, MODEL_KINDS, KindBackend
from .doctor import INSTALL, RECOMMENDED_FREE_MEMORY, cache_dir, find_kubectl, free_memory, port_free
from .errors import (ConfigMismatch, ControllerPending, HostPortInUse, ImagePullFailed, InvalidName, KindError,
                     RolloutFailed, WebhookNotReady, validate_name, validate_target)
from .parse import *  # noqa: F401,F403 - the pure parsers are part of the package's surface
from .parse import __all__ as _parse_all
from .portforward import (KubectlPortForward, PythonPortForward, _connectable, active_port_forwards,
                          close_all_port_forwards, python_client_connector)
from ...errors import LabStateError, NotFound  # noqa: F401 - raised by the backend; tests catch them here
from ... import runner  # noqa: F401

__all__ = ["APP_IMAGE", "CLIENT_IMAGE", "DEFAULT_CONFIG", "MODEL_KINDS", "KindBackend", "INSTALL",
           "RECOMMENDED_FREE_MEMORY", "cache_dir", "find_kubectl", "free_memory", "port_free",
           "ConfigMismatch", "ControllerPending", "HostPortInUse", "ImagePullFailed", "InvalidName",
           "KindError", "RolloutFailed", "WebhookNotReady", "validate_name", "validate_target",
           "KubectlPortForward", "PythonPortForward", "active_port_forwards", "close_all_port_forwards",
           "python_client_connector", *_parse_all]
