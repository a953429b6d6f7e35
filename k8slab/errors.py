"""Every error k8slab raises on purpose. Each message says what happened and what to do next."""
from __future__ import annotations


class K8sLabError(Exception):
    """Base class: the CLI prints these as one line and exits 2."""


class ParseError(K8sLabError, ValueError):
    """A dump line that is not iptables-save/restore syntax."""

    def __init__(self, message: str, lineno: int | None = None, line: str | None = None):
        self.lineno = lineno
        self.line = line
        where = f"line {lineno}: " if lineno is not None else ""
        shown = f": {line!r}" if line is not None else ""
        super().__init__(f"{where}{message}{shown}")


class TraceError(K8sLabError, ValueError):
    """A packet or ruleset the tracer cannot follow (bad address, unknown protocol, a jump loop)."""


class ManifestError(K8sLabError, ValueError):
    """A Kubernetes manifest that is invalid; the message names the object and the field."""


class CommandError(K8sLabError):
    """An external command failed. Carries argv, exit code and the stderr it printed."""

    def __init__(self, message: str, argv: list[str] | None = None, returncode: int | None = None,
                 stderr: str = ""):
        self.argv = list(argv or [])
        self.returncode = returncode
        self.stderr = stderr
        super().__init__(message)


class CommandNotFound(CommandError):
    """The executable is not installed or not on PATH."""


class CommandTimeout(CommandError):
    """The command ran longer than its timeout and was killed (with its process group)."""


class BackendUnavailable(K8sLabError):
    """The chosen backend cannot run on this machine; the message says why and how to fix it."""


class LabStateError(K8sLabError):
    """A verb was called in a state where it cannot work (e.g. request() before up())."""


class NotFound(K8sLabError, LookupError):
    """A named object (pod, service, node, path) does not exist in the lab."""
