"""Test/dev Apache Kafka run from the Maven Central jars: a single-node KRaft broker
(`LocalKafka`), or a cluster of three combined broker+controller nodes replicating every topic
three times (`LocalKafkaCluster`)."""

from __future__ import annotations

import argparse
import atexit
import base64
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import FrameType, TracebackType

# Preferred broker version first; the next is used only if Maven cannot resolve the first.
KAFKA_VERSIONS = ("4.4.0", "4.3.1")
KAFKA_JAR_GLOB = "kafka_2.13-*.jar"

_DEPLOY_DIR = Path(__file__).resolve().parents[2] / "deploy" / "local-kafka"
POM_PATH = _DEPLOY_DIR / "pom.xml"
LOG4J2_CONFIG = _DEPLOY_DIR / "log4j2.xml"

START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 20.0
MVN_TIMEOUT_S = 900.0
LOG_NAME = "kafka.log"
# After a SIGKILL the controller refuses the restarted broker's registration
# (DUPLICATE_BROKER_REGISTRATION) until the old session expires: 9 s by default, which made
# restart() after kill() take ~16 s instead of ~8 s. Also how soon a cluster fences a broker
# that stopped answering.
BROKER_SESSION_TIMEOUT_MS = 3000


def _cache_root() -> Path:
    root = os.environ.get("TIERSTREAM_CACHE_DIR")
    return Path(root) if root else Path.home() / ".cache" / "tierstream"


def default_cache_dir(version: str) -> Path:
    """Where the jars of one Kafka version are cached: ``<cache root>/kafka-<version>/libs``."""
    return _cache_root() / f"kafka-{version}" / "libs"


def _has_kafka_jar(libs: Path) -> bool:
    return libs.is_dir() and any(libs.glob(KAFKA_JAR_GLOB))


def kafka_version_of(libs: Path) -> str:
    """The Kafka version of a resolved libs directory (from the kafka_2.13 jar's name)."""
    jars = sorted(libs.glob(KAFKA_JAR_GLOB))
    if not jars:
        raise RuntimeError(f"no {KAFKA_JAR_GLOB} in {libs}")
    return jars[0].name.removeprefix("kafka_2.13-").removesuffix(".jar")


def _tail(text: str, lines: int = 40) -> str:
    text = re.sub(r"\x1b\[[0-9;]*m", "", text)  # Maven colours even with -B
    return "\n".join(text.rstrip().splitlines()[-lines:])


def _run_mvn(version: str, target: Path) -> None:
    """Copy the runtime jars of Kafka ``version`` into ``target`` (atomically), or raise."""
    mvn = shutil.which("mvn")
    if mvn is None:
        raise RuntimeError("mvn is not on PATH: Maven is needed to resolve the Kafka jars")
    if not POM_PATH.is_file():
        raise RuntimeError(f"{POM_PATH} is missing (run from a source checkout of tierstream)")
    new_parent = not target.parent.exists()
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    cmd = [
        mvn, "-B", "-q", "-f", str(POM_PATH), "dependency:copy-dependencies",
        "-DincludeScope=runtime", f"-DoutputDirectory={staging}", f"-Dkafka.version={version}",
    ]
    try:
        proc = subprocess.run(
            cmd, cwd=POM_PATH.parent, stdin=subprocess.DEVNULL, capture_output=True, text=True,
            timeout=MVN_TIMEOUT_S, check=False,
        )
        if proc.returncode != 0 or not _has_kafka_jar(staging):
            raise RuntimeError(
                f"mvn could not resolve org.apache.kafka:kafka_2.13:{version} "
                f"(exit {proc.returncode}):\n{_tail(proc.stdout + proc.stderr)}"
            )
        if target.exists() and not _has_kafka_jar(target):
            shutil.rmtree(target)  # a broken earlier cache
        try:
            staging.rename(target)
        except OSError:
            if not _has_kafka_jar(target):  # else another process cached it meanwhile
                raise
    except subprocess.TimeoutExpired as exc:
        raise RuntimeError(f"mvn timed out after {MVN_TIMEOUT_S:.0f} s resolving Kafka") from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if new_parent and not target.exists():  # leave no empty kafka-<version> dir behind
            shutil.rmtree(target.parent, ignore_errors=True)


