"""The same simplified tier job in Kafka Streams, Quix Streams and `tierstream worker`, side by
side on one local Apache Kafka broker and one input topic, with the ceiling of tierstream's own
stack (raw aiokafka consume + json) and a faust no-op agent for reference, for several rounds in
one run, so the ratios hold on a noisy machine (not a test: prints a Markdown table).

    python bench/peer_bench.py [--customers N] [--rounds N] [--systems raw,quix,...] [--restore]

The job: per customer, the orders of the last 365 days of event time; tier A if revenue_365d >=
20000 && orders_365d >= 6, B if revenue_365d >= 5000 || orders_90d >= 3, C if orders_365d >= 1,
else D; a record whenever a customer's tier changes. Kafka Streams runs it as
bench/peers/kstreams/ (Processor API, RocksDB store with changelog), Quix Streams as
bench/peers/quix_tier.py (stateful apply, RocksDB state with changelog), tierstream with
bench/peers/peer.yaml (the default tiers, grace 0d, no churn rules). The peers decide only at
orders; tierstream also when a window forgets an order, so each system's final tiers are checked
against a pure-Python reference of its own kind: at each customer's last order for the peers, at
the last event time of the customer's partition for tierstream; `tierstream-eos` is the same
worker with TIERSTREAM_PROCESSING_GUARANTEE=exactly_once. One more row,
`tierstream-default`, runs the worker on the same input with the shipped default policy (grace,
warnings, churn rules) and the Redis view on (a local redis-server), the setting of the
batch-first target "at least half of Quix's rate"; no reference checks its final tiers. And
`tierstream-default-tiers` runs it with that policy less its service-plan sections, the
follow-up plan (nobody in the input is ever contacted, so every A, B and C customer's follow-up
falls due) and the lifecycle axis, for what they cost.

On first use the Kafka Streams app is built with Maven and Quix Streams installed with pip into a
venv of its own, both under ~/.cache/tierstream/peer-bench; a system whose tool cannot be had is
skipped, with the reason in its row. Results: docs/benchmarks.md, "Other stream processors".
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import redis
import yaml
from kafka import KafkaAdminClient
from kafka.admin import NewTopic

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import pipeline_bench  # noqa: E402  (the ceiling, the faust reference, helpers)

from models.outputs import kind_of  # noqa: E402
from streams.dev.local_kafka import LocalKafka  # noqa: E402
from streams.settings import Settings, Topics  # noqa: E402
from tests.integration.harness import Worker, create_topics, http_get  # noqa: E402
from tests.redis_server import RedisServer  # noqa: E402

PEERS = Path(__file__).resolve().parent / "peers"
POLICY = PEERS / "peer.yaml"
CACHE = Path.home() / ".cache" / "tierstream" / "peer-bench"
KS_BUILD = CACHE / "kstreams"
QUIX_VENV = CACHE / "quixvenv"
QUIX_REQUIREMENT = "quixstreams>=3,<4"
PARTITIONS = pipeline_bench.PARTITIONS
TIMEOUT_S = 1800
DAY_MS = 86_400_000
CLK = os.sysconf("SC_CLK_TCK")
GUARANTEES = {"ks-alos": "at_least_once", "ks-eos": "exactly_once_v2"}
LABELS = {"raw": "raw aiokafka consume + json (ceiling)",
          "faust-noop": "faust no-op agent (reference: its per-message path)",
          "ks-alos": "Kafka Streams{kstreams}, at_least_once",
          "ks-eos": "Kafka Streams{kstreams}, exactly_once_v2",
          "quix": "Quix Streams{quix}",
          "tierstream": "tierstream worker (1, memory:// + changelog)",
          "tierstream-eos": "tierstream worker, the same with exactly_once",
          "tierstream-default": "tierstream worker, shipped default policy + Redis view (1, "
                                "memory:// + changelog)",
          "tierstream-default-tiers": "tierstream worker, the same less its follow-up plan and "
                                      "lifecycle axis"}
DEFAULT_POLICY = ROOT / "rules" / "policies" / "default.yaml"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def first_line(text: str) -> str:
    """The line of a tool's output that says what went wrong: its first error line, if any."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return next((line for line in lines if "ERROR" in line), lines[0] if lines else "")[:200]


# -- builds ------------------------------------------------------------------------------------

class Unavailable(Exception):
    """A system's tool cannot be had here: the system is skipped."""


