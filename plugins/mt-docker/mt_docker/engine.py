"""The Docker engine: client, availability probe, labelled hardened containers, stale cleanup."""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import struct
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from mt_core import owners

from .config import SANDBOX_USER, SandboxConfig
from .errors import SandboxError

logger = logging.getLogger(__name__)

LABEL = "mt-core.sandbox"  # on every sandbox container: `docker ps -a --filter label=mt-core.sandbox`
OWNER_LABEL = "mt-core.owner"  # host:boot-id:pid:start-time of the process that made it
SERVER_COMMAND = ["/opt/mt/venv/bin/python", "-u", "/opt/mt/server.py"]
AVAILABILITY_TTL = 5.0
STARTUP_TIMEOUT = 60.0  # a new container's server imports smolagents before its first reply
MAX_REPLY_BYTES = 4 << 20  # one reply line from the container
CHUNK_BYTES = 64 << 10  # frames of the attach stream are read in pieces of at most this size

_lock = threading.Lock()
_clients: dict[str, Any] = {}
_probes: dict[tuple[str, str], tuple[float, str | None]] = {}
_swept: set[str] = set()


def docker_host() -> str:
    """The engine address in force (``DOCKER_HOST`` or the default socket)."""
    return os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"


def client() -> Any:
    """A ``docker.DockerClient`` for the engine in force; stale containers are swept on first use."""
    host = docker_host()
    with _lock:
        found = _clients.get(host)
    if found is None:
        import docker

        found = docker.DockerClient(base_url=host, timeout=60)
        with _lock:
            found = _clients.setdefault(host, found)
    if host not in _swept:
        _swept.add(host)
        remove_stale(found)
    return found


def availability(image: str) -> str | None:
    """``None`` when sandboxes can run with ``image`` as base, else why not. Cached for a few seconds."""
    key = (docker_host(), image)
    with _lock:
        cached = _probes.get(key)
    if cached is not None and time.monotonic() - cached[0] < AVAILABILITY_TTL:
        return cached[1]
    reason = _probe(image)
    with _lock:
        _probes[key] = (time.monotonic(), reason)
    return reason


def forget_availability() -> None:
    """Drop cached probe results (after starting the engine or building an image)."""
    with _lock:
        _probes.clear()


def _probe(image: str) -> str | None:
    try:
        import docker
        import docker.errors
    except ImportError:
        return "the Python package 'docker' is not installed (pip install docker)"

    host = docker_host()
    try:
        probe = docker.DockerClient(base_url=host, timeout=5)
        try:
            probe.ping()
        finally:
            probe.close()
    except Exception as exc:  # noqa: BLE001 - any failure to reach the engine means "unavailable"
        return f"the Docker daemon is not reachable at {host}: {first_line(exc)}"
    try:
        client().images.get(image)
    except docker.errors.ImageNotFound:
        return (
            f"the base image {image!r} is not present in the local Docker engine (runs never pull it);"
            f" {local_base_image_hint(client())}, or run `mt sandbox build` where a registry is reachable"
        )
    except Exception as exc:  # noqa: BLE001
        return f"the Docker daemon at {host} failed to inspect image {image!r}: {first_line(exc)}"
    return None


LOCAL_BASE_IMAGE = "mt-base:bookworm"  # what scripts/docker-setup.sh builds without a registry


def local_base_image_hint(docker_client: Any) -> str:
    """What to set when the base image is missing: the local image of scripts/docker-setup.sh when present."""
    import docker.errors

    try:
        docker_client.images.get(LOCAL_BASE_IMAGE)
    except docker.errors.ImageNotFound:
        return (
            "set DOCKER_IMAGE to a local glibc image with python3 (scripts/docker-setup.sh in the mt-core"
            f" repository builds {LOCAL_BASE_IMAGE} without a registry)"
        )
    except Exception:  # noqa: BLE001 - only a hint
        return "set DOCKER_IMAGE to a local glibc image with python3"
    return f"the local image {LOCAL_BASE_IMAGE} is present: set DOCKER_IMAGE={LOCAL_BASE_IMAGE}"


def first_line(exc: BaseException) -> str:
    """The first line of an engine error's message, for one-line reports: Python reprs such as
    ``FileNotFoundError(2, 'No such file or directory')`` inside it become their message, and the
    class is named only when the message is empty."""
    text = str(exc).strip().splitlines()
    line = text[0] if text and text[0] else type(exc).__name__
    return _REPR.sub(r"\1", line)


