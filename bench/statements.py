"""SQL statements per certificate: what the manager asks its database for each enrollment, by statement.

The same setup as bench.throughput's `ours` rows (a real `ca-manager serve` and `ca-connector run -workers
8` with a local CA, `POST /api/v1/certificates {"wait": 30}`), with a `sitecustomize` put on the
manager's PYTHONPATH that counts every statement it sends (SQLAlchemy's `before_cursor_execute`) and
every commit. SIGUSR1 starts the count just before the measured period, SIGUSR2 writes it just after;
this prints each statement's count per certificate issued, the caller in our code that sent the most of
it, and the totals. A figure for finding work to save, not a test:

    .venv/bin/python -m bench.statements [--clients 8] [--seconds 5] [--database URL]
"""

from __future__ import annotations

from bench.hooked import parser, run_hooked, sitecustomize

# Loaded by every Python process started with the directory on PYTHONPATH; counts only in the manager.
SITECUSTOMIZE = sitecustomize(
    "BENCH_STATEMENTS_OUT",
    r"""
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    counts = collections.Counter()
    callers = collections.defaultdict(collections.Counter)

    @event.listens_for(Engine, "before_cursor_execute")
    def _statement(conn, cursor, statement, parameters, context, executemany):
        text = re.sub(r"\s+", " ", statement).strip()[:90]
        counts[text] += 1
        ours = [f for f in traceback.extract_stack(limit=25) if "/caconnector/" in f.filename
                and "group_commit" not in f.filename]
        if ours:
            frame = ours[-1]
            callers[text][f"{frame.filename.rsplit('/caconnector/', 1)[1]}:{frame.lineno} {frame.name}"] += 1

    @event.listens_for(Engine, "commit")
    def _commit(conn):
        counts["(commit)"] += 1

    def start():
        counts.clear()
        callers.clear()

    def payload():
        return [[n, text, callers[text].most_common(1)[0][0] if callers[text] else ""]
                for text, n in counts.most_common()]
    """,
)


def main() -> None:
    arguments = parser(__doc__)
    arguments.add_argument("--database", help="a scratch PostgreSQL URL (default: SQLite)")
    arguments.add_argument("--workers", type=int, default=8, help="ca-connector run -workers")
    args = arguments.parse_args()
    row, rows = run_hooked(args, sitecustomize=SITECUSTOMIZE, out_variable="BENCH_STATEMENTS_OUT")
    issued = max(row.count, 1)
    kind = "PostgreSQL" if args.database else "SQLite"
    print(f"{kind}, {args.clients} clients, {args.seconds:g} s: {row.count} certificates issued", flush=True)
    print(f"{'per cert':>9}  statement (first 90 characters)  <- the caller in our code sending it most")
    for count, text, caller in rows:
        print(f"{count / issued:9.2f}  {text}" + (f"  <- {caller}" if caller else ""))
    statements = sum(count for count, text, _ in rows if text != "(commit)")
    commits = sum(count for count, text, _ in rows if text == "(commit)")
    print(f"total: {statements / issued:.1f} statements and {commits / issued:.2f} commits per certificate")


if __name__ == "__main__":
    main()
