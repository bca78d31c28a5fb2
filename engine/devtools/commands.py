"""`cpworker emulator` and `cpworker sandbox`, attached to the command line on demand."""

from __future__ import annotations

import logging
import re
import signal
import sys
import threading
from types import FrameType
from typing import TYPE_CHECKING

import click

from engine.cli import _option
from engine.errors import ConfigurationProblem

if TYPE_CHECKING:
    from contextlib import ExitStack

    from engine.devtools.emulator import CodePipelineEmulator, EmulatorServer


@click.command()
@_option("--dir", "directory", env="SANDBOX_DIR", default=None, type=click.Path(),
         help="Where the sandbox's state database goes: a new or empty directory, or one an "
         "earlier sandbox made (emptied). Default: a fresh temporary directory.")
@_option("--action", "action_names", env="SANDBOX_ACTIONS", multiple=True,
         help="Play this action's scenario (entry-point group cpworker.sandboxes); repeat; "
         "default: every installed one.")
@click.pass_context
def sandbox(ctx: click.Context, directory: str | None, action_names: tuple[str, ...]) -> None:
    """Emulators, the installed actions and the engine together: a demonstration in under a
    minute."""
    from pathlib import Path

    from engine.devtools.plugins import scenarios
    from engine.devtools.sandbox import run_sandbox

    installed = scenarios()
    unknown = sorted(set(action_names) - set(installed))
    if unknown:
        raise click.BadParameter(
            f"no sandbox scenario named {', '.join(unknown)}; installed: "
            f"{', '.join(sorted(installed)) or 'none'}", param_hint="--action")
    chosen = {name: installed[name] for name in (action_names or sorted(installed))}
    settings = ctx.find_root().obj or {}
    if str(settings.get("log_level", "INFO")).upper() == "INFO":
        logging.getLogger().setLevel(logging.WARNING)  # the sandbox prints its own progress
    if directory is None:
        import tempfile

        directory = tempfile.mkdtemp(prefix="cpworker-sandbox-")
    where = Path(directory).resolve()
    click.echo(f"{'sandbox directory':<23}{where}")
    ctx.exit(run_sandbox(where, click.echo, chosen))


# --- emulator -----------------------------------------------------------------------------------


def _pairs(given: tuple[str, ...], option: str, separator: str) -> list[tuple[str, str, str]]:
    """NAME=VALUE (or NAME.KEY=VALUE) items as (NAME, KEY, VALUE)."""
    found = []
    for item in given:
        target, _, value = item.partition("=")
        name, _, key = target.partition(separator) if separator else (target, "", "")
        if not name or not value or (separator and not key):
            form = "NAME.KEY=VALUE" if separator else "NAME=VALUE"
            raise click.BadParameter(f"{item!r}: expected {form}", param_hint=option)
        found.append((name, key, value))
    return found


@click.command()
@_option("--host", env="EMULATOR_HOST", default="127.0.0.1",
         help="Address to listen on (loopback unless you mean otherwise: it hands out secrets).")
@_option("--port", env="EMULATOR_PORT", default=4700, type=int,
         help="CodePipeline emulator port (0: any free port).")
@_option("--port-for", "ports_for", env="EMULATOR_PORTS_FOR", multiple=True,
         help="NAME=PORT: the port of an action's emulator (entry-point group "
         "cpworker.emulators); repeat; default: any free port.")
@_option("--ack-timeout", env="EMULATOR_ACK_TIMEOUT", default=30.0, type=float,
         help="Seconds before a dispatched, unacknowledged job is handed out again.")
@_option("--continuation-delay", env="EMULATOR_CONTINUATION_DELAY", default=30.0, type=float,
         help="Seconds before a continuation job can be polled.")
@_option("--job-timeout", env="EMULATOR_JOB_TIMEOUT", default=86400.0, type=float,
         help="Seconds before a job times out.")
@_option("--job-retention", env="EMULATOR_JOB_RETENTION", default=3600.0, type=float,
         help="Seconds a completed job is still known; then calls naming it answer "
         "JobNotFoundException (AWS documents only 'a short period'; a negative value keeps "
         "jobs until the emulator stops).")