_REPR = re.compile(r"\b[A-Z]\w*(?:Error|Exception)\((?:\d+, )?'([^']*)'\)")


# -- ownership labels ----------------------------------------------------------------------------


def owner_id(pid: int | None = None) -> str:
    """The owner label value for this process (or process ``pid`` of this host)."""
    return owners.current(pid).label()


def owner_alive(owner: str) -> bool:
    """Whether the process named by an owner label still runs (unknown owners, and owners on
    another machine sharing the engine, count as alive)."""
    parsed = owners.Owner.from_label(owner)
    return parsed is None or not owners.gone(parsed)


def labels(**extra: str) -> dict[str, str]:
    """Labels for a new sandbox container."""
    return {LABEL: "1", OWNER_LABEL: owner_id(), **{f"mt-core.{k}": str(v) for k, v in extra.items()}}


def remove_stale(docker_client: Any) -> int:
    """Remove sandbox containers whose owner process is gone (killed hosts); return how many."""
    removed = 0
    try:
        containers = docker_client.api.containers(all=True, filters={"label": LABEL})
    except Exception:  # noqa: BLE001 - cleanup must never break a run
        logger.debug("listing sandbox containers failed", exc_info=True)
        return 0
    for info in containers:
        owner = (info.get("Labels") or {}).get(OWNER_LABEL, "")
        if not owner_alive(owner):
            remove_container(docker_client, info["Id"])
            removed += 1
    if removed:
        logger.info("removed %d stale sandbox container(s)", removed)
    return removed


def sandbox_containers(docker_client: Any | None = None) -> list[dict[str, Any]]:
    """Every sandbox container on the engine (running or not)."""
    return (docker_client or client()).api.containers(all=True, filters={"label": LABEL})


# -- containers ----------------------------------------------------------------------------------


def create_container(docker_client: Any, image: str, config: SandboxConfig, extra_labels: dict[str, str],
                     env: dict[str, str] | None = None) -> str:
    """Create and start one hardened sandbox container running the step server; return its id.

    The server waits on stdin; stdin closes when the first attached client goes away, so the
    server of a host that dies mid-run exits. Containers are not auto-removed (their exit state
    tells an out-of-memory kill apart); the owner removes them, and :func:`remove_stale` removes
    those of a dead owner on the next start.
    """
    import docker.errors

    api = docker_client.api
    host_config = api.create_host_config(
        network_mode=config.network,
        read_only=True,
        tmpfs={"/tmp": f"rw,nosuid,nodev,size={config.tmpfs_size}"},
        cap_drop=["ALL"],
        security_opt=["no-new-privileges"],
        pids_limit=config.pids_limit,
        mem_limit=config.memory,
        memswap_limit=config.memory,
        nano_cpus=int(config.cpus * 1e9),
        ipc_mode="private",
    )
    env = {"HOME": "/tmp", "PYTHONDONTWRITEBYTECODE": "1", "PYTHONUNBUFFERED": "1", **dict(config.env), **(env or {})}
    try:
        container_config = api.create_container_config(
            image, SERVER_COMMAND, user=SANDBOX_USER, working_dir="/tmp", environment=env,
            stdin_open=True, tty=False, labels=labels(**extra_labels), host_config=host_config,
        )
        container_config["StdinOnce"] = True  # not exposed by docker-py's keyword arguments
        created = api.create_container_from_config(container_config)
    except docker.errors.APIError as exc:
        raise SandboxError(f"could not create a sandbox container from {image}: {exc.explanation or exc}") from exc
    container_id = created["Id"]
    try:
        api.start(container_id)
    except docker.errors.APIError as exc:
        remove_container(docker_client, container_id)
        raise SandboxError(f"could not start a sandbox container: {exc.explanation or exc}") from exc
    return container_id


def remove_container(docker_client: Any, container_id: str, wait: float = 10.0) -> None:
    """Kill and remove a container; returns once it is gone (or after ``wait`` seconds)."""
    import docker.errors

    api = docker_client.api
    try:
        api.remove_container(container_id, force=True)
    except docker.errors.NotFound:
        return
    except docker.errors.APIError as exc:  # 409: removal already in progress
        if getattr(exc, "status_code", None) != 409:
            logger.warning("could not remove sandbox container %s: %s", container_id[:12], exc)
    except Exception:  # noqa: BLE001 - engine gone: stale cleanup takes over on the next start
        logger.warning("could not remove sandbox container %s", container_id[:12], exc_info=True)
        return
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        try:
            api.inspect_container(container_id)
        except docker.errors.NotFound:
            return
        except Exception:  # noqa: BLE001
            return
        time.sleep(0.05)