def resolve_jars(cache_dir: Path | None = None) -> Path:
    """Return a directory holding the Kafka broker jars, resolving them with Maven once.

    ``cache_dir`` defaults to ``~/.cache/tierstream/kafka-<version>/libs`` (the root can be moved
    with ``TIERSTREAM_CACHE_DIR``). Kafka 4.4.0 is preferred, 4.3.1 taken only if 4.4.0 cannot be
    resolved. Maven uses its usual local repository (~/.m2). Raises RuntimeError on failure.
    """
    targets = [(v, Path(cache_dir) if cache_dir else default_cache_dir(v)) for v in KAFKA_VERSIONS]
    for _, libs in targets:
        if _has_kafka_jar(libs):
            return libs
    errors = []
    for version, libs in targets:
        try:
            _run_mvn(version, libs)
            return libs
        except RuntimeError as exc:
            errors.append(str(exc))
    raise RuntimeError("resolving the Kafka broker jars failed:\n\n" + "\n\n".join(errors))


def free_ports(count: int) -> list[int]:
    """Ports the kernel reports free on 127.0.0.1 (all bound at once, so they differ)."""
    socks = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def new_cluster_id() -> str:
    """A Kafka cluster id: 22-char URL-safe base64 of 16 random bytes, as Uuid.randomUuid()."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):  # Kafka never generates ids starting with '-'
            return text


def api_versions_answered(host: str, port: int, timeout: float = 2.0) -> bool:
    """True if the broker answers an ApiVersions v0 request (i.e. it processes requests)."""
    client_id = b"tierstream-probe"
    header = struct.pack(">hhih", 18, 0, 7, len(client_id)) + client_id
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(struct.pack(">i", len(header)) + header)
            data = b""
            while len(data) < 8:
                chunk = sock.recv(8 - len(data))
                if not chunk:
                    return False
                data += chunk
    except OSError:
        return False
    _size, correlation_id = struct.unpack(">ii", data)
    return correlation_id == 7


@dataclass(frozen=True)
class Quorum:
    """What the nodes of a cluster share: its id and every node's id and ports."""

    cluster_id: str
    ports: dict[int, tuple[int, int]]  # node id -> (broker port, controller port)

    @property
    def voters(self) -> str:
        return ",".join(f"{node}@127.0.0.1:{c}" for node, (_, c) in sorted(self.ports.items()))

    @property
    def replication(self) -> int:
        return len(self.ports)


