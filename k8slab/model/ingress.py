"""What ingress-nginx makes of the Ingress objects: a routing table, a matcher, and an nginx.conf.

ingress-nginx (controller class ``k8s.io/ingress-nginx``, IngressClass ``nginx``; with
``--watch-ingress-without-class=true`` it also takes Ingresses without a class) proxies to the
Service's *endpoints* (pod IP:port, read from EndpointSlices), not to the ClusterIP, unless the
Ingress has ``nginx.ingress.kubernetes.io/service-upstream: "true"``.

Precedence, as nginx picks a server and a location: an exact host beats a wildcard ``*.domain``
(which matches one label), which beats the catch-all server of rules without a host; inside a
server, ``Exact`` beats ``Prefix`` for the same path and the longest matching prefix wins; ``Prefix``
matches whole path elements (``/api`` matches ``/api`` and ``/api/x``, not ``/apix``). Nothing
matching: the default backend, which answers 404.

With no ``--default-backend-service`` (the kind manifest sets none), the controller's own default
backend is nginx itself: ingress-nginx's ``nginx.tmpl`` (controller-v1.15.1) renders a server
``listen 8181 default_server`` (``--default-server-port``, pkg/flags/flags.go) whose ``location /``
does ``return 404;``, and ``upstream-default-backend`` points at ``127.0.0.1:8181``
(``NGINXController.DefaultEndpoint``, internal/ingress/controller/nginx.go). A request no Ingress
routes therefore gets nginx's built-in 404 page (:func:`nginx_error_page`), not the text
"default backend - 404", which came from the separate ``defaultbackend`` image.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..errors import NotFound

if TYPE_CHECKING:  # pragma: no cover
    from .cluster import Cluster

SERVICE_UPSTREAM = "nginx.ingress.kubernetes.io/service-upstream"
CONTROLLER = "k8s.io/ingress-nginx"

#: ``--default-server-port`` (pkg/flags/flags.go, controller-v1.15.1): the catch-all 404 server.
DEFAULT_SERVER_PORT = 8181

#: nginx's reason phrases for the built-in pages the model can produce (ngx_http_special_response.c).
_REASONS = {404: "Not Found", 502: "Bad Gateway", 503: "Service Temporarily Unavailable",
            504: "Gateway Time-out"}


def nginx_error_page(status: int) -> str:
    """The body nginx sends for ``return <status>;`` with no text: its built-in page
    (``ngx_http_error_<status>_page`` + ``ngx_http_error_tail`` in ngx_http_special_response.c,
    CRLF line ends). ingress-nginx renders ``server_tokens off`` (config ``server-tokens``,
    default false in internal/ingress/controller/config/config.go), so the tail says ``nginx``
    without a version."""
    title = f"{status} {_REASONS[status]}"
    lines = ["<html>", f"<head><title>{title}</title></head>", "<body>",
             f"<center><h1>{title}</h1></center>", "<hr><center>nginx</center>", "</body>", "</html>"]
    return "".join(line + "\r\n" for line in lines)


def controller_sockets() -> list[tuple[str, str]]:
    """(local address, process) of every TCP listener in the ingress-nginx controller pod that the
    kind manifest (controller-v1.15.1) starts, from the controller's flag defaults
    (pkg/flags/flags.go) and nginx.tmpl:

    * nginx: ``--http-port`` 80 and ``--https-port`` 443 (the Ingress servers), and the catch-all
      404 server on ``--default-server-port`` 8181, all on every address; the status server
      (``/healthz``, ``/nginx_status``, ``/configuration``) on ``127.0.0.1:`` ``--status-port``
      10246, and the stream block's Lua configuration socket on ``127.0.0.1:`` ``--stream-port``
      10247;
    * the Go controller (``/nginx-ingress-controller``): the admission webhook
      (``--validating-webhook=:8443`` in the kind manifest), health and metrics on
      ``--healthz-port`` 10254 (``--healthz-host`` empty: every address), and the Go profiler on
      ``--profiler-address`` 127.0.0.1 : ``--profiler-port`` 10245 (``--profiling`` defaults to true).

    Left out: ``--ssl-passthrough-proxy-port`` 442 (only with ``--enable-ssl-passthrough``), the
    internal syslog listener 127.0.0.1:11514 (only in the chroot image), and the ``[::]`` twins of
    the wildcard listeners that ``ss`` also shows when the pod has IPv6 (the model lists IPv4)."""
    return [("0.0.0.0:80", "nginx"), ("0.0.0.0:443", "nginx"),
            (f"0.0.0.0:{DEFAULT_SERVER_PORT}", "nginx (default server: 404)"),
            ("127.0.0.1:10246", "nginx (status: healthz, nginx_status, configuration)"),
            ("127.0.0.1:10247", "nginx (stream: Lua TCP/UDP configuration)"),
            ("0.0.0.0:8443", "nginx-ingress-controller (admission webhook)"),
            ("0.0.0.0:10254", "nginx-ingress-controller (health, metrics)"),
            ("127.0.0.1:10245", "nginx-ingress-controller (Go profiler)")]


@dataclass(frozen=True)
class Route:
    """One host + path of an Ingress and where ingress-nginx sends it."""
    host: str                     # "" = any host (the catch-all server)
    path: str
    path_type: str                # Exact | Prefix | ImplementationSpecific
    service: str
    namespace: str
    port: int                     # the Service port
    upstreams: tuple[str, ...]    # "ip:port": pod endpoints, or the ClusterIP with service-upstream
    service_upstream: bool = False
    ingress: str = ""
    default: bool = False         # the Ingress's defaultBackend

    @property
    def upstream_name(self) -> str:
        """ingress-nginx's upstream name: ``<namespace>-<service>-<port>``."""
        return f"{self.namespace}-{self.service}-{self.port}"