# -- talking to the step server ------------------------------------------------------------------


class Channel:
    """JSON lines to the server's stdin; replies demultiplexed from the attach stream (no TTY).

    What the container writes is read in bounded chunks: a reply line longer than
    ``MAX_REPLY_BYTES`` ends the run, and of what it prints to stderr only the last few KiB are
    kept, so the service's memory never grows with what tenant code prints.
    """

    def __init__(self, attached: Any) -> None:
        self._attached = attached  # keeps the HTTP response (and so the socket) alive
        self.sock = getattr(attached, "_sock", attached)
        self._stdout = bytearray()
        self.stderr: deque[bytes] = deque(maxlen=16)

    def send(self, message: dict[str, Any], deadline: float) -> None:
        self.sock.settimeout(max(0.1, deadline - time.monotonic()))
        try:
            self.sock.sendall(json.dumps(message).encode() + b"\n")
        except socket.timeout:
            raise TimeoutError from None

    def receive(self, deadline: float) -> dict[str, Any]:
        while b"\n" not in self._stdout:
            header = self._exactly(8, deadline)
            stream, size = header[0], struct.unpack(">I", header[4:])[0]
            while size:
                chunk = self._exactly(min(size, CHUNK_BYTES), deadline)
                size -= len(chunk)
                if stream == 1:
                    self._stdout += chunk
                    if len(self._stdout) > MAX_REPLY_BYTES and b"\n" not in self._stdout:
                        raise ValueError(f"the sandbox sent a reply larger than {MAX_REPLY_BYTES} bytes")
                else:
                    self.stderr.append(chunk[-1024:])
        line, _, rest = bytes(self._stdout).partition(b"\n")
        self._stdout = bytearray(rest)
        return json.loads(line)

    def _exactly(self, size: int, deadline: float) -> bytes:
        data = bytearray()
        while len(data) < size:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            self.sock.settimeout(remaining)
            try:
                chunk = self.sock.recv(size - len(data))
            except socket.timeout:
                raise TimeoutError from None
            if not chunk:
                raise EOFError("the sandbox closed its output")
            data += chunk
        return bytes(data)

    def stderr_tail(self) -> str:
        return b"".join(self.stderr).decode("utf-8", "replace")[-2000:]

    def close(self) -> None:
        for closer in (getattr(self.sock, "close", None), getattr(self._attached, "close", None)):
            try:
                if closer is not None:
                    closer()
            except OSError:
                pass


@dataclass
class Sandbox:
    """A started container whose step server has answered, with the open channel to it."""

    container_id: str
    channel: Channel


def start_sandbox(docker_client: Any, image: str, config: SandboxConfig, extra_labels: dict[str, str],
                  env: dict[str, str] | None = None) -> Sandbox:
    """Create, start and attach one container; return once its server answers (imports done).

    Attaching holds the server's stdin open: when this process goes away the server sees EOF
    and exits, so even a pooled container of a killed host stops (and is swept on next start).
    """
    container_id = create_container(docker_client, image, config, extra_labels, env)
    channel = None
    try:
        channel = Channel(docker_client.api.attach_socket(
            container_id, params={"stdin": 1, "stdout": 1, "stderr": 1, "stream": 1}
        ))
        deadline = time.monotonic() + STARTUP_TIMEOUT
        channel.send({"op": "ping"}, deadline)
        reply = channel.receive(deadline)
        if not reply.get("ok"):
            raise SandboxError(f"the sandbox server failed to start: {reply.get('error')}")
    except BaseException as exc:
        tail = channel.stderr_tail() if channel is not None else ""
        if channel is not None:
            channel.close()
        remove_container(docker_client, container_id)
        if isinstance(exc, (SandboxError, KeyboardInterrupt, SystemExit)):
            raise
        raise SandboxError(f"the sandbox server did not start ({first_line(exc)}) {tail.strip()[-500:]}") from exc
    return Sandbox(container_id, channel)