class LocalKafka:
    """A combined broker+controller KRaft node on free 127.0.0.1 ports: alone, or node
    `node_id` of a `quorum` (LocalKafkaCluster).

    ``start()`` formats storage once and launches the broker; ``kill()`` SIGKILLs it and
    ``restart()`` brings it back on the same ports and log dirs (no reformat); ``stop()`` ends it
    with SIGTERM (SIGKILL after 20 s) and removes the work dir if this object created it.
    """

    def __init__(
        self,
        workdir: Path | None = None,
        heap: str = "512m",
        extra_properties: Mapping[str, str] | None = None,
        libs: Path | None = None,
        start_timeout: float = START_TIMEOUT_S,
        scram_users: Mapping[str, str] | None = None,
        node_id: int = 1,
        quorum: Quorum | None = None,
    ) -> None:
        self.node_id, self.quorum = node_id, quorum
        self._owns_workdir = workdir is None
        self._workdir_arg = Path(workdir) if workdir is not None else None
        self.workdir: Path | None = None
        self.heap = heap
        self.extra_properties = dict(extra_properties or {})
        self.libs = libs
        self.start_timeout = start_timeout
        self.scram_users = dict(scram_users or {})
        self.sasl_port: int | None = None
        self.port: int | None = None
        self.controller_port: int | None = None
        self.cluster_id: str | None = None
        self.startup_seconds: float | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._formatted = False
        self._began = 0.0

    # -- public API ------------------------------------------------------------------------

    @property
    def sasl_bootstrap_servers(self) -> str:
        """The SASL_PLAINTEXT (SCRAM-SHA-256) listener, when started with `scram_users`."""
        if self.sasl_port is None:
            raise RuntimeError("LocalKafka has no SCRAM listener (pass scram_users)")
        return f"127.0.0.1:{self.sasl_port}"

    @property
    def bootstrap_servers(self) -> str:
        if self.port is None:
            raise RuntimeError("LocalKafka has not been started")
        return f"127.0.0.1:{self.port}"

    @property
    def kafka_version(self) -> str:
        return kafka_version_of(self._libs())

    @property
    def log_path(self) -> Path:
        return self._workdir() / LOG_NAME

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> LocalKafka:
        """Format storage (first start only), launch the broker and wait until it answers."""
        self.launch()
        self.wait_ready()
        return self

    def launch(self) -> None:
        """Format storage (first start only) and start the process, not waiting for it: a node
        of a cluster answers only once a majority of the quorum runs."""
        if self.running:
            raise RuntimeError("LocalKafka is already running")
        workdir = self._workdir()
        if not self._formatted:
            if self.quorum is not None:
                self.port, self.controller_port = self.quorum.ports[self.node_id]
                self.cluster_id = self.quorum.cluster_id
            else:
                self.port, self.controller_port, self.sasl_port = free_ports(3)
                self.cluster_id = new_cluster_id()
            if not self.scram_users:
                self.sasl_port = None
            self._write_properties(workdir / "server.properties")
            self._format()
            self._formatted = True
        self._spawn()

    def pause(self) -> None:
        """SIGSTOP the node: it answers nothing and misses its heartbeats, as if cut off."""
        self._signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self._proc is not None:
            self._signal(signal.SIGCONT)

    def restart(self) -> LocalKafka:
        """Stop the broker if it runs, then start it again on the same ports and log dirs."""
        if not self._formatted:
            raise RuntimeError("restart() before start()")
        if self.running:
            self._terminate()
        self._spawn()
        self.wait_ready()
        return self

    def kill(self) -> None:
        """SIGKILL the broker (a crash); the work dir stays for ``restart()``."""
        if self._proc is not None:
            self._signal(signal.SIGKILL)
            self._proc.wait()
            self._proc = None
        atexit.unregister(self._atexit_kill)

    def stop(self) -> None:
        """SIGTERM the broker, SIGKILL after 20 s; remove the work dir if we created it."""
        self._terminate()
        if self._owns_workdir and self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None
            self._formatted = False

    def __enter__(self) -> LocalKafka:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def log_tail(self, lines: int = 60) -> str:
        try:
            return _tail(self.log_path.read_text(errors="replace"), lines)
        except OSError:
            return "(no broker log)"

    # -- internals -------------------------------------------------------------------------

    def _workdir(self) -> Path:
        if self.workdir is None:
            if self._workdir_arg is None:
                self.workdir = Path(tempfile.mkdtemp(prefix="tierstream-kafka-"))
            else:
                self.workdir = self._workdir_arg.resolve()
                self.workdir.mkdir(parents=True, exist_ok=True)
        return self.workdir

    def _libs(self) -> Path:
        if self.libs is None:
            self.libs = resolve_jars()
        return self.libs

    def _java_base(self) -> list[str]:
        java = shutil.which("java")
        if java is None:
            raise RuntimeError("java is not on PATH: Java 17 is needed to run Kafka")
        return [
            java,
            f"-Xmx{self.heap}",
            f"-Xms{self.heap}",
            "-Djava.awt.headless=true",
            "-XX:+ExitOnOutOfMemoryError",
            f"-Dlog4j2.configurationFile={LOG4J2_CONFIG}",
            "-cp",
            str(self._libs() / "*"),
        ]

    def _write_properties(self, path: Path) -> None:
        p, c = self.port, self.controller_port
        replication = 1 if self.quorum is None else self.quorum.replication
        in_sync = str(min(2, replication))
        props = {
            "process.roles": "broker,controller",
            "node.id": str(self.node_id),
            "controller.quorum.voters": self.quorum.voters if self.quorum is not None
            else f"{self.node_id}@127.0.0.1:{c}",
            "listeners": f"PLAINTEXT://127.0.0.1:{p},CONTROLLER://127.0.0.1:{c}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{p}",
            "inter.broker.listener.name": "PLAINTEXT",
            "controller.listener.names": "CONTROLLER",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "log.dirs": str(self._workdir() / "data"),
            "offsets.topic.replication.factor": str(replication),
            "transaction.state.log.replication.factor": str(replication),
            "transaction.state.log.min.isr": in_sync,
            "share.coordinator.state.topic.replication.factor": str(replication),
            "share.coordinator.state.topic.min.isr": in_sync,
            "default.replication.factor": str(replication),
            "min.insync.replicas": in_sync,
            "group.initial.rebalance.delay.ms": "0",
            "auto.create.topics.enable": "false",
            "num.partitions": "1",
            "log.cleaner.dedupe.buffer.size": "16777216",  # the 128 MB default strains -Xmx512m
            "broker.session.timeout.ms": str(BROKER_SESSION_TIMEOUT_MS),
            "broker.heartbeat.interval.ms": "500",
        }
        if self.sasl_port is not None:
            s = self.sasl_port
            props["listeners"] += f",SASL://127.0.0.1:{s}"
            props["advertised.listeners"] += f",SASL://127.0.0.1:{s}"
            props["listener.security.protocol.map"] += ",SASL:SASL_PLAINTEXT"
            props["sasl.enabled.mechanisms"] = "SCRAM-SHA-256"
            props["listener.name.sasl.scram-sha-256.sasl.jaas.config"] = (
                "org.apache.kafka.common.security.scram.ScramLoginModule required;")
        props.update(self.extra_properties)
        path.write_text("".join(f"{k}={v}\n" for k, v in props.items()))

    def _format(self) -> None:
        workdir = self._workdir()
        cmd = [*self._java_base(), "kafka.tools.StorageTool", "format",
               "-t", self.cluster_id, "-c", str(workdir / "server.properties")]
        for name, password in self.scram_users.items():
            cmd += ["--add-scram", f"SCRAM-SHA-256=[name={name},password={password}]"]
        proc = subprocess.run(cmd, cwd=workdir, stdin=subprocess.DEVNULL, capture_output=True,
                              text=True, timeout=120, check=False)
        if proc.returncode != 0:
            raise RuntimeError(
                f"kafka StorageTool format failed (exit {proc.returncode}):\n"
                f"{_tail(proc.stdout + proc.stderr)}"
            )

    def _spawn(self) -> None:
        workdir = self._workdir()
        cmd = [*self._java_base(), "kafka.Kafka", str(workdir / "server.properties")]
        self._began = time.monotonic()
        with open(self.log_path, "ab") as log:
            log.write(f"\n=== tierstream: starting kafka at {time.ctime()} ===\n".encode())
            log.flush()
            self._proc = subprocess.Popen(
                cmd, cwd=workdir, stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True,
            )
        atexit.register(self._atexit_kill)

    def wait_ready(self) -> None:
        """Wait until the node, started by `launch`, answers; killed if it never does."""
        try:
            self._wait_ready(self._began + self.start_timeout)
        except BaseException:
            self.kill()
            raise
        self.startup_seconds = time.monotonic() - self._began

    def _wait_ready(self, deadline: float) -> None:
        # 1. the broker process answers requests at all (stdlib probe: cheap, leaks nothing),
        # 2. then a kafka-python admin client can list topics (the real readiness check).
        while True:
            self._check_alive()
            if api_versions_answered("127.0.0.1", self.port):
                break
            self._check_deadline(deadline)
            time.sleep(0.2)
        from kafka import KafkaAdminClient  # late: --resolve-only needs no client; not in the try

        last_error: Exception | None = None
        while True:
            self._check_alive()
            try:
                self._list_topics(KafkaAdminClient, max(1.0, deadline - time.monotonic()))
                return
            except Exception as exc:  # noqa: BLE001 - any client failure means "not yet"
                last_error = exc
            self._check_deadline(deadline, last_error)
            time.sleep(0.2)

    def _list_topics(self, admin_cls: type, timeout_s: float) -> list[str]:
        timeout_ms = int(min(timeout_s, 10.0) * 1000)
        admin = admin_cls(
            bootstrap_servers=self.bootstrap_servers, client_id="tierstream-local-kafka",
            bootstrap_timeout_ms=timeout_ms, request_timeout_ms=timeout_ms,
        )
        try:
            return admin.list_topics()
        finally:
            admin.close()

    def _check_alive(self) -> None:
        assert self._proc is not None
        code = self._proc.poll()
        if code is not None:
            self._proc = None
            raise RuntimeError(
                f"Kafka broker exited with code {code} during startup; log tail "
                f"({self.log_path}):\n{self.log_tail()}"
            )

    def _check_deadline(self, deadline: float, error: Exception | None = None) -> None:
        if time.monotonic() > deadline:
            why = f" (last error: {error!r})" if error else ""
            raise RuntimeError(
                f"Kafka broker not ready within {self.start_timeout:.0f} s{why}; log tail "
                f"({self.log_path}):\n{self.log_tail()}"
            )

    def _signal(self, sig: signal.Signals) -> None:
        assert self._proc is not None
        try:
            os.killpg(self._proc.pid, sig)  # own session: pgid == pid
        except ProcessLookupError:
            pass

    def _terminate(self) -> None:
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._signal(signal.SIGTERM)
            try:
                self._proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self._signal(signal.SIGKILL)
                self._proc.wait()
        self._proc = None
        atexit.unregister(self._atexit_kill)

    def _atexit_kill(self) -> None:
        # Last resort if the owner never called stop(): never leave an orphaned JVM behind.
        if self._proc is not None and self._proc.poll() is None:
            self._signal(signal.SIGKILL)
            self._proc.wait()