def tool(what: str, cmd: list[str], cwd: Path | None = None) -> None:
    try:
        result = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=TIMEOUT_S)
    except FileNotFoundError:
        raise Unavailable(f"{what}: {cmd[0]} is not installed") from None
    except (OSError, subprocess.TimeoutExpired) as error:
        raise Unavailable(f"{what}: {error}") from None
    if result.returncode:
        raise Unavailable(f"{what} failed: {first_line(result.stdout + result.stderr)}")


def build_kstreams() -> tuple[str, str]:
    """(Kafka Streams version, the app's classpath), built with Maven on first use and again
    when a source is newer than the build."""
    sources = [PEERS / "kstreams" / "pom.xml", *(PEERS / "kstreams" / "src").rglob("*.java")]
    built = KS_BUILD / "target" / "classes" / "peer" / "TierApp.class"
    if not built.exists() or built.stat().st_mtime < max(p.stat().st_mtime for p in sources):
        shutil.rmtree(KS_BUILD, ignore_errors=True)
        shutil.copytree(PEERS / "kstreams", KS_BUILD)
        try:
            tool("mvn package", ["mvn", "-B", "-q", "package", "-DskipTests"], cwd=KS_BUILD)
        except Unavailable:
            shutil.rmtree(KS_BUILD)
            raise
    lib = KS_BUILD / "target" / "lib"
    jar = next(lib.glob("kafka-streams-[0-9]*.jar"))
    return jar.stem.removeprefix("kafka-streams-"), f"{KS_BUILD / 'target' / 'classes'}:{lib}/*"


def build_quix() -> tuple[str, str]:
    """(Quix Streams version, the python of its venv), installed with pip on first use."""
    python = QUIX_VENV / "bin" / "python"
    installed = list(QUIX_VENV.glob("lib/python*/site-packages/quixstreams-*.dist-info"))
    if not installed:
        shutil.rmtree(QUIX_VENV, ignore_errors=True)
        try:
            tool("python3 -m venv", ["python3", "-m", "venv", str(QUIX_VENV)])
            tool(f"pip install '{QUIX_REQUIREMENT}'", [str(python), "-m", "pip", "install", "-q",
                                                       "--disable-pip-version-check",
                                                       QUIX_REQUIREMENT])
        except Unavailable:
            shutil.rmtree(QUIX_VENV, ignore_errors=True)
            raise
        installed = list(QUIX_VENV.glob("lib/python*/site-packages/quixstreams-*.dist-info"))
    version = installed[0].name.removeprefix("quixstreams-").removesuffix(".dist-info")
    return version, str(python)


# -- input and reference -----------------------------------------------------------------------

def generate(customers: int, seed: int) -> list[bytes]:
    """Two years (2024-2025) of orders: ~4.2 per customer, in time order, tierstream's native
    order_completed contract (models/events.py; extra fields are rejected there)."""
    rng = random.Random(seed)
    begin, end = datetime(2024, 1, 1, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC)
    events = []
    for c in range(customers):
        at = begin + timedelta(hours=rng.randrange(24 * 540), minutes=rng.randrange(60))
        for n in range(rng.choice([1, 1, 2, 2, 3, 4, 5, 6, 8, 10])):
            if n:
                at += timedelta(days=rng.randrange(1, 90), minutes=rng.randrange(600))
            if at >= end:
                break
            events.append((at, {"type": "order_completed", "event_id": f"c{c}-o{n}",
                                "customer_id": f"c{c}", "occurred_at": at.isoformat(),
                                "order_id": f"c{c}-o{n}", "currency": "CNY",
                                "amount": rng.choice([80, 300, 1200, 4000, 9000])}))
    events.sort(key=lambda pair: (pair[0], pair[1]["event_id"]))
    return [json.dumps(e, separators=(",", ":")).encode() for _, e in events]


def create(bootstrap: str, *names: str) -> None:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics([NewTopic(name, PARTITIONS, 1) for name in names])
    finally:
        admin.close()


def tier_at(orders: list[tuple[int, float]], now: int) -> str:
    inside = [(t, a) for t, a in orders if now - 365 * DAY_MS < t <= now]
    revenue, n365 = sum(a for _, a in inside), len(inside)
    n90 = sum(1 for t, _ in inside if t > now - 90 * DAY_MS)
    if revenue >= 20000.0 and n365 >= 6:
        return "A"
    if revenue >= 5000.0 or n90 >= 3:
        return "B"
    return "C" if n365 >= 1 else "D"


