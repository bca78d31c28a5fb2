"""Produce state.db.example: real `cpworker run` processes against the local emulators.

    python scripts/make_example_db.py [--out state.db.example]

Four executions of the ledger test action: one that passes (handed on through a continuation
job), one that fails, one whose worker is killed with SIGKILL right after it submitted (and
resumes on restart without submitting again), and one stopped-and-abandoned in CodePipeline while
it runs (cancelled). The script refuses to write a file that contains any secret it handed out.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.devtools.emulator import CodePipelineEmulator, EmulatorServer  # noqa: E402
from engine.devtools.testing import codepipeline_client  # noqa: E402
from tests.actions.ledger import LedgerAction  # noqa: E402

TYPE = "Test/Custom/Ledger/1"


def worker(db: Path, url: str, *extra: str, crash_at: str | None = None,
           timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "AWS_ENDPOINT_URL_CODEPIPELINE": url, "AWS_ACCESS_KEY_ID": "example",
           "AWS_SECRET_ACCESS_KEY": "example", "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_CONFIG_FILE": "/dev/null", "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
           "PYTHONPATH": str(ROOT)}
    env.pop("CPWORKER_CRASH_AT", None)
    if crash_at:
        env["CPWORKER_CRASH_AT"] = crash_at
    command = [sys.executable, "-m", "engine.cli", "--db", f"sqlite:///{db}", "run",
               "--action", "tests.actions.ledger:LedgerAction", "--poll-interval", "0.3",
               "--poll-interval-min", "0.05", "--check-interval", "0.3",
               "--continuation-timeout", "10", *extra]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "state.db.example")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="cpworker-example-"))
    ledger = work / "ledger"
    ledger.mkdir()
    db = work / "state.db"
    emulator = CodePipelineEmulator(continuation_delay=0.5, ack_timeout=5.0, seed=7)
    secrets: list[str] = []
    with EmulatorServer(emulator) as server:
        client = codepipeline_client(server.url)
        client.create_custom_action_type(**LedgerAction.definition().document)

        def start(outcome: str, pipeline: str, steps: int = 2) -> dict[str, str]:
            token = f"ledger-secret-{os.urandom(8).hex()}"
            secrets.append(token)
            return emulator.start_execution(
                TYPE, {"Ledger": "ledger", "Outcome": outcome, "Steps": str(steps),
                       "Token": token}, pipeline_name=pipeline, action="Ledger")

        os.chdir(work)  # the Ledger property is a relative path: no temp dir names in the file
        start("pass", "web-release")
        start("fail", "api-release", steps=1)
        plain = worker(db, server.url, "--until-idle")
        if plain.returncode != 0:
            raise SystemExit(f"the first run failed: {plain.stderr[-2000:]}")
        # Killed with SIGKILL between the submission and its record; resumed without a second.
        start("pass", "mobile-release", steps=2)
        crashed = worker(db, server.url, "--until-idle", crash_at="after:submit")
        resumed = worker(db, server.url, "--until-idle")
        if crashed.returncode != -9 or resumed.returncode != 0:
            raise SystemExit("the crash-and-resume execution did not go as planned")
        # Stopped and abandoned while it runs: the worker is killed mid-run, the execution is
        # abandoned, and the restarted worker's next progress report is refused.
        abandoned = start("pass", "docs-release", steps=60)
        first = worker(db, server.url, "--until-idle", crash_at="after:check@3")
        emulator.stop_execution(abandoned["pipelineExecutionId"], abandon=True,
                                reason="a newer release superseded it")
        last = worker(db, server.url, "--until-idle", "--progress-interval", "1")
        if first.returncode != -9 or last.returncode != 0:
            raise SystemExit("the abandoned execution did not go as planned")
        for job in emulator.jobs():  # every credential set handed out, the worker's included
            for creds in job["artifactCredentials"]:
                secrets += [creds["accessKeyId"], creds["secretAccessKey"], creds["sessionToken"]]
        submissions = (ledger / "submissions.log").read_text().splitlines()
        if len(submissions) != 4:
            raise SystemExit(f"expected one submission per execution, got {submissions}")
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.execute("PRAGMA journal_mode=DELETE")
        conn.execute("VACUUM")
    raw = db.read_bytes()
    leaked = [s for s in secrets if s.encode() in raw]
    if leaked:
        raise SystemExit(f"refusing to write {args.out}: {len(leaked)} secret(s) found in it")
    shutil.copyfile(db, args.out)
    shutil.rmtree(work, ignore_errors=True)
    print(f"wrote {args.out} ({len(raw)} bytes, {len(secrets)} secrets checked absent)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
