"""`cpworker emulator` and `cpworker sandbox`, attached to the command line on demand."""

from __future__ import annotations

import logging
import signal
import sys
import threading
from types import FrameType

import click

from engine.cli import _option


@click.command()
@click.option("--dir", "directory", default="cpworker-sandbox", show_default=True,
              type=click.Path(file_okay=False), help="Where the sandbox's state database goes "
              "(emptied first).")
@click.option("--action", "action_name", default="travis", show_default=True,
              help="The action the sandbox runs.")
@click.pass_context
def sandbox(ctx: click.Context, directory: str, action_name: str) -> None:
    """Emulators, the Travis action and the engine together: a demonstration in under a minute."""
    from pathlib import Path

    from engine.devtools.sandbox import run_sandbox

    if ctx.parent is not None and str(ctx.parent.params.get("log_level")).upper() == "INFO":
        logging.getLogger().setLevel(logging.WARNING)  # the sandbox prints its own progress
    ctx.exit(run_sandbox(Path(directory).resolve(), click.echo, action_name))


# --- emulator -----------------------------------------------------------------------------------


@click.command()
@_option("--host", env="EMULATOR_HOST", default="127.0.0.1",
         help="Address to listen on (loopback unless you mean otherwise: it hands out secrets).")
@_option("--port", env="EMULATOR_PORT", default=4700, type=int,
         help="CodePipeline emulator port (0: any free port).")
@_option("--travis-port", env="EMULATOR_TRAVIS_PORT", default=4701, type=int,
         help="Travis CI emulator port (0: any free port).")
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
@_option("--build-delay", env="EMULATOR_BUILD_DELAY", default=2.0, type=float,
         help="Seconds before a Travis request turns into a build.")
@_option("--seed", env="EMULATOR_SEED", default=None, type=int,
         help="Seed of ids, nonces and fault injection (default: a fresh one, so a restarted "
         "emulator never hands out ids a worker's database already holds).")
def emulator(host: str, port: int, travis_port: int, ack_timeout: float,
             continuation_delay: float, job_timeout: float, job_retention: float,
             max_batch_size: int, build_delay: float, seed: int | None) -> None:
    """Start the CodePipeline and Travis CI emulators until interrupted."""
    import random

    from actions.travis.emulator import TravisEmulator
    from engine.devtools.emulator import CodePipelineEmulator, EmulatorServer

    if seed is None:
        seed = random.SystemRandom().randrange(2**31)

    codepipeline = CodePipelineEmulator(
        ack_timeout=ack_timeout, continuation_delay=continuation_delay, job_timeout=job_timeout,
        job_retention=None if job_retention < 0 else job_retention,
        max_batch_size=max_batch_size or None, seed=seed)
    travis = TravisEmulator(build_delay=build_delay, seed=seed)
    with EmulatorServer(codepipeline, host, port) as cp_server, \
            EmulatorServer(travis, host, travis_port) as travis_server:
        click.echo(f"CodePipeline job API emulator: {cp_server.url}  "
                   f"(admin: {cp_server.url}/_emulator/)")
        click.echo(f"Travis CI API v3 emulator:     {travis_server.url}  "
                   f"(admin: {travis_server.url}/_emulator/)")
        click.echo("\nPoint a worker (or boto3, or the AWS CLI) at them with:\n")
        click.echo(f"  export AWS_ENDPOINT_URL_CODEPIPELINE={cp_server.url}")
        click.echo("  export AWS_ACCESS_KEY_ID=emulator AWS_SECRET_ACCESS_KEY=emulator")
        click.echo("  export AWS_DEFAULT_REGION=us-east-1")
        click.echo(f"  export CPWORKER_TRAVIS_API_URL={travis_server.url}")
        click.echo(f"\nSeed {seed} (--seed {seed} repeats this run's ids and faults). "
                   "Press Ctrl-C to stop.")
        sys.stdout.flush()
        stopped = threading.Event()

        def _stop(_signum: int, _frame: FrameType | None) -> None:
            stopped.set()

        signal.signal(signal.SIGTERM, _stop)
        signal.signal(signal.SIGINT, _stop)
        while not stopped.wait(1.0):
            pass
    click.echo("emulators stopped")