def reference(lines: list[bytes], partition_of: dict[str, int]
              ) -> tuple[int, dict[str, str], dict[str, str]]:
    """The tier changes decided at orders (what the peers emit), each customer's tier at its
    last order, and at the end clock of its partition (its latest occurred_at: what
    tierstream's time-driven decisions reach with no wall-clock idling)."""
    orders: dict[str, list] = defaultdict(list)
    tiers: dict[str, str] = {}
    changes, clock = 0, [0] * PARTITIONS
    for line in lines:
        event = json.loads(line)
        customer = event["customer_id"]
        t = int(datetime.fromisoformat(event["occurred_at"]).timestamp() * 1000)
        orders[customer].append((t, float(event["amount"])))
        tier = tier_at(orders[customer], t)
        if tiers.get(customer) != tier:
            changes, tiers[customer] = changes + 1, tier
        clock[partition_of[customer]] = max(clock[partition_of[customer]], t)
    at_end = {c: tier_at(o, clock[partition_of[c]]) for c, o in orders.items()}
    return changes, tiers, at_end


def final_tiers(bootstrap: str, topic: str, tierstream: bool) -> tuple[int, dict[str, str]]:
    """(tier-change records, each customer's last tier) of one system's output topic."""
    count, last, order = 0, {}, {}
    for record in pipeline_bench.read_all(bootstrap, topic):
        value = json.loads(record.value)
        if tierstream:
            if kind_of(value["type"]) not in ("tier.assigned", "tier.upgraded",
                                              "tier.downgraded"):
                continue
            customer, tier = value["data"]["customer_id"], value["data"]["to_tier"]
            position = int(value["sequence"])
        else:
            customer, tier, position = value["customer_id"], value["to"], record.offset
        count += 1
        if position >= order.get(customer, -1):
            order[customer], last[customer] = position, tier
    return count, last


def mismatches(a: dict[str, str], b: dict[str, str]) -> int:
    return sum(1 for c in set(a) | set(b) if a.get(c) != b.get(c))


# -- CPU ---------------------------------------------------------------------------------------

def tree_cpu(pid: int) -> float:
    """user+system CPU seconds of a process and its live descendants (from /proc)."""
    children: dict[int, list[int]] = defaultdict(list)
    cpu: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            text = (entry / "stat").read_text()
        except OSError:
            continue
        fields = text[text.rindex(")") + 2:].split()
        children[int(fields[1])].append(int(entry.name))
        cpu[int(entry.name)] = (int(fields[11]) + int(fields[12])) / CLK
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        total += cpu.get(p, 0.0)
        todo.extend(children.get(p, []))
    return total


def self_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def answers_ready(worker: Worker) -> bool:
    """Whether the worker is ready. One that does not answer in time is busy processing a
    batch, which it does only when ready; one not listening yet is not ready."""
    try:
        return http_get(f"{worker.url}/health", timeout=0)[0] == 200
    except TimeoutError:
        return True
    except OSError:
        return False


# -- the systems -------------------------------------------------------------------------------

