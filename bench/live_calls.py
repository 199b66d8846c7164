"""Python calls per certificate in a running manager, by the function of ours nearest to them.

The setup of bench/throughput.py's `ours` rows (a real `ca-manager serve` and `ca-connector run -workers
8` with a local CA, `POST /api/v1/certificates {"wait": 30}` from 8 clients), with a `sitecustomize` on
the manager's PYTHONPATH that installs a profile function in every thread: SIGUSR1 starts the count
just before the measured period, SIGUSR2 writes it just after. Each call into code not ours (SQLAlchemy,
FastAPI, asyncio, ...) is counted against the nearest caller of ours on the stack. The count slows the
manager down several times, so its throughput means nothing here, but the calls per certificate repeat
to within a few percent, on a machine whose CPU timings do not:

    .venv/bin/python -m bench.live_calls [--seconds 5] [--clients 8]
    PYTHONPATH=/tmp/tp-base/src .venv/bin/python -m bench.live_calls    # another checkout's code
"""

from __future__ import annotations

import collections

from bench.hooked import parser, run_hooked, sitecustomize

# Loaded by every Python process started with the directory on PYTHONPATH; counts only in the manager.
SITECUSTOMIZE = sitecustomize(
    "BENCH_CALLS_OUT",
    """
    under = collections.Counter()
    total = [0]
    on = [False]
    names = {}

    def where(code):
        known = names.get(code)
        if known is None:
            path = code.co_filename
            known = names[code] = ("/caconnector/" in path, path.split("src/")[-1] + ":" + code.co_name)
        return known

    def profile(frame, event, arg):
        if not on[0] or event != "call":
            return
        total[0] += 1
        if where(frame.f_code)[0]:
            return
        caller = frame.f_back
        while caller is not None:
            ours, name = where(caller.f_code)
            if ours:
                under[name] += 1
                return
            caller = caller.f_back
        under["(no function of ours on the stack)"] += 1

    sys.setprofile(profile)
    threading.setprofile(profile)

    def start():
        under.clear()
        total[0] = 0
        on[0] = True

    def payload():
        on[0] = False
        return {"total": total[0], "under": under.most_common()}
    """,
)


def main() -> None:
    arguments = parser(__doc__)
    arguments.add_argument("--top", type=int, default=25, help="functions of ours to print")
    args = arguments.parse_args()
    row, data = run_hooked(args, sitecustomize=SITECUSTOMIZE, out_variable="BENCH_CALLS_OUT")
    issued = max(row.count, 1)
    print(f"SQLite, {args.clients} clients, {args.seconds:g} s: {row.count} certificates issued")
    print(f"{data['total'] / issued:.0f} Python calls per certificate in the manager; of those outside our")
    print("code, per certificate, by the nearest function of ours on the stack:")
    grouped = collections.Counter(dict(data["under"]))
    for name, calls in grouped.most_common(args.top):
        print(f"  {calls / issued:8.1f}  {name}")


if __name__ == "__main__":
    main()
