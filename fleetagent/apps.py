from django.apps import AppConfig


class FleetagentConfig(AppConfig):
    name = "fleetagent"
    verbose_name = "Fleet"