class Bench:
    """One broker and one input topic of `n` events; each system is measured against it."""

    def __init__(self, bootstrap: str, topic: str, n: int, workdir: Path,
                 built: dict[str, str]) -> None:
        self.bootstrap, self.topic, self.n, self.workdir = bootstrap, topic, n, workdir
        self.tag = topic.rsplit("-", 1)[-1]  # in every app id and topic name of this run
        self.built = built  # "kstreams": its classpath, "quix": its python
        self.last_ks_app: str | None = None  # the last at_least_once app, for --restore
        self.last_tierstream: Settings | None = None
        self.redis_url: str | None = None  # for tierstream-default

    def measure(self, system: str, name: str) -> dict:
        """events/s and CPU seconds (`window_cpu_s` while processing, if known; `cpu_total_s`
        of the whole process) of one system over the whole input, and its output topic."""
        if system == "raw":
            cpu = self_cpu()
            rate = pipeline_bench.raw_aiokafka(self.bootstrap, self.topic, self.n)
            return {"rate": rate, "cpu_total_s": self_cpu() - cpu}
        if system == "faust-noop":
            cpu = children_cpu()
            rate = pipeline_bench.faust_reference(self.bootstrap, self.topic, self.n,
                                                  self.workdir / name)
            return {"rate": rate, "cpu_total_s": children_cpu() - cpu}
        if system in GUARANTEES:
            row = self.kstreams(name, GUARANTEES[system])
            if system == "ks-alos":
                self.last_ks_app = name
            return row
        if system == "quix":
            output = self.output(name)
            return {**self.app([self.built["quix"], str(PEERS / "quix_tier.py")], name, {
                "APP_ID": name, "OUTPUT": output, "STATE_DIR": str(self.workdir / name)}),
                "output": output}
        if system == "tierstream-default":
            return self.tierstream(name, DEFAULT_POLICY, self.redis_url)
        if system == "tierstream-default-tiers":
            policy = yaml.safe_load(DEFAULT_POLICY.read_text(encoding="utf-8"))
            del policy["followup"], policy["axes"]
            path = self.workdir / "default-tiers.yaml"
            path.write_text(yaml.safe_dump(policy, allow_unicode=True), encoding="utf-8")
            return self.tierstream(name, path, self.redis_url)
        if system == "tierstream-eos":
            return self.tierstream(name, guarantee="exactly_once")
        return self.tierstream(name)

    def output(self, name: str) -> str:
        create(self.bootstrap, f"{name}-out")
        return f"{name}-out"

    def kstreams(self, app_id: str, guarantee: str, mode: str = "process") -> dict:
        """The Kafka Streams app: over the input (`process`), or a fresh instance with an empty
        state dir up to RUNNING, its store restored from the changelog (`restore`)."""
        output = self.output(app_id) if mode == "process" else f"{app_id}-out"
        cmd = ["java", "-Xmx1g", "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn", "-cp",
               self.built["kstreams"], "peer.TierApp"]
        return {**self.app(cmd, f"{app_id}-{mode}", {
            "APP_ID": app_id, "OUTPUT": output, "STATE_DIR": str(self.workdir / f"{app_id}-{mode}"),
            "GUARANTEE": guarantee, "MODE": mode}), "output": output}

    def app(self, cmd: list[str], name: str, env: dict[str, str]) -> dict:
        """Run a peer app until it exits; its JSON lines on stdout, merged."""
        env = {**os.environ, "BOOTSTRAP": self.bootstrap, "INPUT": self.topic,
               "EXPECTED": str(self.n), **env}
        log_path = self.workdir / f"{name}.log"
        with log_path.open("w") as stderr:
            proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=stderr,
                                    text=True)
            watchdog = threading.Timer(TIMEOUT_S, proc.kill)
            watchdog.start()
            try:
                items = [json.loads(line) for line in proc.stdout if line.startswith('{"event"')]
            finally:
                watchdog.cancel()
                proc.kill()
                proc.wait()
        if not any(item["event"] in ("done", "ready") for item in items):
            raise RuntimeError(f"{name} failed: {items}\n{log_path.read_text()[-3000:]}")
        return {k: v for item in items for k, v in item.items() if k != "event"}

    def worker(self, settings: Settings, label: str, policy: Path = POLICY) -> Worker:
        workdir = self.workdir / f"{settings.app_id}-{label}"
        workdir.mkdir()
        redis = {"TIERSTREAM_REDIS_URL": settings.redis_url.get_secret_value(),
                 "TIERSTREAM_REDIS_PREFIX": settings.redis_prefix} if settings.redis_url else {}
        return Worker(settings, policy, workdir, env_overrides=redis).start()

    def tierstream(self, name: str, policy: Path = POLICY, redis_url: str | None = None,
                   guarantee: str = "at_least_once") -> dict:
        """One `tierstream worker` over the whole input: from its last "not ready" answer (it
        processes nothing before; the first batch can be the whole input, so the events counter
        cannot say when processing began) until the counter reaches the input size. Then until
        its outputs are quiet: the last ticks decide the customers due by each partition's
        last event time."""
        names = Topics(**{f: f"{v}-{name}" for f, v in Topics().model_dump().items()})
        settings = Settings(bootstrap_servers=self.bootstrap, app_id=name, partitions=PARTITIONS,
                            data_dir=self.workdir / name,
                            topics=names.model_copy(update={"orders": self.topic}),
                            tick_interval_s=1.0, idle_after_s=1e9,  # never the wall clock
                            redis_url=redis_url, redis_prefix=name,
                            processing_guarantee=guarantee)
        create_topics(settings)
        worker = self.worker(settings, "w0", policy)
        pid, deadline = worker.process.pid, time.monotonic() + TIMEOUT_S
        try:
            began, cpu = time.perf_counter(), tree_cpu(pid)
            while not answers_ready(worker):
                began, cpu = time.perf_counter(), tree_cpu(pid)
                self.check(worker, deadline)
                time.sleep(0.1)
            while pipeline_bench.events_processed(worker) < self.n:
                self.check(worker, deadline)
                time.sleep(0.2)
            seconds, window_cpu = time.perf_counter() - began, tree_cpu(pid) - cpu
            pipeline_bench.settle(self.bootstrap, settings, quiet_s=3)
            total = tree_cpu(pid)
        finally:
            worker.stop()
        if policy == POLICY:
            self.last_tierstream = settings
        row = {"rate": self.n / seconds, "window_cpu_s": window_cpu, "cpu_total_s": total,
               "output": settings.topics.tier_changes}
        if redis_url:  # the view was kept: every customer has its hash
            with redis.Redis.from_url(redis_url) as client:
                row["redis_customers"] = sum(1 for _ in client.scan_iter(
                    match=f"{name}:customer:*", count=10_000))
            if not row["redis_customers"]:
                raise RuntimeError("the Redis view holds no customer")
        return row

    @staticmethod
    def check(worker: Worker, deadline: float) -> None:
        if worker.process.poll() is not None:
            raise RuntimeError(f"the worker exited:\n{worker.log_text()[-3000:]}")
        if time.monotonic() > deadline:
            raise RuntimeError("the worker did not finish in time")

    def restore(self) -> dict[str, str]:
        """Seconds from launch to ready of a fresh instance (empty state) of the last
        at_least_once Kafka Streams app and tierstream worker: their state restored from the
        changelog."""
        found = {}
        try:
            if self.last_ks_app:
                row = self.kstreams(self.last_ks_app, "at_least_once", mode="restore")
                found["ks-alos"] = f"{row['jvm_start_to_ready_s']:.1f}"
            if self.last_tierstream:
                worker = self.worker(self.last_tierstream, "restore")
                try:
                    found["tierstream"] = f"{pipeline_bench.until_ready(worker):.1f}"
                finally:
                    worker.stop()
                read = re.search(r"Restored (\d+) changelog records of \d+ partitions in "
                                 r"([\d.]+) s", worker.log_text())
                if read:  # the changelog read alone, from the worker's log
                    found["tierstream"] += f" (read {int(read[1]):,} records in {read[2]} s)"
        except Exception as error:  # the rounds' results still print
            log(f"restore FAILED: {error}")
        return found


