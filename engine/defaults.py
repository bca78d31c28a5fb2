"""Named defaults, one place. Each is also a `cpworker run` flag and a CPWORKER_* variable."""

DB_URL = "sqlite:///state.db"
"""The embedded default: one SQLite file in the working directory."""

SQLITE_SYNCHRONOUS = "FULL"
"""Survives a power cut, not only a killed process (see engine.store.sql)."""

MAX_IN_FLIGHT = 1000
"""Jobs this worker holds at once (acquired and not final); the poller asks for no more."""

EFFECT_THREADS = 32
"""Effects (HTTP calls) running at once."""

CLAIM_DEPTH = 4
"""Machines claimed per effect thread and round: a queue deep enough that a round's group
commit carries many jobs, shallow enough that leases never expire in the queue."""

POLL_INTERVAL = 33.0
"""Longest wait between polls when idle. The poller waits 90-100 % of it (jitter spreads many
workers' polls), about 31 s on average: under two polls a minute per action type, as AWS's
own workers (every 30 s)."""

POLL_INTERVAL_MIN = 1.0
"""Wait between polls while jobs keep arriving."""

POLL_BATCH = 10
"""PollForJobs' maxBatchSize, at most (never more than the free capacity). The model sets only
a minimum of 1 and AWS documents no maximum (PROTOCOL A2, A3); every known worker asks for 1
to 10 (the Jenkins plugin 1, AWS's sample worker its 10 threads), so 10 stays inside what is
known to work. A ValidationException halves it (engine.poller)."""

CHECK_INTERVAL = 30.0
"""Seconds between two looks at a running external run, unless the action says otherwise."""

MAX_ATTEMPTS = 6
"""Attempts of one effect before the job fails (or, for a report, is given up)."""

BACKOFF_INITIAL = 2.0
BACKOFF_MAX = 300.0

PROGRESS = "link"
"""When a job hands on before its progress interval: "link" (once the run's id, and so the
console's link, is known) or "every-change" (each new summary too: more continuation jobs, more
CodePipeline calls). engine.decide.Policy.progress says why."""

PROGRESS_MODES = ("link", "every-change")

PROGRESS_INTERVAL = 300.0
"""Longest time one job holds a running external run before handing on with a progress report;
that report is also how a stopped execution is noticed while its run goes on."""

CONTINUATION_TIMEOUT = 900.0
"""How long an execution waits for the continuation job CodePipeline owes it before giving up."""

TIME_BUDGET = 23 * 3600.0
"""An external run's time budget: under CodePipeline's 24 h custom-action timeout, so the run
is cancelled and the job failed with a message before CodePipeline times it out silently."""

SHUTDOWN_GRACE = 30.0
"""Seconds SIGTERM waits for running effects before exiting; unfinished ones resume next start."""

SUBMIT_WINDOW = 10.0
"""Seconds a submission's call may start after its call window opened (recorded in the log):
with the action's submit_grace it bounds when a dead worker's call can land, so a resuming
worker waits at most window + grace, however often workers restart."""

SUBMIT_GRACE = 30.0
"""An action's submit_grace unless it sets its own (engine.action.Action): how long after it
started a submit() call may still land. Per action, so not a flag of the worker's."""

PER_ACTION = frozenset({"SUBMIT_GRACE"})
"""The defaults above that an action sets for itself, not the worker's command line."""

JOB_TIMEOUT = 24 * 3600.0
"""CodePipeline's timeout of a custom action's job: until then a result may still be accepted,
so transient report failures are retried, never given up."""

DB_POOL_SIZE = 5
"""Database connections the worker keeps open (SQLAlchemy's pool). Its loops share them: the
scheduler's commits, the poller's intake, lease renewal and the occasional read; effects never
touch the database, so more effect threads need no more connections."""

HEALTH_STALE = 180.0
"""Seconds a loop may go without completing a round, or the database without answering, before
/healthz says the worker is not live: above the longest idle wait between polls (POLL_INTERVAL)
plus one poll that waits out boto3's timeouts and retries."""

METRICS_PORT: int | None = None
"""Where /metrics, /healthz and /readyz are served; None: not at all (0: any free port)."""

METRICS_HOST = "127.0.0.1"
"""The metrics server's address: loopback unless a scraper on another host must reach it."""

LEASE = 300.0
"""How long a claimed machine is held; effects time out well inside it."""

SECRET_CACHE = 4096
"""Jobs whose secrets are held in memory (LRU); a miss costs one GetJobDetails."""

SECRET_MAX_AGE = 600.0
"""Secrets and artifact credentials older than this are fetched again (credentials expire)."""
