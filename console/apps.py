from django.apps import AppConfig


class ConsoleConfig(AppConfig):
    name = "console"
    verbose_name = "Voxfleet console"

    def ready(self) -> None:
        # Every Django process (uvicorn, manage.py, a worker) sends tasks through this app.
        import console.celery  # noqa: F401

        # The fleet registry cannot import the console: it signals, the console listens.
        from console.consumers.broadcast import nodes_changed_receiver
        from fleetagent.signals import nodes_changed

        nodes_changed.connect(nodes_changed_receiver, dispatch_uid="console.nodes_changed_broadcast")