# -- the run -----------------------------------------------------------------------------------

def build(systems: list[str]) -> tuple[dict[str, str], dict[str, str], dict[str, str]]:
    """Build what the chosen systems need: what each tool runs with, its version for the
    labels, and why a system is skipped."""
    built, versions, skipped = {}, {"kstreams": "", "quix": ""}, {}
    for name, make, users in (("kstreams", build_kstreams, GUARANTEES),
                              ("quix", build_quix, ["quix"])):
        if not set(users) & set(systems):
            continue
        began = time.perf_counter()
        try:
            version, built[name] = make()
        except Unavailable as why:
            skipped.update({system: str(why) for system in users})
            log(f"{name} unavailable: {why}")
            continue
        versions[name] = f" {version}"
        log(f"{name} {version} ready in {time.perf_counter() - began:.1f} s")
    return built, versions, skipped


def run_round(bench: Bench, systems: list[str], rnd: int, at_last_order: dict[str, str],
              at_end_clock: dict[str, str]) -> dict[str, dict]:
    rows = {}
    for system in systems:
        log(f"round {rnd}: {system}")
        tierstream = system.startswith("tierstream")
        try:
            row = bench.measure(system, f"{system}-r{rnd}-{bench.tag}")
            if "output" in row:
                row["changes"], tiers = final_tiers(bench.bootstrap, row["output"], tierstream)
                if not system.startswith("tierstream-default"):  # (the references know the
                    # peer job only)
                    row["mismatches"] = mismatches(tiers, at_end_clock if tierstream
                                                   else at_last_order)
        except Exception as error:  # reported in the table; the other systems go on
            log(f"  FAILED: {error}")
            row = {"error": str(error).splitlines()[0][:200]}
        log("  " + json.dumps({k: round(v, 3) if isinstance(v, float) else v
                               for k, v in row.items()}))
        rows[system] = row
    return rows


