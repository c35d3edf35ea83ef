from django.db import migrations, models


def drained_from_state(apps, schema_editor):
    # Nodes draining today were drained by ops: that becomes their desired state.
    Node = apps.get_model("fleetagent", "Node")
    Node.objects.filter(state="draining").update(drained=True)


class Migration(migrations.Migration):
    dependencies = [("fleetagent", "0002_fleet_samples_actions")]

    operations = [
        migrations.AddField(
            model_name="node",
            name="drained",
            field=models.BooleanField(default=False, help_text="Ops drained it: it takes no jobs until resumed."),
        ),
        migrations.AddField(
            model_name="node",
            name="protocol_version",
            field=models.PositiveSmallIntegerField(default=0, help_text="Agent protocol of its last hello."),
        ),
        migrations.AddField(
            model_name="node",
            name="gpus",
            field=models.JSONField(
                blank=True, default=list, help_text="GPUs from the agent's hello: index, name, UUID."
            ),
        ),
        migrations.AddField(model_name="node", name="frames_refused", field=models.PositiveBigIntegerField(default=0)),
        migrations.AddField(model_name="node", name="last_refusal", field=models.CharField(blank=True, max_length=500)),
        migrations.AddField(
            model_name="node", name="last_refusal_at", field=models.DateTimeField(blank=True, null=True)
        ),
        migrations.AddField(
            model_name="gpusample",
            name="last_xid",
            field=models.IntegerField(blank=True, null=True, help_text="Newest XID code (dcgm's XID meaning)."),
        ),
        migrations.RunPython(drained_from_state, migrations.RunPython.noop),
    ]