class LocalKafkaCluster:
    """`size` combined broker+controller KRaft nodes on free 127.0.0.1 ports, one quorum:
    every topic (internal ones included) replicated `size` times with min.insync.replicas 2,
    for fault cases where brokers fail and roll. `nodes[i]` can be killed, restarted, paused.
    """

    def __init__(self, size: int = 3, workdir: Path | None = None, heap: str = "512m") -> None:
        self._owns_workdir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="tierstream-kafka-cluster-"))
        ports = free_ports(2 * size)
        self.quorum = Quorum(new_cluster_id(), {node: (ports[2 * i], ports[2 * i + 1])
                                                for i, node in enumerate(range(1, size + 1))})
        self.nodes = [LocalKafka(workdir=self.workdir / f"node-{node}", heap=heap, node_id=node,
                                 quorum=self.quorum) for node in self.quorum.ports]

    @property
    def bootstrap_servers(self) -> str:
        return ",".join(f"127.0.0.1:{port}" for port, _ in self.quorum.ports.values())

    def node(self, node_id: int) -> LocalKafka:
        return self.nodes[node_id - 1]

    def start(self) -> LocalKafkaCluster:
        """Launch every node, then wait until each answers."""
        for node in self.nodes:
            node.launch()
        for node in self.nodes:
            node.wait_ready()
        return self

    def stop(self) -> None:
        for node in self.nodes:
            node.resume()  # a paused JVM ignores SIGTERM until continued
            node.stop()
        if self._owns_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> LocalKafkaCluster:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