def _class_ok(cluster: "Cluster", ing, ingress_class: str) -> bool:
    if ing.ingress_class_name:
        return ing.ingress_class_name == ingress_class
    legacy = ing.annotations.get("kubernetes.io/ingress.class")
    return legacy in (None, ingress_class)     # --watch-ingress-without-class=true


def ingress_routes(cluster: "Cluster", ingress_class: str = "nginx") -> list[Route]:
    """Every (host, path) the controller serves, with its upstreams resolved from the cluster."""
    out: list[Route] = []
    for ing in sorted(cluster.ingresses, key=lambda i: (i.namespace, i.name)):
        if not _class_ok(cluster, ing, ingress_class):
            continue
        svc_up = ing.annotations.get(SERVICE_UPSTREAM, "").lower() == "true"
        items = [(r.host, p.path, p.path_type, p.backend, False) for r in ing.rules for p in r.paths]
        if ing.default_backend is not None:
            # ingress-nginx: an Ingress's defaultBackend answers what none of its paths match on each
            # of its hosts; only an Ingress with no rules at all takes over the catch-all server.
            hosts = sorted({r.host for r in ing.rules if r.host}) if ing.rules else [""]
            items += [(h, "/", "Prefix", ing.default_backend, True) for h in hosts]
        for host, path, ptype, backend, is_default in items:
            try:
                svc = cluster.service(backend.service_name, ing.namespace)
            except NotFound:
                out.append(Route(host, path, ptype, backend.service_name, ing.namespace,
                                 backend.service_port if isinstance(backend.service_port, int) else 0, (),
                                 svc_up, ing.name, is_default))
                continue
            sp = next((p for p in svc.ports if p.port == backend.service_port or p.name == backend.service_port), None)
            port = sp.port if sp else (backend.service_port if isinstance(backend.service_port, int) else 0)
            if sp is None:
                ups: tuple[str, ...] = ()
            elif svc_up:
                ups = (f"{svc.cluster_ip}:{sp.port}",)
            else:
                ups = tuple(cluster.endpoints_of(svc.name, svc.namespace, sp.name or sp.port))
            out.append(Route(host, path, ptype, svc.name, svc.namespace, port, ups, svc_up, ing.name, is_default))
    return out


