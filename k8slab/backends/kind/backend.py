"""The ``kind`` backend: a real Kubernetes cluster in Docker containers on the learner's machine.

Everything here runs ``docker``, ``kind`` and ``kubectl`` through :mod:`k8slab.runner` (argv lists,
timeouts, stderr kept). The cluster gets its own kubeconfig in the user cache
(``~/.cache/k8slab/<name>/kubeconfig``) and every kubectl call passes ``--kubeconfig``: the learner's
current context is never switched.

This module holds :class:`KindBackend`; what it parses is in :mod:`.parse`, its checks in
:mod:`.doctor`, its port-forwards in :mod:`.portforward`.

The ingress controller is a setting (``controller="ingress-nginx"``); ingress-nginx is retired (see
:mod:`k8slab.backends.ingress_nginx`), and Gateway API or another controller replaces it.
"""
from __future__ import annotations

import http.client
import json
import os
import re
import secrets
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from ... import runner
from ...errors import BackendUnavailable, CommandError, CommandNotFound, CommandTimeout, LabStateError, NotFound
from ...progress import Progress
from ..base import Backend, ConntrackEntry, From, NodeInfo, PortForward, Response, Route, Socket, parse_ip_route
from .. import ingress_nginx
from .doctor import APP_BUILD_ENV, INSTALL, KindDoctor, cache_dir, find_kubectl
from .errors import (ConfigMismatch, HostPortInUse, RolloutFailed, WebhookNotReady, validate_name,
                     validate_target)
from .parse import (Container, KindConfig, applied_names, busy_port_in, config_differences,
                    container_mappings, destination_of, explain_problems, free_port_hint, objects_to_yaml,
                    parse_conntrack, parse_crictl_ps, parse_ip_addrs, parse_kind_clusters,
                    parse_kind_version, parse_kubectl_version, parse_ss, pick_iptables, pod_problems,
                    read_kind_config, whoami_of)
from . import traffic
from .traffic import split_curl_batch
from .portforward import (KubectlPortForward, PythonPortForward, _claim_port, _register,
                          close_all_port_forwards, python_client_connector)

APP_IMAGE = "k8slab/url-shortener:0.1.0"
CLIENT_IMAGE = "curlimages/curl:8.11.1"       # the image of kind/manifests/client.yaml
CLIENT_MANIFEST = Path("kind/manifests/client.yaml")
CLIENT_POD = "default/k8slab-client"          # "from a pod" requests start here (Lab.client_pod)
# Runs curl "$@" $1 times; after each, curl's -w marker gets " <exit code>@@" and a newline.
CURL_LOOP = 'n=$1; shift; i=0; while [ "$i" -lt "$n" ]; do i=$((i+1)); curl "$@"; printf " %s@@\\n" "$?"; done'
DEFAULT_CONFIG = Path("kind/cluster.yaml")
MODEL_KINDS = ("nodes", "pods", "services", "endpointslices", "ingressclasses", "ingresses", "deployments")