# -- CLI -------------------------------------------------------------------------------------


class _Stop(Exception):
    pass


def _raise_stop(signum: int, frame: FrameType | None) -> None:
    raise _Stop


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m streams.dev.local_kafka",
        description="Run a single-node Apache Kafka (KRaft) broker on a free 127.0.0.1 port "
        "until Ctrl-C/SIGTERM. The broker jars are resolved from Maven Central once and cached.",
    )
    parser.add_argument("--workdir", type=Path, default=None,
                        help="keep config, data and kafka.log here (default: a temp dir, "
                        "removed on exit)")
    parser.add_argument("--heap", default="512m", help="JVM heap, e.g. 512m (default) or 1g")
    parser.add_argument("--resolve-only", action="store_true",
                        help="only resolve and cache the broker jars, print their directory")
    args = parser.parse_args(argv)

    if args.resolve_only:
        began = time.monotonic()
        try:
            libs = resolve_jars()
        except RuntimeError as exc:
            print(exc, file=sys.stderr)
            return 1
        print(f"kafka {kafka_version_of(libs)} jars in {libs} "
              f"({time.monotonic() - began:.1f} s)", flush=True)
        return 0

    signal.signal(signal.SIGTERM, _raise_stop)
    broker = LocalKafka(workdir=args.workdir, heap=args.heap)
    try:
        broker.start()
        print(f"# kafka {broker.kafka_version}, ready in {broker.startup_seconds:.1f} s, "
              f"log {broker.log_path}; Ctrl-C to stop", file=sys.stderr, flush=True)
        print(f"KAFKA_BOOTSTRAP_SERVERS={broker.bootstrap_servers}", flush=True)  # last: readers
        while broker.running:
            time.sleep(0.5)
        print(f"Kafka broker exited unexpectedly; log tail:\n{broker.log_tail()}",
              file=sys.stderr)
        return 1
    except (KeyboardInterrupt, _Stop):
        return 0
    except RuntimeError as exc:
        print(exc, file=sys.stderr)
        return 1
    finally:
        broker.stop()


if __name__ == "__main__":
    sys.exit(main())
