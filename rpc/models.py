from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models


class ApiClient(models.Model):
    """A caller of /rpc created by staff. Only a SHA-256 of its token is kept; the token is shown once."""

    ALL_NAMESPACES = "*"

    name = models.CharField(max_length=100, unique=True)
    token_prefix = models.CharField(max_length=16, unique=True, editable=False)
    token_hash = models.CharField(max_length=64, editable=False)
    namespaces = models.JSONField(default=list, help_text='Namespaces it may call, e.g. ["REGISTRY"], or ["*"].')
    bound_users = models.JSONField(
        default=list, blank=True,
        help_text='The only user ids it may act for (the envelope\'s user_id), e.g. ["uid-1"]; empty: any user.',
    )
    bound_companies = models.JSONField(
        default=list, blank=True,
        help_text='It may act only for users of these companies (spaces, README "Security"); empty: any company.',
    )
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["name"]
        verbose_name = "API client"

    def __str__(self) -> str:
        return self.name

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None

    def clean(self) -> None:
        from .registry import namespaces as registered_namespaces

        if not isinstance(self.namespaces, list) or not all(isinstance(n, str) for n in self.namespaces):
            raise ValidationError({"namespaces": "a list of namespace names"})
        unknown = sorted(set(self.namespaces) - {self.ALL_NAMESPACES, *registered_namespaces()})
        if unknown:
            raise ValidationError({"namespaces": f"unknown namespace(s): {', '.join(unknown)}"})
        for field in ("bound_users", "bound_companies"):
            value = getattr(self, field)
            if not isinstance(value, list) or not all(isinstance(item, str) and item for item in value):
                raise ValidationError({field: "a list of ids"})

    def allows(self, namespace: str) -> bool:
        return self.ALL_NAMESPACES in self.namespaces or namespace in self.namespaces

    def may_act_for(self, user_id: str | None) -> bool:
        """A client bound to users always names one of them (fail closed: no user_id is outside the binding)."""
        if self.bound_companies and not user_id:
            return False
        return not self.bound_users or user_id in self.bound_users
