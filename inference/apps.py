from django.apps import AppConfig


class InferenceConfig(AppConfig):
    name = "inference"
    verbose_name = "Synthesis"

    def ready(self) -> None:
        # The fleet registry cannot import the jobs app: it signals, the jobs app answers.
        from fleetagent.signals import node_lost, node_work_query
        from inference.receivers import node_lost_requeue_jobs, node_work_report

        node_lost.connect(node_lost_requeue_jobs, dispatch_uid="inference.node_lost_requeue_jobs")
        node_work_query.connect(node_work_report, dispatch_uid="inference.node_work_report")