def joined(rows: list[dict], key: str, show: Callable[[float], str]) -> str:
    """One value per round, of the rounds that have it."""
    return " / ".join(show(row[key]) for row in rows if key in row) or "-"


def table(systems: list[str], rounds: list[dict[str, dict]], n: int, labels: dict[str, str],
          skipped: dict[str, str], restore: dict[str, str] | None) -> list[str]:
    header = ["system", *(f"events/s r{r}" for r in range(1, len(rounds) + 1)),
              "CPU ms/event, processing", "CPU ms/event, whole process", "tier changes",
              "final tiers off the reference"]
    if restore is not None:
        header.append("launch to ready, empty state, s")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for system in systems:
        if system in skipped:
            cells = [f"skipped: {skipped[system]}", *[""] * (len(header) - 2)]
        else:
            rows = [r[system] for r in rounds]
            cells = [f"{row['rate']:,.0f}" if "rate" in row else f"failed: {row['error']}"
                     for row in rows]
            cells += [joined(rows, key, lambda cpu: f"{cpu * 1000 / n:.3f}")
                      for key in ("window_cpu_s", "cpu_total_s")]
            cells += [joined(rows, key, "{:,}".format) for key in ("changes", "mismatches")]
            if restore is not None:
                cells.append(restore.get(system, "-"))
        lines.append(f"| {labels[system]} | " + " | ".join(cells) + " |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].replace("\n", " "),
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--customers", type=int, default=50_000,
                        help="customers in the generated input, about 4.2 orders each")
    parser.add_argument("--rounds", type=int, default=1, help="runs of every system")
    parser.add_argument("--systems", default=",".join(LABELS),
                        help="comma-separated, run in this order")
    parser.add_argument("--restore", action="store_true",
                        help="after the rounds, time a fresh Kafka Streams (at_least_once) app "
                             "and tierstream worker with empty state from launch to ready")
    parser.add_argument("--seed", type=int, default=11, help="seed of the generated input")
    args = parser.parse_args()
    systems = args.systems.split(",")
    if unknown := set(systems) - set(LABELS):
        parser.error(f"unknown systems {sorted(unknown)}; known: {', '.join(LABELS)}")

    started = time.perf_counter()
    built, versions, skipped = build(systems)
    for system in ("tierstream-default", "tierstream-default-tiers"):
        if system in systems and not shutil.which("redis-server"):
            skipped[system] = "no redis-server on PATH (apt-get install redis-server)"
    running = [s for s in systems if s not in skipped]
    with LocalKafka(heap="1g") as kafka, tempfile.TemporaryDirectory() as tmp, \
            contextlib.ExitStack() as stack:
        bootstrap = kafka.bootstrap_servers
        log(f"broker {kafka.kafka_version} at {bootstrap}")
        lines = generate(args.customers, args.seed)
        topic = f"peer-orders-{os.getpid()}"
        create(bootstrap, topic)
        pipeline_bench.produce(bootstrap, topic, pipeline_bench.keyed(lines))
        partition_of = {r.key.decode(): r.partition
                        for r in pipeline_bench.read_all(bootstrap, topic)}
        changes, at_last_order, at_end_clock = reference(lines, partition_of)
        log(f"input: {len(lines):,} events on {topic}; reference: {changes:,} tier changes")
        bench = Bench(bootstrap, topic, len(lines), Path(tmp), built)
        if {"tierstream-default", "tierstream-default-tiers"} & set(running):
            bench.redis_url = stack.enter_context(RedisServer()).url
        rounds = [run_round(bench, running, rnd, at_last_order, at_end_clock)
                  for rnd in range(1, args.rounds + 1)]
        restore = bench.restore() if args.restore else None
    log(f"done in {time.perf_counter() - started:.0f} s")
    labels = {s: LABELS[s].format_map(versions) for s in systems}
    print(f"{len(lines):,} order events of {args.customers:,} customers, {PARTITIONS} partitions; "
          f"reference: {changes:,} tier changes at orders. Final tiers are checked at each "
          f"customer's last order (peers) or its partition's last event time (tierstream).\n")
    print("\n".join(table(systems, rounds, len(lines), labels, skipped, restore)))


if __name__ == "__main__":
    main()
