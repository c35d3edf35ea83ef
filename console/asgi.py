"""ASGI entry point: HTTP (Django), websockets (Channels) and, on the embedded default,
the in-process services started through the ASGI lifespan protocol."""

import gc
import os
import threading

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "console.settings")
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402 - Django must be set up first

from console.embedded import embedded_start, embedded_stop  # noqa: E402
from console.lifecycle import stop_signals_chain  # noqa: E402
from console.routing import websocket_urlpatterns  # noqa: E402
from console.uploads import body_cap_asgi  # noqa: E402

router = ProtocolTypeRouter(
    {
        "http": body_cap_asgi(django_asgi_app),
        # Sessions and users are resolved per route (console.routing): only dashboards have one.
        "websocket": URLRouter(websocket_urlpatterns),
    }
)


# The garbage collector, tuned for a long-running server: a fleet of 5,000 GPUs sends 625
# frames a second, each a few hundred short-lived dicts and lists, and with the default
# threshold (700) the collector ran about 40 times a second and every full collection walked
# Django's whole heap again (pauses of 0.3-0.7 s on a loaded machine, every dashboard's batch
# held up behind them). What exists once the app is loaded stays for the process's life:
# frozen, later collections never walk it; short-lived objects mostly die before a collection.
# Done when a server starts (lifespan, its loop in the main thread), not on import: a process
# that only imports the app or runs a server in a thread of its own (the test suite) keeps the
# interpreter's defaults.
GC_THRESHOLD = (20_000, 10, 10)


def gc_tune() -> bool:
    if threading.current_thread() is not threading.main_thread():
        return False
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLD)
    return True


async def _lifespan(receive, send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            # The server's SIGTERM/SIGINT handlers are in place by now: waiting requests hear first.
            stop_signals_chain()
            gc_tune()
            try:
                await embedded_start()
            except Exception as exc:  # noqa: BLE001 - report to the server, which then exits
                await send({"type": "lifespan.startup.failed", "message": f"{type(exc).__name__}: {exc}"})
                return
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await embedded_stop()
            await send({"type": "lifespan.shutdown.complete"})
            return


async def application(scope, receive, send):
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
        return
    await router(scope, receive, send)
