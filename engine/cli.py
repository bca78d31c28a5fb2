"""The `cpworker` command line: every setting a flag and a CPWORKER_* environment variable."""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from types import FrameType
from typing import TYPE_CHECKING, Any, TypeVar

import click

from engine import __version__, defaults, logs
from engine.errors import CpworkerError
from engine.options import COUNT, GRACE, INTERVAL, Count, add_global_options, group_options

if TYPE_CHECKING:
    from mypy_boto3_codepipeline import CodePipelineClient

F = TypeVar("F", bound=Callable[..., Any])


def _env(name: str) -> str:
    return f"CPWORKER_{name}"


def _option(*names: str, env: str, **kwargs: Any) -> Callable[[F], F]:
    return click.option(*names, envvar=_env(env), show_envvar=True, show_default=True, **kwargs)


# Developer commands live in engine.devtools and are imported only when named (or listed by
# --help), so `cpworker run` never loads the emulators, the sandbox or the testing kit.
_DEV_COMMANDS = {
    "emulator": "engine.devtools.commands:emulator",
    "sandbox": "engine.devtools.commands:sandbox",
}


class _Group(click.Group):
    """One readable line and exit code 2 for every user mistake, never a traceback (cpworker's
    own errors and click's usage errors alike); the global options on every command; the
    developer commands resolved on demand."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *_DEV_COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in _DEV_COMMANDS:
            import importlib

            module, _, attribute = _DEV_COMMANDS[cmd_name].partition(":")
            command = getattr(importlib.import_module(module), attribute)
            assert isinstance(command, click.Command)
            return add_global_options(command)
        found = super().get_command(ctx, cmd_name)
        return None if found is None else add_global_options(found)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except CpworkerError as error:
            said = logging.getLogger("cpworker")
            said.debug("the detail behind the error", exc_info=True)
            if isinstance(ctx.obj, dict) and ctx.obj.get("log_format") == "json":
                said.error("cpworker: %s", error)  # in JSON mode every line is JSON
            else:
                click.echo(f"cpworker: {error}", err=True)
            ctx.exit(2)

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None,
             complete_var: str | None = None, standalone_mode: bool = True,
             **extra: Any) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, False, **extra)
        try:
            code = super().main(args, prog_name, complete_var, False, **extra)
        except click.UsageError as error:
            click.echo(f"cpworker: {_usage_message(error)}", err=True)
            sys.exit(error.exit_code)
        except click.ClickException as error:
            error.show()
            sys.exit(error.exit_code)
        except click.Abort:
            click.echo("cpworker: aborted", err=True)
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)


def _usage_message(error: click.UsageError) -> str:
    """Click's usage error as one line: what was wrong, and where the help is."""
    if isinstance(error, click.BadParameter) and isinstance(error.param, click.Option):
        option = error.param
        env = f" ({option.envvar})" if isinstance(option.envvar, str) else ""
        return f"{option.opts[0]}{env} {error.message}"
    where = error.ctx.command_path if error.ctx is not None else "cpworker"
    return f"{error.format_message()} (see: {where} --help)"


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@group_options
@click.version_option(__version__, prog_name="cpworker")
@click.pass_context
def main(ctx: click.Context, db: str, sqlite_synchronous: str, log_format: str,
         log_level: str) -> None:
    """cpworker: a durable job worker for AWS CodePipeline custom actions."""
    logs.setup(log_format, log_level)
    ctx.obj = {"db": db, "sqlite_synchronous": sqlite_synchronous, "log_format": log_format,
               "log_level": log_level}


def _aws_options(command: F) -> F:
    """Where CodePipeline is: the same two options on every command that calls it."""
    command = _option("--region", env="REGION", default=None,
                      help="AWS region (default: the AWS SDK's own settings, e.g. "
                      "AWS_DEFAULT_REGION).")(command)
    return _option("--endpoint-url", env="CODEPIPELINE_URL", default=None,
                   help="CodePipeline endpoint (boto3 also reads "
                   "AWS_ENDPOINT_URL_CODEPIPELINE).")(command)


