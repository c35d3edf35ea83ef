"""Run a Python module under cProfile in every thread, for the benchmarks' ``--profile``.

    python bench/profiled.py OUT.prof -m uvicorn console.asgi:application ...

cProfile alone sees only the main thread; the console's bulk database writes run in
asgiref's worker threads, so each new thread gets a profiler of its own (threading.setprofile)
and all of them are merged into OUT.prof (pstats format) when the module returns, e.g. after
uvicorn's graceful stop on SIGTERM. Read it with ``python -m pstats OUT.prof``.
"""

from __future__ import annotations

import cProfile
import pstats
import runpy
import signal
import sys
import threading


def main() -> int:
    out, flag, module, *rest = sys.argv[1:]
    if flag != "-m":
        raise SystemExit("usage: profiled.py OUT.prof -m MODULE [ARGS...]")
    profiles = [cProfile.Profile()]
    lock = threading.Lock()

    def thread_started(*_args) -> None:
        profile = cProfile.Profile()
        with lock:
            profiles.append(profile)
        profile.enable()  # replaces this hook for the rest of the thread

    threading.setprofile(thread_started)
    # uvicorn stops gracefully on SIGTERM and then raises the signal again with the handler it
    # found: this one ends the module with SystemExit instead of killing us before the dump.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    sys.argv = [module, *rest]
    profiles[0].enable()
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    except SystemExit:
        pass
    finally:
        profiles[0].disable()
        with lock:
            stats = pstats.Stats(*profiles)
        stats.dump_stats(out)
        print(f"profile of {len(profiles)} thread(s) written to {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