def _host_matches(pattern: str, host: str) -> bool:
    if pattern.startswith("*."):
        suffix = pattern[1:]
        return host.endswith(suffix) and "." not in host[: -len(suffix)] and len(host) > len(suffix)
    return pattern == host


def _path_matches(route: Route, path: str) -> bool:
    if route.path_type == "Exact":
        return path == route.path
    if route.path_type == "ImplementationSpecific":
        return path.startswith(route.path)
    prefix = route.path.rstrip("/")
    return prefix == "" or path == prefix or path.startswith(prefix + "/")


def match_route(routes: list[Route], host: str, path: str = "/") -> Route | None:
    """The route ingress-nginx picks for ``Host: host`` and ``path`` (None: the controller's default
    backend, nginx's 404 page from its catch-all server on :data:`DEFAULT_SERVER_PORT`)."""
    host = host.split(":", 1)[0].lower()
    path = path.split("?", 1)[0] or "/"
    rule_routes = [r for r in routes if not r.default]
    hosts = {r.host for r in rule_routes}
    server = None
    if host in hosts and host:
        server = host
    else:
        wild = sorted((h for h in hosts if h.startswith("*.") and _host_matches(h, host)), key=len, reverse=True)
        if wild:
            server = wild[0]
        elif "" in hosts:
            server = ""
    candidates = [r for r in rule_routes if r.host == server] if server is not None else []
    exact = [r for r in candidates if r.path_type == "Exact" and r.path == path]
    if exact:
        return exact[0]
    prefixed = [r for r in candidates if r.path_type != "Exact" and _path_matches(r, path)]
    if prefixed:
        return max(prefixed, key=lambda r: len(r.path.rstrip("/")))
    # nothing matched: the server's default (the first Ingress that brought this host, or the
    # catch-all server's), else the controller's own default backend (404)
    wanted = "" if server is None else server
    return next((r for r in routes if r.default and r.host == wanted), None)