def _sqs_client(queue_url: str, region: str | None) -> Any:
    """An SQS client for the events queue. A queue URL outside AWS (moto, the emulator's, a
    compatible service) is its own endpoint; an AWS one names its region."""
    from urllib.parse import urlsplit

    import boto3
    from botocore.config import Config

    parts = urlsplit(queue_url)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.path.count("/") < 2:
        raise click.BadParameter("must be a queue URL such as https://sqs.us-east-1.amazonaws"
                                 ".com/123456789012/cpworker-events", param_hint="--events-queue")
    host = parts.hostname or ""
    endpoint = None if host.endswith(".amazonaws.com") else f"{parts.scheme}://{parts.netloc}"
    if region is None and host.startswith("sqs.") and host.endswith(".amazonaws.com"):
        region = host.split(".")[1]
    try:
        return boto3.client("sqs", region_name=region, endpoint_url=endpoint,
                            config=Config(read_timeout=40, retries={"mode": "standard"}))
    except Exception as error:  # NoRegionError and the like: one line, the fix
        raise click.UsageError(f"cannot read the events queue: {error}; pass --region") from None


def _client(endpoint_url: str | None, region: str | None) -> CodePipelineClient:
    from botocore.exceptions import NoRegionError

    from engine.codepipeline import make_client

    try:
        return make_client(endpoint_url, region, f"cpworker/{__version__}")
    except NoRegionError:
        raise click.UsageError(
            "no AWS region is set: pass --region or set AWS_DEFAULT_REGION") from None


def _query_params(given: tuple[str, ...], actions: Mapping[str, Any]) -> dict[str, dict[str, str]]:
    """--query-param values, checked against each action's queryable property (PROTOCOL A3)."""
    query: dict[str, dict[str, str]] = {}
    for item in given:
        name, _, pair = item.partition(":")
        key, _, value = pair.partition("=")
        if name not in actions or not key or not value:
            raise click.BadParameter(f"{item!r}: expected ACTION:Property=value with ACTION one "
                                     f"of {', '.join(sorted(actions))}", param_hint="--query-param")
        query[name] = {key: value}
    for name, action in actions.items():
        queryable = action.definition().queryable
        if queryable is not None and name not in query:
            raise click.UsageError(
                f"the action type {action.definition().type_id} has the queryable property "
                f"{queryable.name}: CodePipeline hands out its jobs only to a poll that names a "
                f"value; pass --query-param {name}:{queryable.name}=<value>")
        if name in query and (queryable is None or queryable.name not in query[name]):
            raise click.BadParameter(
                f"{name} has no queryable property named {next(iter(query[name]))}",
                param_hint="--query-param")
    return query


def _store(ctx: click.Context, pool_size: int = defaults.DB_POOL_SIZE, *,
           existing: bool = False, read_only: bool = False) -> Any:
    """The store: created and migrated for `run`; for the other commands only one that exists
    (read-only for the commands that only read), so a mistyped --db is said, not created."""
    from engine.store import open_store

    return open_store(ctx.obj["db"], synchronous=ctx.obj["sqlite_synchronous"], pool_size=pool_size,
                      existing=existing, read_only=read_only)


def _store_for_run(ctx: click.Context, pool_size: int) -> Any:
    """The store for `run`: a database that is away at start (PostgreSQL restarting, a file
    locked) is waited for with backoff, as it would be while running; a refusal is final."""
    import time

    from engine.errors import StoreUnavailable

    delay, since = 0.5, time.monotonic()
    while True:
        try:
            store = _store(ctx, pool_size)
        except StoreUnavailable as error:
            if delay == 0.5:
                logging.getLogger("cpworker").warning(
                    "the state database is not available yet (%s); waiting for it", error)
            time.sleep(delay)
            delay = min(10.0, delay * 2)
            continue
        if delay > 0.5:
            logging.getLogger("cpworker").warning(
                "the state database is available after %.1f s", time.monotonic() - since)
        return store


# --- run ----------------------------------------------------------------------------------------


@main.command()
@_option("--until-idle", env="UNTIL_IDLE", is_flag=True,
         help="Exit 0 once nothing is in flight or owed and a poll finds nothing.")
@_option("--max-in-flight", env="MAX_IN_FLIGHT", default=defaults.MAX_IN_FLIGHT, type=COUNT,
         help="Jobs held at once; the poller asks for no more.")
@_option("--effect-threads", env="EFFECT_THREADS", default=defaults.EFFECT_THREADS,
         type=Count(1, 1024),
         help="Effects (network calls) running at once.")
@_option("--poll-interval", env="POLL_INTERVAL", default=defaults.POLL_INTERVAL, type=INTERVAL,
         help="Longest wait between polls when idle (seconds).")
