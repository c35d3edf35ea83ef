"""Run a GPU host's code as if Django and the console's database parts were not installed.

``python -c "import tests.support.no_django; …"`` (or ``-m tests.support.no_django MODULE ARGS``):
importing any of BLOCKED raises ModuleNotFoundError, so a host module that still needs Django
(settings, models, Channels, DRF, the database drivers, the billing app) fails loudly instead of
quietly working because the console's packages happen to be installed here too. Libraries that
only try an optional Django integration (kombu's JSON encoder) fall back as they would on a host
without it.
"""

from __future__ import annotations

import importlib.abc
import runpy
import sys

BLOCKED = (
    "django",
    "channels",
    "rest_framework",
    "drf_spectacular",
    "psycopg",
    "psycopg2",
    "billing",
    "inference.models",
    "inference.services",
    "inference.selectors",
    "fleetagent.models",
    "fleetagent.services",
    "console.settings",
    "console.celery",
)


class _Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        if any(fullname == name or fullname.startswith(name + ".") for name in BLOCKED):
            raise ModuleNotFoundError(f"{fullname} is not available on a GPU host (tests.support.no_django)")
        return None


def install() -> None:
    for name in list(sys.modules):
        if any(name == blocked or name.startswith(blocked + ".") for blocked in BLOCKED):
            raise RuntimeError(f"{name} was imported before the blocker was installed")
    sys.meta_path.insert(0, _Blocker())


def loaded() -> list[str]:
    """Modules of BLOCKED that are loaded (should be none)."""
    return sorted(n for n in sys.modules if any(n == b or n.startswith(b + ".") for b in BLOCKED))


install()

if __name__ == "__main__":
    # python -m tests.support.no_django fleetagent --console … : run that module's __main__ under the blocker.
    module, sys.argv = sys.argv[1], [sys.argv[1], *sys.argv[2:]]
    runpy.run_module(module, run_name="__main__", alter_sys=True)