def nginx_conf(cluster: "Cluster", *, listen_port: int = 80, prefix_dir: str = "/tmp/k8slab-nginx",
               pid_path: str | None = None, error_log: str | None = None, access_log: str | None = None,
               ingress_class: str = "nginx", listen_address: str | None = None,
               default_server_port: int = DEFAULT_SERVER_PORT) -> str:
    """A complete minimal nginx.conf doing what ingress-nginx's would for these Ingresses.

    Runs unprivileged (every temp path under ``prefix_dir``), in the foreground (``daemon off``), with
    only core http modules (Debian's nginx-light is enough). Check it with
    ``nginx -t -c FILE -p PREFIX``."""
    routes = ingress_routes(cluster, ingress_class)
    pid_path = pid_path or f"{prefix_dir}/nginx.pid"
    error_log = error_log or f"{prefix_dir}/error.log"
    access_log = access_log or f"{prefix_dir}/access.log"
    listen = f"{listen_address}:{listen_port}" if listen_address else str(listen_port)
    default_listen = f"{listen_address}:{default_server_port}" if listen_address else str(default_server_port)
    default_upstream = f"{listen_address or '127.0.0.1'}:{default_server_port}"
    L: list[str] = [
        "# Generated by k8slab.model.nginx_conf: what ingress-nginx would serve for the cluster's Ingresses.",
        "daemon off;", "worker_processes 1;", f"pid {pid_path};", f"error_log {error_log} notice;", "",
        "events {", "    worker_connections 256;", "}", "", "http {",
        f"    client_body_temp_path {prefix_dir}/client_body;", f"    proxy_temp_path {prefix_dir}/proxy;",
        f"    fastcgi_temp_path {prefix_dir}/fastcgi;", f"    uwsgi_temp_path {prefix_dir}/uwsgi;",
        f"    scgi_temp_path {prefix_dir}/scgi;",
        "    log_format upstreaminfo '$remote_addr - [$time_local] \"$request\" $status host=$host "
        "upstream=$upstream_addr';",
        f"    access_log {access_log} upstreaminfo;",
        "    server_tokens off;", "    server_names_hash_bucket_size 128;", "",
    ]
    upstreams: dict[str, tuple[str, ...]] = {}
    for r in routes:
        if r.upstreams:
            upstreams.setdefault(r.upstream_name, r.upstreams)
    for name in sorted(upstreams):
        L.append(f"    upstream {name} {{")
        L.extend(f"        server {ep};" for ep in upstreams[name])
        L.append("    }")
    # ingress-nginx's upstream-default-backend with no --default-backend-service: its own
    # catch-all server below (NGINXController.DefaultEndpoint: 127.0.0.1:<default-server-port>)
    L += ["    upstream upstream-default-backend {", f"        server {default_upstream};", "    }"]
    L += ["", "    # the default server: no Ingress host matched (ingress-nginx's default backend answers 404)",
          "    server {", f"        listen {listen} default_server;", "        server_name _;"]
    def default_for(host: str) -> Route | None:
        return next((r for r in routes if r.default and r.host == host), None)

    catch_all = [r for r in routes if r.host == "" and not r.default]
    L += _locations(catch_all, default_for(""))
    L.append("    }")
    for host in sorted({r.host for r in routes if r.host}):
        L += ["", "    server {", f"        listen {listen};", f"        server_name {host};"]
        L += _locations([r for r in routes if r.host == host and not r.default], default_for(host))
        L.append("    }")
    # nginx.tmpl: "backend for when default-backend-service is not configured or it does not have
    # endpoints": nginx's built-in 404 page (see nginx_error_page)
    L += ["", "    # ingress-nginx's catch-all server (--default-server-port): the default backend's 404",
          "    server {", f"        listen {default_listen} default_server;", "        access_log off;",
          "        location / {", "            return 404;", "        }", "    }"]
    L.append("}")
    return "\n".join(L) + "\n"


def _proxy(r: Route) -> list[str]:
    if not r.upstreams:
        return [f"            # {r.namespace}/{r.service}:{r.port} has no ready endpoints",
                "            return 503;"]
    return [f"            # ingress {r.namespace}/{r.ingress} -> service {r.service}:{r.port}",
            "            proxy_http_version 1.1;",
            "            proxy_set_header Connection \"\";",
            "            proxy_set_header Host $host;",
            "            proxy_set_header X-Real-IP $remote_addr;",
            "            proxy_set_header X-Forwarded-For $remote_addr;",
            "            proxy_set_header X-Forwarded-Host $host;",
            "            proxy_set_header X-Forwarded-Port $server_port;",
            "            proxy_set_header X-Forwarded-Proto $scheme;",
            "            proxy_set_header X-Request-ID $request_id;",
            f"            proxy_pass http://{r.upstream_name};"]


def _locations(routes: list[Route], default: Route | None) -> list[str]:
    out: list[str] = []
    seen: set[str] = set()
    ordered = sorted(routes, key=lambda r: (0 if r.path_type == "Exact" else 1, -len(r.path), r.path))
    for r in ordered:
        if r.path_type == "Exact":
            specs = [f"= {r.path}"]
        elif r.path_type == "ImplementationSpecific" or r.path.rstrip("/") == "":
            specs = [r.path]
        else:
            p = r.path.rstrip("/")
            specs = [f"= {p}", f"{p}/"]
        for spec in specs:
            if spec in seen:
                continue
            seen.add(spec)
            out += [f"        location {spec} {{"] + _proxy(r) + ["        }"]
    if "/" not in seen:
        if default is not None:
            out += ["        location / {"] + _proxy(default) + ["        }"]
        else:
            # ingress-nginx gives every server a root location on the default backend
            out += ["        location / {", "            # no Ingress path matched: the controller's default backend",
                    "            proxy_pass http://upstream-default-backend;", "        }"]
    return out