@_option("--poll-interval-min", env="POLL_INTERVAL_MIN", default=defaults.POLL_INTERVAL_MIN,
         type=INTERVAL, help="Wait between polls while jobs keep arriving (seconds).")
@_option("--poll-batch", env="POLL_BATCH", default=defaults.POLL_BATCH, type=COUNT,
         help="Most jobs asked for per PollForJobs (maxBatchSize, at least 1); halved while "
         "CodePipeline refuses it with ValidationException.")
@_option("--check-interval", env="CHECK_INTERVAL", default=defaults.CHECK_INTERVAL, type=INTERVAL,
         help="Seconds between looks at a running external run (unless the action sets it).")
@_option("--max-attempts", env="MAX_ATTEMPTS", default=defaults.MAX_ATTEMPTS, type=COUNT,
         help="Attempts of one effect before the job fails.")
@_option("--backoff-initial", env="BACKOFF_INITIAL", default=defaults.BACKOFF_INITIAL,
         type=INTERVAL, help="First retry delay (seconds), growing exponentially with jitter.")
@_option("--backoff-max", env="BACKOFF_MAX", default=defaults.BACKOFF_MAX, type=INTERVAL,
         help="Longest retry delay (seconds).")
@_option("--continuation-timeout", env="CONTINUATION_TIMEOUT",
         default=defaults.CONTINUATION_TIMEOUT, type=INTERVAL,
         help="Give up an execution whose continuation job has not come after this (seconds).")
@_option("--time-budget", env="TIME_BUDGET", default=defaults.TIME_BUDGET, type=INTERVAL,
         help="Cancel and fail an external run that takes longer (seconds).")
@_option("--shutdown-grace", env="SHUTDOWN_GRACE", default=defaults.SHUTDOWN_GRACE, type=GRACE,
         help="On SIGTERM, wait this long for running effects (seconds).")
@_option("--report-progress/--no-report-progress", env="REPORT_PROGRESS", default=True,
         help="Report progress with continuation tokens (the console links to the run).")
@_option("--progress", env="PROGRESS", default=defaults.PROGRESS,
         type=click.Choice(defaults.PROGRESS_MODES),
         help="When a job hands on before --progress-interval: 'link', once the run's console "
         "link is known; 'every-change', at each new summary too (more CodePipeline calls).")
@_option("--progress-interval", env="PROGRESS_INTERVAL", default=defaults.PROGRESS_INTERVAL,
         type=INTERVAL,
         help="Report progress at least this often while a run goes on (seconds).")
@_option("--submit-window", env="SUBMIT_WINDOW", default=defaults.SUBMIT_WINDOW, type=INTERVAL,
         help="A submission's call starts within this many seconds of its recorded window, or "
         "not at all; a resuming worker waits at most this plus the action's grace (seconds).")
@_option("--lease", env="LEASE", default=defaults.LEASE, type=INTERVAL,
         help="How long a claimed job is held without renewal before a peer may take it "
         "(seconds, measured on the database's clock).")
@_option("--job-timeout", env="JOB_TIMEOUT", default=defaults.JOB_TIMEOUT, type=INTERVAL,
         help="CodePipeline's job timeout: transient report failures are retried until then "
         "(seconds).")
@_option("--claim-depth", env="CLAIM_DEPTH", default=defaults.CLAIM_DEPTH, type=COUNT,
         help="Due jobs claimed per effect thread and round (the scheduler's queue depth).")
@_option("--secret-cache", env="SECRET_CACHE", default=defaults.SECRET_CACHE, type=COUNT,
         help="Jobs whose secrets are held in memory; a miss costs one GetJobDetails.")
@_option("--secret-max-age", env="SECRET_MAX_AGE", default=defaults.SECRET_MAX_AGE,
         type=INTERVAL,
         help="Secrets and artifact credentials older than this are fetched again (seconds).")
@_option("--db-pool-size", env="DB_POOL_SIZE", default=defaults.DB_POOL_SIZE, type=COUNT,
         help="Database connections kept open by the worker.")
@_option("--metrics-port", env="METRICS_PORT", default=defaults.METRICS_PORT,
         type=Count(0, 65535), help="Serve /metrics (Prometheus), /healthz and /readyz on this "
         "port (0: any free port, logged); default: not served.")
@_option("--metrics-host", env="METRICS_HOST", default=defaults.METRICS_HOST,
         help="The metrics server's address (loopback unless a scraper elsewhere needs it).")
