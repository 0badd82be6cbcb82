"""Sessions move to Redis (registry.store): the table goes, an unmanaged model stays for the admin, and ended
sessions are kept in SessionRecord. Rows of the old table are not copied: live sessions register again on the next
login (a session lives REGISTRY_SESSION_TTL at most)."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("registry", "0001_initial"),
    ]

    operations = [
        migrations.DeleteModel(name="Session"),
        migrations.CreateModel(
            name="Session",
            fields=[
                ("key", models.CharField(max_length=300, primary_key=True, serialize=False)),
                ("session_id", models.CharField(max_length=128)),
                ("user_id", models.CharField(max_length=128)),
                ("backend_route", models.CharField(blank=True, max_length=512, null=True)),
                ("authorized_companies", models.JSONField(blank=True, null=True)),
                ("created_at", models.DateTimeField()),
                ("last_heartbeat_at", models.DateTimeField()),
                ("expires_at", models.DateTimeField()),
            ],
            options={
                "verbose_name": "live session",
                "managed": False,
                "default_permissions": ("view", "change"),
            },
        ),
        migrations.CreateModel(
            name="SessionRecord",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("session_id", models.CharField(max_length=128)),
                ("user_id", models.CharField(max_length=128)),
                ("backend_route", models.CharField(blank=True, max_length=512, null=True)),
                ("authorized_companies", models.JSONField(blank=True, null=True)),
                ("status", models.CharField(choices=[("expired", "expired"), ("closed", "closed")], max_length=8)),
                ("created_at", models.DateTimeField()),
                ("last_heartbeat_at", models.DateTimeField()),
                ("ended_at", models.DateTimeField(db_index=True)),
            ],
            options={
                "verbose_name": "ended session",
                "ordering": ["-ended_at"],
                "indexes": [models.Index(fields=["user_id", "ended_at"], name="registry_rec_user_ended")],
                "constraints": [
                    models.UniqueConstraint(
                        fields=("user_id", "session_id", "created_at"), name="registry_rec_unique"
                    )
                ],
            },
        ),
    ]