@_option("--max-batch-size", env="EMULATOR_MAX_BATCH_SIZE", default=0, type=int,
         help="Largest PollForJobs maxBatchSize accepted; larger answers ValidationException "
         "(0: none, as the model and AWS's documentation set none).")
@_option("--emulator-option", "emulator_options", env="EMULATOR_OPTIONS", multiple=True,
         help="NAME.KEY=VALUE: a setting of an action's emulator, e.g. "
         "travis.build_delay=0.5; repeat.")
@_option("--seed", env="EMULATOR_SEED", default=None, type=int,
         help="Seed of ids, nonces and fault injection (default: a fresh one, so a restarted "
         "emulator never hands out ids a worker's database already holds).")
@_option("--events-queue", env="EMULATOR_EVENTS_QUEUE", default=None,
         help="NAME: create this SQS queue on a local moto server (pip install "
         "'cpworker[emulator]') and publish CodePipeline's action events to it, as an "
         "EventBridge rule with an SQS target would.")
@_option("--s3-endpoint", env="EMULATOR_S3_ENDPOINT", default=None,
         help="URL of an S3 to keep artifacts in (its credentials from the usual AWS "
         "variables); default: a local moto server when moto is installed.")
@_option("--credentials-ttl", env="EMULATOR_CREDENTIALS_TTL", default=900.0,
         type=click.FloatRange(min=0),
         help="Seconds a job's artifact credentials work (AWS documents no lifetime; the "
         "Jenkins plugin says 15 minutes).")
def emulator(host: str, port: int, ports_for: tuple[str, ...], ack_timeout: float,
             continuation_delay: float, job_timeout: float, job_retention: float,
             max_batch_size: int, emulator_options: tuple[str, ...], seed: int | None,
             events_queue: str | None, s3_endpoint: str | None,
             credentials_ttl: float) -> None:
    """Start the CodePipeline emulator and every installed action's emulator until
    interrupted."""
    import random
    from contextlib import ExitStack

    from engine.clock import SystemClock
    from engine.devtools.emulator import CodePipelineEmulator, EmulatorServer
    from engine.devtools.plugins import emulators

    installed = emulators()
    ports = {name: value for name, _, value in _pairs(ports_for, "--port-for", "")}
    options: dict[str, dict[str, str]] = {}
    for name, key, value in _pairs(emulator_options, "--emulator-option", "."):
        options.setdefault(name, {})[key] = value
    unknown = sorted((set(ports) | set(options)) - set(installed))
    if unknown:
        raise click.BadParameter(
            f"no emulator named {', '.join(unknown)}; installed: "
            f"{', '.join(sorted(installed)) or 'none'}")
    for name, value in ports.items():
        if not value.isdigit():
            raise click.BadParameter(f"{name}={value}: not a port", param_hint="--port-for")
    if seed is None:
        seed = random.SystemRandom().randrange(2**31)
    if events_queue is not None and not re.fullmatch(r"[A-Za-z0-9_-]{1,80}", events_queue):
        raise click.BadParameter(f"{events_queue!r}: an SQS queue name is 1-80 letters, digits, "
                                 "hyphens or underscores", param_hint="--events-queue")

    codepipeline = CodePipelineEmulator(
        ack_timeout=ack_timeout, continuation_delay=continuation_delay, job_timeout=job_timeout,
        job_retention=None if job_retention < 0 else job_retention,
        max_batch_size=max_batch_size or None, seed=seed, s3_endpoint=s3_endpoint,
        credentials_ttl=credentials_ttl)
    # Before anything is printed: whoever reads the URLs may stop us at once (a test, a script).
    stopped = threading.Event()

    def _stop(_signum: int, _frame: FrameType | None) -> None:
        stopped.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    with ExitStack() as stack:
        cp_server = stack.enter_context(_listening(EmulatorServer(codepipeline, host, port),
                                                   "--port"))
        servers = []  # every one listening before anything is printed: a port in use is one line
        for name, plugin in sorted(installed.items()):
            app = plugin.build(SystemClock(), seed, options.get(name, {}))
            servers.append((name, plugin, stack.enter_context(_listening(
                EmulatorServer(app, host, int(ports.get(name, 0))), f"--port-for {name}=PORT"))))
        click.echo(f"CodePipeline job API emulator: {cp_server.url}  "
                   f"(admin: {cp_server.url}/_emulator/)")
        exports = [f"AWS_ENDPOINT_URL_CODEPIPELINE={cp_server.url}",
                   "AWS_ACCESS_KEY_ID=emulator AWS_SECRET_ACCESS_KEY=emulator",
                   "AWS_DEFAULT_REGION=us-east-1"]
        if events_queue is not None:
            exports.extend(_events_queue(stack, codepipeline, events_queue))
        exports.extend(_artifact_store(stack, codepipeline, cp_server.url))
        for name, plugin, server in servers:
            click.echo(f"{plugin.title} emulator ({name}): {server.url}")
            exports.extend(f"{key}={value}"
                           for key, value in plugin.environment(server.url).items())
        click.echo("\nPoint a worker (or boto3, or the AWS CLI) at them with:\n")
        for line in exports:
            click.echo(f"  export {line}")
        click.echo(f"\nSeed {seed} (--seed {seed} repeats this run's ids and faults). "
                   "Press Ctrl-C to stop.")
        sys.stdout.flush()
        while not stopped.wait(1.0):
            pass
    click.echo("emulators stopped")