# --------------------------------------------------------------------------------------------------
# The backend.
# --------------------------------------------------------------------------------------------------
class KindBackend(KindDoctor, Backend):
    """A real cluster from kind/cluster.yaml, on Docker, with its own kubeconfig."""
    kind = "kind"
    live = True

    def __init__(self, name: str = "k8slab", *, root: Path | None = None, progress: Progress | None = None,
                 controller: str = "ingress-nginx", config: Path | None = None):
        validate_name(name, "cluster name")
        root = Path(root) if root is not None else Path.cwd()
        super().__init__(name, root=root, progress=progress or Progress())
        if controller not in ingress_nginx.CONTROLLERS:
            raise ValueError(f"unknown ingress controller {controller!r}; known: "
                             f"{', '.join(ingress_nginx.CONTROLLERS)}")
        self.controller = ingress_nginx.CONTROLLERS[controller]
        self.config_path = Path(config) if config else root / DEFAULT_CONFIG
        self.kubeconfig = cache_dir(name) / "kubeconfig"
        self.timeouts = {"create": 600.0, "rollout": 180.0, "controller": 240.0, "command": 60.0,
                         "build": 900.0, "load": 300.0}
        self._loaded_images: set[str] = set()
        self.iptables_mode = ""
        self.history: list[Response] = []     # every request() answer, for Lab.record
        self.ingress_manifest: ingress_nginx.ManifestSource | None = None
        self._forget_cluster()

    def _forget_cluster(self) -> None:
        """What is learnt about one cluster: node IPs, whether they are reachable, the client pod."""
        self._ips: dict[str, str] = {}
        self._reach: bool | None = None
        self._reach_detail = ""
        self._client_ready = False

    # --- tools ------------------------------------------------------------------------------------
    @property
    def control_plane(self) -> str:
        return f"{self.name}-control-plane"

    def _kubectl_bin(self) -> str:
        k = find_kubectl()
        if not k:
            raise CommandNotFound(f"kubectl is not installed. Fix: {INSTALL['kubectl']}", ["kubectl"])
        return k

    def kubectl_argv(self, *args: str) -> list[str]:
        return [self._kubectl_bin(), "--kubeconfig", str(self.kubeconfig), *args]

    @property
    def kubectl_hint(self) -> str:
        """How the learner runs kubectl against this cluster themselves."""
        return f"kubectl --kubeconfig {self.kubeconfig}"

    def _kubectl(self, *args: str, timeout: float | None = None, input: str | None = None,
                 check: bool = True, hint: str = "") -> runner.Result:
        self._need_kubeconfig()
        return runner.run(self.kubectl_argv(*args), timeout=timeout or self.timeouts["command"],
                          input=input, check=check, hint=hint)

    def _kubectl_json(self, *args: str, timeout: float | None = None) -> dict:
        return json.loads(self._kubectl(*args, "-o", "json", timeout=timeout).stdout or "{}")

    def _need_kubeconfig(self) -> None:
        if not self.kubeconfig.is_file():
            raise LabStateError(f"no kubeconfig for cluster {self.name!r} at {self.kubeconfig}: "
                                "run lab.up() (or `k8slab up`) first")

    def _docker(self, *args: str, timeout: float | None = None, check: bool = True, input: str | None = None,
                hint: str = "") -> runner.Result:
        return runner.run(["docker", *args], timeout=timeout or self.timeouts["command"], check=check,
                          input=input, hint=hint or f"Is Docker running? Fix: {INSTALL['docker']}")

    def _kind(self, *args: str, timeout: float | None = None, check: bool = True) -> runner.Result:
        return runner.run(["kind", *args], timeout=timeout or self.timeouts["command"], check=check,
                          hint=f"Fix: {INSTALL['kind']}" if args[:1] == ("version",) else "")

    def _exec(self, node: str, *args: str, check: bool = True, timeout: float | None = None) -> runner.Result:
        return self._docker("exec", validate_name(node, "node name"), *args, check=check, timeout=timeout,
                            hint=f"Is node {node} running? `docker ps --filter name={node}`")

    # --- can it run here? -------------------------------------------------------------------------
    # --- lifecycle --------------------------------------------------------------------------------
    def clusters(self) -> list[str]:
        return parse_kind_clusters(self._kind("get", "clusters").stdout)

    def is_up(self) -> bool:
        try:
            return self.name in self.clusters()
        except CommandError:
            return False

    def up(self, config: Path | None = None) -> None:
        """Create the cluster (or reuse one of that name made from the same config), then write its
        own kubeconfig and wait for the nodes."""
        if config is not None:
            self.config_path = Path(config)
        self._forget_cluster()
        self.progress.step("checking Docker, kind, kubectl and host ports (doctor)")
        failed = [f for f in self.doctor() if not f.ok and f.blocking]
        if failed:
            raise BackendUnavailable("the kind backend cannot start here:\n" + "\n".join(
                f"  - {f.check}: {f.detail}. Fix: {f.fix}" for f in failed))
        cfg = read_kind_config(self.config_path)
        if self.name in self.clusters():
            self._check_existing(cfg)
            self.progress.step(f"reusing cluster {self.name} (same config)")
        else:
            self._create(cfg)
        self._write_kubeconfig()
        self.progress.step("waiting for the nodes to be Ready")
        self._kubectl("wait", "--for=condition=Ready", "nodes", "--all", f"--timeout={int(self.timeouts['rollout'])}s",
                      timeout=self.timeouts["rollout"] + 15,
                      hint=f"Look at `{self.kubectl_hint} describe nodes` and `docker logs {self.control_plane}`")
        self.progress.step(f"cluster {self.name} is up; kubectl: {self.kubectl_hint}")

    def _check_existing(self, cfg: KindConfig) -> None:
        res = self._docker("inspect", self.control_plane, check=False)
        try:
            data = json.loads(res.stdout or "[]")
        except json.JSONDecodeError:
            data = []
        if not res.ok or not data:
            raise ConfigMismatch(
                f"kind lists a cluster {self.name!r} but its node {self.control_plane} is not there "
                f"(stopped or half-deleted). Fix: `k8slab down {self.name}` (kind delete cluster "
                f"--name {self.name}) and run up again")
        image, maps = container_mappings(data[0])
        diffs = config_differences(cfg, image, maps, node_names=self.node_names())
        if diffs:
            raise ConfigMismatch(
                f"a cluster named {self.name!r} already exists with another config: " + "; ".join(diffs) +
                f". Fix: remove it with `k8slab down {self.name}` (or `kind delete cluster --name "
                f"{self.name}`), or choose another name: Lab(backend='kind', name='k8slab2')")

    def _create(self, cfg: KindConfig) -> None:
        self.progress.step(f"creating cluster {self.name} from {self.config_path} (the first time pulls the "
                           "node image: a few minutes)")
        self.kubeconfig.parent.mkdir(parents=True, exist_ok=True)
        argv = ["kind", "create", "cluster", "--name", self.name, "--config", str(self.config_path),
                "--kubeconfig", str(self.kubeconfig), "--wait", "120s"]
        rc, err = self._stream(argv, self.timeouts["create"])
        if rc != 0:
            port = busy_port_in(err)
            if port is not None:
                raise HostPortInUse(
                    f"kind could not create {self.name}: host port {port} is already in use. Fix: "
                    f"{free_port_hint(port)}; then `kind delete cluster --name {self.name}` and run up again")
            if "node(s) already exist for a cluster with the name" in err:
                raise ConfigMismatch(f"kind says cluster {self.name!r} already exists. Fix: `k8slab down "
                                     f"{self.name}` or choose another name")
            last = [l for l in err.strip().splitlines() if l.strip()][-3:]
            raise CommandError(f"kind create cluster failed (exit {rc}): {' / '.join(last)}. Look at the "
                               f"full output above; `kind export logs --name {self.name}` collects node logs",
                               argv, rc, err)

    def _stream(self, argv: list[str], timeout: float) -> tuple[int, str]:
        """Run a long command, turning its stderr lines into progress lines; kill it on timeout."""
        proc = runner.spawn(argv, stdout=subprocess.DEVNULL, hint=f"Fix: {INSTALL.get(argv[0], '')}")
        lines: list[str] = []

        def read() -> None:
            for raw in iter(proc.stderr.readline, b""):
                line = raw.decode("utf-8", "replace").rstrip()
                lines.append(line)
                shown = re.sub(r"[^\x20-\x7e✓✗•≤]+", "", line).strip()
                # Timing lines ("Ready after 15s") would make outputs differ from run to run.
                if shown and not re.search(r"\bafter \d", shown):
                    self.progress.step(f"kind: {shown}")
        t = threading.Thread(target=read, daemon=True)
        t.start()
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            runner.stop(proc)
            t.join(timeout=2)
            raise CommandTimeout(f"`{' '.join(argv)}` did not finish within {timeout:g} s and was stopped. "
                                 f"Check `docker ps` and `docker logs {self.control_plane}`; on a slow network the "
                                 "node image pull takes long: pull it first with `docker pull` and run up again",
                                 argv, None, "\n".join(lines))
        t.join(timeout=5)
        runner.stop(proc)
        return rc, "\n".join(lines)

    def _write_kubeconfig(self) -> None:
        text = self._kind("get", "kubeconfig", "--name", self.name).stdout
        self.kubeconfig.parent.mkdir(parents=True, exist_ok=True)
        self.kubeconfig.write_text(text)
        self.kubeconfig.chmod(0o600)

    def down(self) -> None:
        """Delete the cluster (nothing happens if it does not exist) and its cached kubeconfig."""
        close_all_port_forwards()
        self._forget_cluster()
        self.progress.step(f"deleting cluster {self.name}")
        self.kubeconfig.parent.mkdir(parents=True, exist_ok=True)
        self._kind("delete", "cluster", "--name", self.name, "--kubeconfig", str(self.kubeconfig),
                   timeout=180)
        if self.kubeconfig.exists():
            self.kubeconfig.unlink()
        self._loaded_images.clear()

    # --- the app and the controller ---------------------------------------------------------------
    def build_app_image(self, image: str = APP_IMAGE) -> None:
        """``docker build`` without a default provenance attestation (:data:`.doctor.APP_BUILD_ENV`
        says why: otherwise the image does not load on Docker's containerd image store)."""
        self.progress.step(f"building {image} from app/")
        runner.run(["docker", "build", "-t", image, str(self.root / "app")], env=APP_BUILD_ENV,
                   timeout=self.timeouts["build"],
                   hint="Read the build output above; the Dockerfile is app/Dockerfile")

    def load_image(self, image: str = APP_IMAGE) -> None:
        self.progress.step(f"loading {image} into the nodes (kind load docker-image)")
        self._kind("load", "docker-image", image, "--name", self.name, timeout=self.timeouts["load"])

    def ensure_app_image(self, image: str = APP_IMAGE) -> None:
        """Build and load a local image once per backend object (``:latest`` is refused)."""
        if image.endswith(":latest") or ":" not in image.rsplit("/", 1)[-1]:
            raise ValueError(f"image {image!r} needs a pinned tag (e.g. {APP_IMAGE}), never latest: kind "
                             "nodes would try to pull it")
        if image not in self._loaded_images:
            self.build_app_image(image)
            self.load_image(image)
            self._loaded_images.add(image)

    def apply(self, objects: list[dict]) -> list[str]:
        """Server-side apply (field manager ``k8slab``), YAML on stdin. The app's image is built and
        loaded first when a Deployment uses it. Retries while the admission webhook is not ready."""
        for image in sorted(set(re.findall(r'"image": "(k8slab/[^"]+)"', json.dumps(objects)))):
            self.ensure_app_image(image)     # built here and loaded into the nodes, never pulled
        text = objects_to_yaml(objects)
        deadline = time.monotonic() + self.timeouts["controller"] / 4
        while True:
            res = self._kubectl("apply", "--server-side", "--field-manager=k8slab", "--force-conflicts",
                                "-f", "-", input=text, check=False)
            if res.ok:
                return applied_names(res.stdout)
            err = res.stderr.strip()
            if "failed calling webhook" in err or "admission" in err and "connection refused" in err:
                if time.monotonic() < deadline:
                    time.sleep(2)
                    continue
                ctl = self.controller
                raise WebhookNotReady(
                    f"the {ctl.name} admission webhook does not answer yet, so Ingress objects are refused "
                    f"({err.splitlines()[-1]}). Fix: wait for it (lab.install_ingress_controller() waits); look "
                    f"at `{self.kubectl_hint} -n {ctl.namespace} get pods,endpointslices`; "
                    f"{self._webhook_certificate_hint()}")
            raise CommandError(f"kubectl apply failed: {err.splitlines()[-1] if err else 'no message'}. "
                               "Check the manifest's kind, apiVersion and names", list(res.argv),
                               res.returncode, err)

    def delete(self, kind: str, name: str, namespace: str = "default") -> None:
        validate_name(namespace, "namespace")
        self._kubectl("delete", kind, validate_name(name, "name"), "-n", namespace, "--ignore-not-found",
                      "--wait=true", timeout=120)

    def scale(self, deployment: str, replicas: int, namespace: str = "default") -> None:
        validate_name(namespace, "namespace")
        self._kubectl("scale", f"deployment/{validate_name(deployment, 'deployment')}",
                      f"--replicas={int(replicas)}", "-n", namespace)
        self.rollout(deployment, namespace)

    def rollout(self, deployment: str, namespace: str = "default", timeout: float | None = None) -> None:
        """Wait for a Deployment's rollout; on failure say which pod is stuck and why."""
        timeout = timeout or self.timeouts["rollout"]
        self.progress.step(f"waiting for deployment/{deployment} in {namespace}")
        argv = ("rollout", "status", f"deployment/{deployment}", "-n", namespace, f"--timeout={int(max(1, timeout))}s")
        try:
            res = self._kubectl(*argv, timeout=timeout + 15, check=False)
            if res.ok:
                return
            why = res.stderr.strip() or res.stdout.strip()
        except CommandTimeout:
            why = f"kubectl rollout status did not return within {timeout + 15:g} s"
        self._raise_pod_problems(f"deployment/{deployment} in {namespace} is not ready ({why.splitlines()[-1]})",
                                 namespace)

    def _raise_pod_problems(self, headline: str, namespace: str, selector: str | None = None) -> None:
        args = ["get", "pods", "-n", namespace] + (["-l", selector] if selector else [])
        try:
            pods = self._kubectl_json(*args).get("items", [])
        except CommandError:
            pods = []
        cls, text = explain_problems(pod_problems(pods), self.kubectl_hint, self.name)
        raise cls(f"{headline}.\n{text or 'Look: `' + self.kubectl_hint + ' get pods -n ' + namespace + '` and `' + self.kubectl_hint + ' get events -n ' + namespace + ' --sort-by=.lastTimestamp`'}")

    def wait_ready(self, timeout: float = 120.0) -> None:
        """Every Deployment outside kube-system rolled out."""
        items = self._kubectl_json("get", "deployments", "-A").get("items", [])
        namespaces = set()
        for d in items:
            ns = d["metadata"].get("namespace", "default")
            if ns in ("kube-system", "local-path-storage"):
                continue
            namespaces.add(ns)
            self.rollout(d["metadata"]["name"], ns, timeout)
        if self.controller.namespace in namespaces and self.controller.admission_service:
            self.wait_webhook(timeout)      # Ingress objects are refused until it answers

    def deploy_app(self, objects: list[dict], replicas: int | None = None) -> list[str]:
        """Build and load the app image, apply its manifests, wait for every Deployment among them."""
        self.ensure_app_image()
        if replicas is not None:
            for o in objects:
                if o.get("kind") == "Deployment":
                    o.setdefault("spec", {})["replicas"] = int(replicas)
        names = self.apply(objects)
        for o in objects:
            if o.get("kind") == "Deployment":
                self.rollout(o["metadata"]["name"], o["metadata"].get("namespace", "default"))
        return names

    def install_ingress_controller(self, objects: list[dict] | None = None,
                                   timeout: float | None = None) -> list[str]:
        """Install the pinned controller manifest and wait for its pod and its admission webhook.
        ``objects`` (the repository's copy) is ignored: the pinned release is used, and the
        repository's copy only when it cannot be downloaded (:func:`ingress_nginx.manifest`)."""
        import yaml
        ctl = self.controller
        timeout = timeout or self.timeouts["controller"]
        src = ctl.manifest(self.root)
        self.ingress_manifest = src
        self.progress.step(f"installing {ctl.name} {ingress_nginx.VERSION} ({src.origin}"
                           f"{', sha256 verified' if src.verified else ''})")
        if src.note:
            self.progress.step(src.note)
        objects = [o for o in yaml.safe_load_all(src.text) if o]
        names = self.apply(objects)
        self.wait_pods_ready(ctl.namespace, ctl.controller_selector, timeout, what=f"the {ctl.name} controller",
                             owner=f"deployment {ctl.deployment}")
        if ctl.admission_service:
            self.wait_webhook(timeout)
        return names

    def wait_pods_ready(self, namespace: str, selector: str, timeout: float, *, what: str, owner: str) -> None:
        """Wait until pods matching ``selector`` exist, then until they are Ready; one deadline for both.

        ``kubectl wait -l SELECTOR`` does not wait for pods to appear: when nothing matches it exits at
        once with "error: no matching resources found" (kubectl pkg/cmd/wait/wait.go RunWaitContext,
        ``errNoMatchingResources`` when no object was visited, kubectl 1.30 to 1.37). Right after an
        apply the Deployment's ReplicaSet may not have created its pod yet (the race of kind issue
        #2293), so the pods are first listed until one exists, and a wait that still finds nothing
        (the pod was replaced in between) is retried until the deadline.
        """
        deadline = time.monotonic() + timeout
        pause = min(1.0, max(0.05, timeout / 20))
        self.progress.step(f"waiting for {what} pod to exist ({selector} in {namespace})")
        while not self._kubectl_json("get", "pods", "-n", namespace, "-l", selector).get("items"):
            if time.monotonic() >= deadline:
                raise RolloutFailed(
                    f"no pod with {selector} appeared in {namespace} within {timeout:g} s: {owner} did not "
                    f"create one. Fix: look at `{self.kubectl_hint} -n {namespace} describe "
                    f"{owner}` (its ReplicaSet's events: a missing ServiceAccount, a quota, "
                    f"an admission refusal) and `{self.kubectl_hint} -n {namespace} get events "
                    "--sort-by=.lastTimestamp`")
            time.sleep(pause)
        self.progress.step(f"{what} pod exists; waiting for it to be ready")
        while True:
            left = max(1, int(deadline - time.monotonic()))
            argv = ("-n", namespace, "wait", "--for=condition=ready", "pod", "-l", selector, f"--timeout={left}s")
            try:
                res = self._kubectl(*argv, timeout=left + 15, check=False)
                ok, why = res.ok, (res.stderr or res.stdout).strip()
            except CommandTimeout:
                ok, why = False, f"kubectl wait did not return within {left + 15:g} s"
            if ok:
                return
            if "no matching resources found" in why and time.monotonic() < deadline:
                time.sleep(pause)           # the pod went away (replaced) between the list and the wait
                continue
            self._raise_pod_problems(f"{what} is not ready ({why.splitlines()[-1] if why else ''})",
                                     namespace, selector)

    def wait_webhook(self, timeout: float = 120.0) -> None:
        ctl = self.controller
        self.progress.step(f"waiting for the {ctl.name} admission webhook")
        deadline = time.monotonic() + timeout
        while True:
            data = self._kubectl_json("-n", ctl.namespace, "get", "endpointslices", "-l",
                                      f"kubernetes.io/service-name={ctl.admission_service}")
            ready = [e for s in data.get("items", []) for e in s.get("endpoints") or []
                     if (e.get("conditions") or {}).get("ready")]
            if ready:
                return
            if time.monotonic() >= deadline:
                raise WebhookNotReady(
                    f"the {ctl.name} admission webhook ({ctl.admission_service}) has no ready endpoint after "
                    f"{timeout:g} s, so Ingress objects would be refused. Fix: look at `{self.kubectl_hint} -n "
                    f"{ctl.namespace} get pods,endpointslices` and `{self.kubectl_hint} -n {ctl.namespace} "
                    f"logs deploy/{ctl.deployment}`; {self._webhook_certificate_hint()}; then run "
                    "install_ingress_controller() again")
            time.sleep(min(2.0, max(0.05, timeout / 20)))

    def _webhook_certificate_hint(self) -> str:
        """Where the webhook's certificate comes from, and what to check (not the Jobs: they are gone).

        ingress-nginx's kind manifest (controller-v1.15.1) runs two Jobs, ingress-nginx-admission-create
        and -patch, that write the Secret ingress-nginx-admission and patch the webhook's caBundle; both
        have ``ttlSecondsAfterFinished: 0``, so they and their pods are deleted the moment they complete.
        An empty ``get jobs`` is the normal case; the Secret is what they leave behind.
        """
        ctl = self.controller
        if not ctl.admission_secret:
            return f"look at `{self.kubectl_hint} -n {ctl.namespace} get events --sort-by=.lastTimestamp`"
        jobs = " and ".join(ctl.admission_jobs) or "certificate Jobs"
        return (f"the certificate Jobs ({jobs}) delete themselves once complete (ttlSecondsAfterFinished: 0), "
                f"so do not look for them; check what they leave: `{self.kubectl_hint} -n {ctl.namespace} get "
                f"secret {ctl.admission_secret}` (the controller mounts it; if it is missing, `{self.kubectl_hint} "
                f"-n {ctl.namespace} get pods,events` shows why the create Job's pod failed)")

    # --- reading the cluster ----------------------------------------------------------------------
    def objects(self, kind: str) -> list[dict]:
        if not re.match(r"^[A-Za-z][A-Za-z0-9.]*$", kind):
            raise ValueError(f"kind {kind!r} is not valid: use e.g. pods, services, ingresses")
        # kubectl resolves Pod, pod and pods alike; List items carry their apiVersion and kind.
        return self._kubectl_json("get", kind.lower(), "-A").get("items", [])

    def node_names(self) -> list[str]:
        return parse_kind_clusters(self._kind("get", "nodes", "--name", self.name).stdout)

    def nodes(self) -> list[NodeInfo]:
        items = self._kubectl_json("get", "nodes").get("items", [])
        names = [i["metadata"]["name"] for i in items]
        ips: dict[str, str] = {}
        images: dict[str, str] = {}
        if names:
            res = self._docker("inspect", *names, check=False)
            for c in json.loads(res.stdout or "[]"):
                nets = (c.get("NetworkSettings") or {}).get("Networks") or {}
                net = nets.get("kind") or next(iter(nets.values()), {})
                ips[c.get("Name", "").lstrip("/")] = net.get("IPAddress", "")
                images[c.get("Name", "").lstrip("/")] = (c.get("Config") or {}).get("Image", "")
        out = []
        for item in items:
            name = item["metadata"]["name"]
            labels = item["metadata"].get("labels") or {}
            role = "control-plane" if "node-role.kubernetes.io/control-plane" in labels else "worker"
            ip = ips.get(name) or next((a["address"] for a in item.get("status", {}).get("addresses", [])
                                        if a.get("type") == "InternalIP"), "")
            res = self._exec(name, "ip", "-4", "-o", "addr", "show", check=False)
            local = parse_ip_addrs(res.stdout) if res.ok else []
            local_ips = tuple(dict.fromkeys(["127.0.0.1", *([ip] if ip else []), *local]))
            image = images.get(name)
            runs_as = f"Docker container {name}" + (f" ({image})" if image else "")
            out.append(NodeInfo(name, role, ip, item.get("spec", {}).get("podCIDR", ""), local_ips, runs_as))
        return out

    def _node(self, node: str | None) -> str:
        return validate_name(node or self.control_plane, "node name")

    def iptables_save(self, node: str | None = None) -> str:
        """The node's rules with counters, from the iptables flavour that holds kube-proxy's chains."""
        node = self._node(node)
        dumps = {}
        for mode in ("legacy", "nft"):
            res = self._exec(node, f"iptables-{mode}-save", "-c", check=False)
            dumps[mode] = res.stdout if res.ok else None
        mode, text = pick_iptables(dumps["legacy"], dumps["nft"])
        if mode == "none":
            text = self._exec(node, "iptables-save", "-c").stdout
        self.iptables_mode = mode
        return text

    def nft_list_ruleset(self, node: str | None = None) -> str:
        """``docker exec NODE nft list ruleset``: kube-proxy's table in nftables mode (kind's node image
        ships nft) and the iptables-nft tables the node's other writers keep. A node whose iptables
        are iptables-legacy (a host Docker on legacy) has those rules outside nft's listing."""
        return self._exec(self._node(node), "nft", "list", "ruleset").stdout

    def host_iptables_save(self) -> str:
        """Docker's NAT rules on this machine (needs root on Linux; empty elsewhere, with a note)."""
        if sys.platform != "linux" or os.geteuid() != 0:
            self.progress.step("host iptables need root on Linux: run `sudo iptables-save -t nat` yourself")
            return ""
        dumps = {}
        for mode in ("legacy", "nft"):
            try:
                res = runner.run([f"iptables-{mode}-save", "-t", "nat", "-c"], timeout=20, check=False)
                dumps[mode] = res.stdout if res.ok else None
            except CommandNotFound:
                dumps[mode] = None
        cands = [(m, t) for m, t in dumps.items() if t]
        if not cands:
            return ""
        return max(cands, key=lambda mt: mt[1].count("DOCKER"))[1]

    def conntrack(self, node: str | None = None) -> list[ConntrackEntry]:
        return parse_conntrack(self._exec(self._node(node), "conntrack", "-L").stdout)

    def routes(self, node: str | None = None) -> list[Route]:
        return parse_ip_route(self._exec(self._node(node), "ip", "route").stdout)

    def containers(self, node: str | None = None) -> list[Container]:
        return parse_crictl_ps(self._exec(self._node(node), "crictl", "ps", "-o", "json").stdout)

    def sockets(self, node: str | None = None, pod: str | None = None) -> list[Socket]:
        node = self._node(node)
        if pod is None:
            return parse_ss(self._exec(node, "ss", "-ltnpH").stdout)
        pods = json.loads(self._exec(node, "crictl", "pods", "--name", validate_name(pod, "pod name"),
                                     "-o", "json").stdout or "{}").get("items") or []
        if not pods:
            raise NotFound(f"pod {pod} has no sandbox on node {node}: check `{self.kubectl_hint} get pods -o wide`")
        info = json.loads(self._exec(node, "crictl", "inspectp", pods[0]["id"]).stdout or "{}")
        pid = str((info.get("info") or {}).get("pid", ""))
        if not pid.isdigit():
            raise NotFound(f"cannot find the network namespace of pod {pod} on {node}")
        return parse_ss(self._exec(node, "nsenter", "-t", pid, "-n", "ss", "-ltnpH").stdout)

    def ingress_config(self) -> str:
        ctl = self.controller
        return self._kubectl("-n", ctl.namespace, "exec", f"deploy/{ctl.deployment}", "--", "cat",
                             ctl.config_path).stdout

    def model(self):
        """The live cluster read back into a :class:`k8slab.model.Cluster` (objects as they are: the
        real addresses, no allocation)."""
        from ...model import Cluster
        objs = [o for kind in MODEL_KINDS for o in self.objects(kind)]
        return Cluster.from_objects(objs, name=self.name)

    # --- traffic ----------------------------------------------------------------------------------
    # Requests from the host are made by this process (urllib). Requests from a node or a pod run
    # curl there: `docker exec NODE ...` or `kubectl exec -n NS POD -- ...` (the course's client pod,
    # kind/manifests/client.yaml, never `kubectl debug`: each debug adds an ephemeral container the
    # pod keeps for good, KEP-277). N requests are one exec running curl N times (CURL_LOOP), each
    # answer followed by a marker line with curl's own timing and exit code.
    def request(self, url: str, *, host: str | None = None, from_: From = "host",
                source: str | None = None, timeout: float = 10.0) -> Response:
        return self.requests(url, 1, host=host, from_=from_, source=source, timeout=timeout)[0]

    def requests(self, url: str, count: int, *, host: str | None = None, from_: From = "host",
                 source: str | None = None, timeout: float = 10.0) -> list[Response]:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"url {url!r} is not valid: write http://HOST[:PORT]/PATH")
        if host is not None and not re.match(r"^[A-Za-z0-9.-]+(:\d+)?$", host):
            raise ValueError(f"host header {host!r} is not a valid host name")
        if from_ not in ("host", "node", "pod"):
            raise ValueError(f"from_ must be 'host', 'node' or 'pod', not {from_!r}")
        note = ""
        if from_ == "host":
            node = self._node_of_ip(parts.hostname)
            if node is not None and not self.host_reaches_nodes():
                # Docker Desktop, colima, rootless Docker: the kind network is not routed from here.
                from_, source = "node", node
                note = (f"this machine cannot reach node IPs (probed: {self._reach_detail}); sent from "
                        f"node {node} instead, where {parts.hostname} is local")
        if from_ == "host":
            answers = []
            for _ in range(int(count)):
                start = time.monotonic()
                status, headers, body, error = self._request_host(url, host, timeout)
                answers.append((status, headers, body, error, (time.monotonic() - start) * 1000))
        elif from_ == "node":
            answers = self._curl_batch(["docker", "exec", self._node(source)], url, host, count, timeout)
        else:
            answers = self._curl_batch(self._pod_exec_prefix(source), url, host, count, timeout)
        out = []
        for status, headers, body, error, ms in answers:
            who = whoami_of(url, body) if status else None
            resp = Response(url=url, status=status, body=body, headers=headers, whoami=who, from_=from_,
                            backend=self.kind, predicted=False, elapsed_ms=ms,
                            destination=destination_of(who), error=error, note=note)
            resp.request = {"url": url, "host": host, "from_": from_, "source": source}  # type: ignore[attr-defined]
            out.append(resp)
        self.history.extend(out)
        del self.history[:-500]
        return out

    # --- can this machine reach the node IPs? ------------------------------------------------------
    def host_reaches_nodes(self) -> bool:
        """Probed once per cluster: a TCP connection from here to the control-plane's API server port
        on its node IP (kubeadm's apiserver listens on every address of the node, :6443). An answer,
        even a refusal, means the kind network is routed from here (Docker Engine on Linux); a timeout
        or "unreachable" means it is not (Docker Desktop's VM, colima, rootless Docker)."""
        if self._reach is None:
            ip = self._node_ips().get(self.control_plane, "")
            self._reach, self._reach_detail = traffic.probe_tcp(ip, 6443) if ip else (False, "no node IP known")
        return self._reach

    def _node_ips(self) -> dict[str, str]:
        if not self._ips:
            names = self.node_names()
            res = self._docker("inspect", *names, check=False) if names else None
            for c in json.loads(res.stdout or "[]") if res is not None else []:
                nets = (c.get("NetworkSettings") or {}).get("Networks") or {}
                net = nets.get("kind") or next(iter(nets.values()), {})
                if net.get("IPAddress"):
                    self._ips[c.get("Name", "").lstrip("/")] = net["IPAddress"]
        return self._ips

    def _node_of_ip(self, address: str) -> str | None:
        """The node whose IP ``address`` is (None for localhost, names, pod and service IPs)."""
        if not re.match(r"^\d+\.\d+\.\d+\.\d+$", address or "") or address.startswith("127."):
            return None
        return next((n for n, ip in self._node_ips().items() if ip == address), None)

    @staticmethod
    def _request_host(url: str, host: str | None, timeout: float):
        req = urllib.request.Request(url, headers={"Host": host} if host else {})
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # localhost: never a proxy
        try:
            with opener.open(req, timeout=timeout) as resp:
                return resp.status, {k.lower(): v for k, v in resp.headers.items()}, \
                    resp.read().decode("utf-8", "replace"), None
        except urllib.error.HTTPError as exc:
            return exc.code, {k.lower(): v for k, v in exc.headers.items()}, \
                exc.read().decode("utf-8", "replace"), None
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            reason = getattr(exc, "reason", exc)
            return None, {}, "", f"{reason}"

    def _pod_exec_prefix(self, source: str | None) -> list[str]:
        """``kubectl exec -n NS POD --``: in ``source`` (``namespace/name``), else the client pod."""
        self._need_kubeconfig()
        ns, _, pod = (source or self.ensure_client_pod()).rpartition("/")
        if not ns:
            raise NotFound(f"pod {pod!r}: name it as namespace/name (e.g. default/{pod}); "
                           f"`{self.kubectl_hint} get pods -A` lists them")
        return self.kubectl_argv("exec", "-n", validate_name(ns, "namespace"), validate_name(pod, "pod name"), "--")

    def ensure_client_pod(self) -> str:
        """The course's client pod (kind/manifests/client.yaml), applied once and waited for."""
        ns, _, name = CLIENT_POD.partition("/")
        if not self._client_ready:
            import yaml
            self.apply([o for o in yaml.safe_load_all((self.root / CLIENT_MANIFEST).read_text()) if o])
            self.wait_pod(ns, name)
        return CLIENT_POD

    def wait_pod(self, namespace: str, name: str, timeout: float | None = None) -> None:
        """``kubectl wait --for=condition=Ready pod/NAME``; on failure, why the pod is not ready."""
        timeout = timeout or self.timeouts["rollout"]
        res = self._kubectl("wait", "--for=condition=Ready", f"pod/{validate_name(name, 'pod name')}", "-n",
                            validate_name(namespace, "namespace"), f"--timeout={int(max(1, timeout))}s",
                            timeout=timeout + 15, check=False)
        if not res.ok:
            why = (res.stderr or res.stdout).strip().splitlines()[-1:] or [""]
            client = (namespace, name) == tuple(CLIENT_POD.split("/"))
            self._raise_pod_problems(f"pod {namespace}/{name} is not ready ({why[0]})", namespace,
                                     "app.kubernetes.io/name=k8slab-client" if client else None)
        if (namespace, name) == tuple(CLIENT_POD.split("/")):
            self._client_ready = True

    def _curl_batch(self, prefix: list[str], url: str, host: str | None, count: int, timeout: float):
        """Run curl ``count`` times in one command; one (status, headers, body, error, ms) each."""
        token = secrets.token_hex(4)
        # curl's arguments only: CURL_LOOP runs `curl "$@"` itself
        curl_args = ["-s", "-i", "--max-time", f"{timeout:g}", *(["-H", f"Host: {host}"] if host else []),
                     "-w", f"\n@@k8slab-{token} %{{time_total}}", url]
        argv = [*prefix, "sh", "-c", CURL_LOOP, "sh", str(int(count)), *curl_args]
        res = runner.run(argv, timeout=count * (timeout + 1) + 60, check=False)
        return split_curl_batch(res.stdout, token, count, res.stderr)

    def port_forward(self, target: str, local_port: int, remote_port: int, namespace: str = "default",
                     *, via: str = "kubectl", timeout: float = 30.0, connect=None) -> PortForward:
        """``kubectl port-forward`` (default) or the pure-Python variant (``via="python"``)."""
        kind, name = validate_target(target)
        validate_name(namespace, "namespace")
        local_port, remote_port = int(local_port), int(remote_port)
        if not (0 < local_port < 65536 and 0 < remote_port < 65536):
            raise ValueError("ports must be between 1 and 65535")
        _claim_port(local_port)
        if via == "kubectl":
            self._need_kubeconfig()
            argv = self.kubectl_argv("port-forward", "-n", namespace, f"{kind}/{name}", f"{local_port}:{remote_port}")
            pf: PortForward = KubectlPortForward(argv, local_port=local_port, target=f"{kind}/{name}",
                                                 remote_port=remote_port, timeout=timeout,
                                                 hint=f"Fix: {INSTALL['kubectl']}")
        elif via == "python":
            pod, port = self.resolve_pod(kind, name, remote_port, namespace)
            pf = PythonPortForward(connect or python_client_connector(self.kubeconfig), pod=pod,
                                   namespace=namespace, local_port=local_port, target=f"{kind}/{name}",
                                   remote_port=port)
        else:
            raise ValueError("via must be 'kubectl' or 'python'")
        _register(pf)
        return pf

    def resolve_pod(self, kind: str, name: str, port: int, namespace: str = "default") -> tuple[str, int]:
        """Which pod and container port a port-forward to ``kind/name:port`` reaches (like kubectl:
        one ready pod behind the Service, the Service port mapped to its targetPort)."""
        if kind == "pod":
            return name, port
        if kind == "deployment":
            dep = self._kubectl_json("get", "deployment", name, "-n", namespace)
            sel = dep["spec"]["selector"].get("matchLabels", {})
            pods = self._kubectl_json("get", "pods", "-n", namespace, "-l",
                                      ",".join(f"{k}={v}" for k, v in sel.items())).get("items", [])
            ready = [p for p in pods if not pod_problems([p])]
            if not ready:
                raise NotFound(f"deployment/{name} has no ready pod")
            return ready[0]["metadata"]["name"], port
        svc = self._kubectl_json("get", "service", name, "-n", namespace)
        sport = next((p for p in svc["spec"].get("ports", []) if p.get("port") == port), None)
        if sport is None:
            raise NotFound(f"service {name} has no port {port}: `{self.kubectl_hint} get svc {name} -n {namespace}`")
        slices = self._kubectl_json("get", "endpointslices", "-n", namespace, "-l",
                                    f"kubernetes.io/service-name={name}").get("items", [])
        for s in slices:
            sp = next((p for p in s.get("ports") or [] if p.get("name", "") == sport.get("name", "")), None)
            for e in s.get("endpoints") or []:
                if (e.get("conditions") or {}).get("ready") and (e.get("targetRef") or {}).get("kind") == "Pod":
                    tp = sp["port"] if sp else sport.get("targetPort", port)
                    return e["targetRef"]["name"], int(tp)
        raise NotFound(f"service {name} has no ready endpoint to forward to: check "
                       f"`{self.kubectl_hint} get endpointslices -n {namespace}` and the pods' readiness")

    # --- for Lab.record ---------------------------------------------------------------------------
    def versions(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for name, argv, parse in (("kind", ["kind", "version"], parse_kind_version),
                                  ("docker", ["docker", "version", "--format", "{{.Server.Version}}"], str.strip)):
            try:
                res = runner.run(argv, timeout=20, check=False)
                out[name] = parse(res.stdout) if res.ok else ""
            except CommandError:
                out[name] = ""
        k = find_kubectl()
        if k:
            try:
                out["kubectl"] = parse_kubectl_version(runner.run([k, "version", "--client", "-o", "json"],
                                                                  timeout=20, check=False).stdout)
            except CommandError:
                out["kubectl"] = ""
        if self.kubeconfig.is_file():
            try:
                data = json.loads(self._kubectl("version", "-o", "json", check=False).stdout or "{}")
                out["kubernetes"] = (data.get("serverVersion") or {}).get("gitVersion", "")
            except (CommandError, json.JSONDecodeError):
                pass
        out["ingress-controller"] = f"{self.controller.name} {ingress_nginx.VERSION}"
        return out

    # --- kube-proxy out of the data path (the commands: .kubeproxy) --------------------------------
    def kube_proxy_state(self) -> str:
        from . import kubeproxy
        return kubeproxy.state(self)

    def stop_kube_proxy(self, timeout: float = 120.0) -> None:
        from . import kubeproxy
        kubeproxy.stop(self, timeout)

    def flush_kube_proxy_rules(self) -> None:
        from . import kubeproxy
        kubeproxy.flush(self)

    def start_kube_proxy(self, timeout: float = 180.0) -> None:
        from . import kubeproxy
        kubeproxy.start(self, timeout)