@_option("--health-stale", env="HEALTH_STALE", default=defaults.HEALTH_STALE, type=INTERVAL,
         help="/healthz fails when a loop completed no round, or the database did not answer, "
         "for this long (seconds); keep it above --poll-interval.")
@_option("--action", "action_names", env="ACTIONS", multiple=True,
         help="Action to run (entry-point name or module:Class); repeat; default: all installed.")
@_option("--query-param", "query_params", env="QUERY_PARAMS", multiple=True,
         help="ACTION:Property=value: poll only that action's jobs whose queryable property has "
         "this value (required for action types with a queryable property); repeat.")
@_option("--events-queue", env="EVENTS_QUEUE", default=None,
         help="SQS queue URL an EventBridge rule fills with CodePipeline's action events: "
         "jobs are picked up and stopped runs cancelled at once (see README, Events).")
@_option("--s3-endpoint-url", env="S3_URL", default=None,
         help="S3 endpoint for the jobs' artifacts, e.g. the emulator's URL (default: AWS's, or "
         "AWS_ENDPOINT_URL_S3); path-style addressing when given.")
@_aws_options
@click.pass_context
def run(ctx: click.Context, until_idle: bool, max_in_flight: int, effect_threads: int,
        poll_interval: float, poll_interval_min: float, poll_batch: int, check_interval: float,
        max_attempts: int, backoff_initial: float, backoff_max: float,
        continuation_timeout: float, time_budget: float, shutdown_grace: float,
        report_progress: bool, progress: str, progress_interval: float, submit_window: float,
        lease: float,
        job_timeout: float, claim_depth: int, secret_cache: int, secret_max_age: float,
        db_pool_size: int, metrics_port: int | None, metrics_host: str, health_stale: float,
        action_names: tuple[str, ...], query_params: tuple[str, ...],
        events_queue: str | None, s3_endpoint_url: str | None, endpoint_url: str | None,
        region: str | None) -> None:
    """Poll CodePipeline and work jobs, resuming whatever the log says is unfinished."""
    from engine.action import available_actions, load_action
    from engine.codepipeline import CodePipeline
    from engine.worker import Settings, Worker

    if health_stale <= poll_interval:
        raise click.BadParameter(
            f"must be more than --poll-interval ({poll_interval:g} s), or /healthz fails "
            "between two idle polls", param_hint="--health-stale")
    names = list(action_names) or sorted(available_actions())
    if not names:
        raise click.UsageError("no action is installed; pass --action module:Class")
    actions = {}
    for name in names:
        cls = load_action(name)
        actions[getattr(cls, "name", name) if ":" in name else name] = cls()
    query = _query_params(query_params, actions)
    client = _client(endpoint_url, region)
    settings = Settings(
        max_in_flight=max_in_flight, effect_threads=effect_threads, poll_interval=poll_interval,
        poll_interval_min=poll_interval_min, poll_batch=poll_batch, check_interval=check_interval,
        max_attempts=max_attempts, backoff_initial=backoff_initial, backoff_max=backoff_max,
        continuation_timeout=continuation_timeout, time_budget=time_budget,
        shutdown_grace=shutdown_grace, report_progress=report_progress, progress=progress,
        progress_interval=progress_interval, submit_window=submit_window, lease=lease,
        job_timeout=job_timeout, claim_depth=claim_depth, secret_cache=secret_cache,
        secret_max_age=secret_max_age, health_stale=health_stale, query=query,
        s3_endpoint_url=s3_endpoint_url, events_queue=events_queue,
    )
    sqs = _sqs_client(events_queue, region) if events_queue else None
    worker = Worker(_store_for_run(ctx, db_pool_size), CodePipeline(client), actions, settings,
                    sqs=sqs)
    logs.scrub_with(worker.vault)

    said = logging.getLogger("cpworker")
    signals: list[int] = []

    def _stop(signum: int, _frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        signals.append(signum)
        if len(signals) == 1:
            said.warning("%s received: stopping; running effects get %g s to finish (send it "
                         "again to stop at once)", name, shutdown_grace)
            worker.stop()
            return
        left = worker.scheduler.in_flight_ids()
        shown = ", ".join(left[:20]) + (" ..." if len(left) > 20 else "")
        said.warning("%s received again: stopping at once; %d job(s) resume at the next start "
                     "from the log%s", name, len(left), f": {shown}" if left else "",
                     extra={"resume": left})
        logging.shutdown()
        os._exit(128 + signum)

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _stop)
        signal.signal(signal.SIGINT, _stop)
    server = None
    if metrics_port is not None:
        from engine.health import HealthServer
        from engine.metrics import METRICS

        server = HealthServer(worker.health, METRICS, metrics_host, metrics_port).start()
        said.info("metrics on %s/metrics, health on %s/healthz and %s/readyz", server.url,
                  server.url, server.url, extra={"metrics_url": server.url})
    try:
        code = worker.run(until_idle=until_idle)
    finally:
        if server is not None:
            server.close()
    ctx.exit(code)