def _events_queue(stack: ExitStack, codepipeline: CodePipelineEmulator, name: str
                  ) -> list[str]:
    """Start moto's SQS (on 127.0.0.1, whatever --host says), create the queue, publish to
    it; the exports a worker needs."""
    from engine.devtools.emulator._cp_events import LocalSqs

    try:
        sqs = stack.enter_context(LocalSqs(region=codepipeline.region))
    except (RuntimeError, OSError) as error:
        raise ConfigurationProblem(f"cannot start the events queue: {error}",
                                   fix="pip install 'cpworker[emulator]', or leave out "
                                   "--events-queue") from error
    url = sqs.create_queue(name)
    codepipeline.events.configure(queue_url=url)
    stack.callback(codepipeline.events.close)
    click.echo(f"Action events (EventBridge to SQS, on moto): {url}")
    return [f"AWS_ENDPOINT_URL_SQS={sqs.endpoint}", f"CPWORKER_EVENTS_QUEUE={url}"]


def _artifact_store(stack: ExitStack, codepipeline: CodePipelineEmulator, url: str) -> list[str]:
    """Start the artifact store's S3 (see _cp_s3), say where it is; the exports a worker needs.
    Without one, say in one line how to get it."""
    store = codepipeline.artifact_store
    if store is None:
        click.echo("Artifacts: locations only, nothing stored behind them (for real artifacts "
                   "on S3: pip install 'cpworker[emulator]', or --s3-endpoint URL)")
        return []
    stack.callback(codepipeline.close)
    try:
        store.start()
    except Exception as error:
        raise ConfigurationProblem(f"cannot start the artifact store: {error}",
                                   fix="check --s3-endpoint and its credentials, or leave it "
                                   "out to use moto") from error
    key = f", KMS key {store.kms_key_id}" if store.kms_key_id else ""
    click.echo(f"S3 artifact store: {url}  (path-style, bucket {store.bucket}{key})")
    return [f"AWS_ENDPOINT_URL_S3={url}"]


def _listening(server: EmulatorServer, option: str) -> EmulatorServer:
    """The server, listening; a port in use or a host not of this machine is one line."""
    try:
        return server.start()
    except OSError as error:
        raise ConfigurationProblem(
            f"cannot listen on {server.address}: {error.strerror or error}",
            fix=f"another program (another emulator?) may hold it: choose another port with "
            f"{option} (0: any free port), or stop that program") from error