@main.command()
@click.argument("action_names", nargs=-1)
@_option("--dry-run", env="DRY_RUN", is_flag=True, help="Say what would be done; change nothing.")
@_aws_options
def register(action_names: tuple[str, ...], dry_run: bool, endpoint_url: str | None,
             region: str | None) -> None:
    """Create the custom action type of each ACTION (default: all installed) in CodePipeline."""
    from botocore.exceptions import BotoCoreError, ClientError

    from engine.action import available_actions, load_action
    from engine.codepipeline import explain
    from engine.registration import register as register_type

    names = list(action_names) or sorted(available_actions())
    if not names:
        raise click.UsageError("no action is installed; name one (module:Class)")
    client = _client(endpoint_url, region)
    for name in names:
        definition = load_action(name).definition()
        try:
            result = register_type(client, definition, dry_run=dry_run)
        except (ClientError, BotoCoreError) as error:
            # The fix that fits this error (no credentials, unreachable, refused permission).
            raise CpworkerError(f"registering {definition.type_id} failed: "
                                f"{explain(error)}") from error
        click.echo(f"{result.type_id}: {result.status}")


# --- reading ------------------------------------------------------------------------------------


@main.command()
@_option("--state", env="JOBS_STATE", default=None, help="Only jobs in this state.")
@_option("--json", "as_json", env="JSON", is_flag=True, help="One JSON document.")
@click.pass_context
def jobs(ctx: click.Context, state: str | None, as_json: bool) -> None:
    """List jobs from the projection."""
    from engine.history import iso

    rows = _store(ctx, read_only=True).list_jobs(state)
    if as_json:
        click.echo(json.dumps([
            {"job_id": j.job_id, "state": j.state.value, "action_type": j.action_type,
             "execution_id": j.execution_id, "external_id": j.external_id,
             "pipeline": j.pipeline.get("pipeline_name"), "created_at": iso(j.created_at),
             "updated_at": iso(j.updated_at), "next_due_at": iso(j.next_due_at),
             "reason": j.reason}
            for j in rows
        ], indent=2))
        return
    if not rows:
        click.echo("no jobs" + (f" in state {state}" if state else ""))
        return
    click.echo(f"{'JOB':<36}  {'STATE':<21}  {'ACTION TYPE':<22}  {'UPDATED':<29}  EXTERNAL")
    for j in rows:
        click.echo(f"{j.job_id:<36}  {j.state.value:<21}  {j.action_type:<22}  "
                   f"{iso(j.updated_at) or '':<29}  {j.external_id or '-'}")


@main.command()
@click.argument("job")
@_option("--json", "as_json", env="JSON", is_flag=True,
              help='{"job_id", "state", "events": [{"seq", "type", "at", "data"}]}')
@click.pass_context
def inspect(ctx: click.Context, job: str, as_json: bool) -> None:
    """A job's history as a timeline (a unique prefix of the id is enough)."""
    from engine.history import inspect_json, timeline

    store = _store(ctx, read_only=True)
    found = store.resolve(job)
    if as_json:
        click.echo(json.dumps(inspect_json(store, found), indent=2))
    else:
        click.echo(timeline(store, found), nl=False)


@main.command()
@click.argument("job", required=False)
@_option("--all", "all_jobs", env="REPLAY_ALL", is_flag=True,
         help="Every job in the database.")
@_option("--json", "as_json", env="JSON", is_flag=True, help="One JSON document.")
@click.pass_context
def replay(ctx: click.Context, job: str | None, all_jobs: bool, as_json: bool) -> None:
    """Fold recorded histories through the current machine; exit 1 on any problem."""
    from engine.history import replay_jobs

    if bool(job) == all_jobs:
        raise click.UsageError("give a JOB or --all (not both)")
    store = _store(ctx, read_only=True)
    ids = None if all_jobs else [store.resolve(job or "").job_id]
    reports = replay_jobs(store, ids)
    bad = [r for r in reports if not r.ok]
    if as_json:
        click.echo(json.dumps({"ok": not bad, "jobs": [r.to_json() for r in reports]}, indent=2))
    else:
        for r in reports:
            status = "ok" if r.ok else "PROBLEM"
            click.echo(f"{r.job_id}  {r.events:>3} events  -> {r.state or '-':<21} {status}")
            if r.error:
                click.echo(f"    cannot accept: {r.error}")
            for m in r.mismatches:
                click.echo(f"    projection mismatch: {m}")
        click.echo(f"{len(reports)} job(s) replayed, {len(bad)} with problems")
    ctx.exit(1 if bad else 0)


@main.command()
@_option("--finished-before", env="PRUNE_FINISHED_BEFORE", required=True,
         help="Remove executions whose jobs all ended at least this long ago: 90d, 12h, 2w "
         "(at least CodePipeline's 24 h job timeout).")
@_option("--batch", env="PRUNE_BATCH", default=200, type=COUNT,
         help="Executions removed per transaction (a short hold of the writer's lock).")
@_option("--dry-run", env="DRY_RUN", is_flag=True,
         help="Count what would be removed; change nothing.")
@click.pass_context
def prune(ctx: click.Context, finished_before: str, batch: int, dry_run: bool) -> None:
    """Delete the events and rows of whole executions that ended long enough ago."""
    from engine.clock import SystemClock
    from engine.maintenance import parse_duration
    from engine.maintenance import prune as prune_store

    report = prune_store(_store(ctx, existing=True), SystemClock().now(),
                         parse_duration(finished_before), batch=batch, dry_run=dry_run)
    removed = report.removed
    verb = "would remove" if dry_run else "removed"
    click.echo(f"{verb} {removed.executions} execution(s): {removed.jobs} job(s), "
               f"{removed.events} event(s)"
               + ("" if dry_run else f" in {report.batches} batch(es)"))


@main.command()
@_option("--dry-run", env="DRY_RUN", is_flag=True,
         help="Say what differs; change nothing (exit 1 if anything would change).")
@_option("--json", "as_json", env="JSON", is_flag=True, help="One JSON document.")
@click.pass_context
def rebuild(ctx: click.Context, dry_run: bool, as_json: bool) -> None:
    """Recompute the jobs projection from the log and report every row that differed."""
    from engine.maintenance import rebuild as rebuild_store

    report = rebuild_store(_store(ctx, existing=True), dry_run=dry_run)
    if as_json:
        click.echo(json.dumps(report.to_json(), indent=2))
    else:
        for job_id, found in report.differences.items():
            click.echo(f"{job_id}  " + "; ".join(found))
        for job_id in report.without_events:
            click.echo(f"{job_id}  a row without events: "
                       + ("would be dropped" if dry_run else "dropped"))
        for job_id, refusal in report.illegal.items():
            click.echo(f"{job_id}  left alone, its history is refused: {refusal} "
                       "(see cpworker replay)")
        for job_id in report.moved:
            click.echo(f"{job_id}  left alone: a worker advanced it during the rebuild")
        changed = len(report.differences) - len(report.moved) + len(report.without_events)
        click.echo(f"{report.jobs} job(s) read from the log, {len(report.differences)} row(s) "
                   f"differed, {len(report.without_events)} without events; "
                   + (f"{changed} would change" if dry_run else f"{max(changed, 0)} rewritten"))
    changes = bool(report.differences or report.without_events)
    ctx.exit(1 if dry_run and changes else 0)


@main.command()
@_option("--format", "fmt", env="DIAGRAM_FORMAT", default="mermaid",
         type=click.Choice(["mermaid", "text"]))
def diagram(fmt: str) -> None:
    """The job machine, drawn from its own definition."""
    from engine.machine import mermaid, text_diagram

    click.echo(mermaid() if fmt == "mermaid" else text_diagram(), nl=False)


@main.command()
def actions() -> None:
    """Installed actions (entry-point group cpworker.actions)."""
    from engine.action import available_actions

    found = available_actions()
    if not found:
        click.echo("no actions installed")
    for name, target in sorted(found.items()):
        click.echo(f"{name}  {target}")


if __name__ == "__main__":  # pragma: no cover
    main()
