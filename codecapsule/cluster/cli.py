"""The ``codecapsule cluster ...`` and ``codecapsule doctor`` commands (argparse).

The main console script (``codecapsule/cli.py``) calls :func:`add_cluster_commands` and
:func:`add_doctor_command`
on its sub-parsers; every command stores a handler ``func(args) -> int`` in ``args.func``. A
:class:`~codecapsule.CodeCapsuleError` (missing credentials, a refused cloud call, a bad value...) becomes one
line on stderr and exit status 2, never a traceback.

This module also runs on its own, with only these commands: ``python -m codecapsule.cluster.cli cluster
plan``.
"""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from .._errors import CodeCapsuleError

if TYPE_CHECKING:
    from .cluster import Cluster
    from .tunnel import ServiceTokenInfo

__all__ = ["add_cluster_commands", "add_doctor_command", "main"]

Handler = Callable[[argparse.Namespace], int]

_ENV_HELP = (
    "Needs CODECAPSULE_DOMAIN, AZURE_SUBSCRIPTION_ID, CLOUDFLARE_ACCOUNT_ID, CLOUDFLARE_API_TOKEN and an "
    "Azure "
    "sign-in (az login, AZURE_CLIENT_ID/AZURE_CLIENT_SECRET/AZURE_TENANT_ID, a managed identity, or "
    "CODECAPSULE_AZURE_ACCESS_TOKEN). See docs/admin.md."
)


def _guarded(handler: Handler) -> Handler:
    """Turn our errors into one line on stderr and exit status 2."""

    @functools.wraps(handler)
    def run(args: argparse.Namespace) -> int:
        from .._sdk_logs import quiet_sdk_logs

        try:
            with quiet_sdk_logs():  # the SDKs' credential chatter: our one line below says what to do
                return handler(args)
        except CodeCapsuleError as exc:
            message = " ".join(str(exc).split())
            print(f"codecapsule: error: {message}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print("codecapsule: interrupted (re-run the command: every step is idempotent).", file=sys.stderr)
            return 130

    return run


def _cluster() -> Cluster:
    from .cluster import Cluster

    return Cluster.from_env()


# -- handlers ------------------------------------------------------------------------------------------------


def _plan(args: argparse.Namespace) -> int:
    print(_cluster().plan())
    return 0


def _deploy(args: argparse.Namespace) -> int:
    plan = _cluster().deploy(progress=not args.quiet)
    if args.quiet:
        print(plan)
    return 0


def _status(args: argparse.Namespace) -> int:
    cluster = _cluster()
    print(cluster.status())
    token = cluster.service_token()
    if token is not None:  # the id is not a secret; the secret stays in the local secrets store
        print(f"Access service token: client id {token.client_id} (secret kept in the local secrets store)")
    return 0


def _scale(args: argparse.Namespace) -> int:
    _cluster().scale(args.capacity)
    print(f"Capacity set to {args.capacity}.")
    return 0


def _autoscale(args: argparse.Namespace) -> int:
    state = _cluster().autoscale(
        minimum=args.minimum,
        maximum=args.maximum,
        scale_out_cpu=args.scale_out,
        scale_in_cpu=args.scale_in,
        enabled=args.enabled,
    )
    print(
        f"Autoscale {'on' if state.enabled else 'off'}: {state.minimum}..{state.maximum} VMs, out above "
        f"{state.scale_out_cpu:g}% CPU, in below {state.scale_in_cpu:g}%."
    )
    return 0


def _install(args: argparse.Namespace) -> int:
    outcomes = _cluster().install_runtime(args.language, args.version)
    for instance_id, outcome in outcomes.items():
        print(f"instance {instance_id}: {outcome}")
    print(f"New VMs will install {args.language} {args.version} at boot.")
    return 1 if any(o.startswith("failed") for o in outcomes.values()) else 0


def _reimage(args: argparse.Namespace) -> int:
    _cluster().reimage(args.instance or None)
    print("Reimaged " + (f"instances {', '.join(args.instance)}." if args.instance else "every instance."))
    return 0


def _logs(args: argparse.Namespace) -> int:
    print(_cluster().logs(instance=args.instance, source=args.source, lines=args.lines))
    return 0


def _cost(args: argparse.Namespace) -> int:
    from .costs import estimate_cost
    from .spec import ClusterSpec

    # A cost estimate needs no credentials: the identifiers it does not use get placeholders.
    overrides: dict[str, Any] = {}
    if args.size:
        overrides["vm_size"] = args.size
    if args.location:
        overrides["location"] = args.location
    spec = ClusterSpec.preview(**overrides)
    prices = {spec.vm_size: args.price} if args.price is not None else None
    print(estimate_cost(spec, capacity=args.capacity, minimum=args.minimum, maximum=args.maximum, prices=prices))
    return 0


def _schedule(args: argparse.Namespace) -> int:
    from .schedule import schedule_view
    from .spec import ClusterSpec

    spec = ClusterSpec.preview()
    view = schedule_view(spec)
    print(view)
    for p in view.profiles:
        print(f"  {p['day']:<9} {p['time']}  {p['minimum']}..{p['maximum']} VMs  ({p['name']})")
    return 0


def _wake(args: argparse.Namespace) -> int:
    state = _cluster().wake(args.hours)
    if state.wake_until is not None:
        print(f"Awake until {state.wake_until:%Y-%m-%d %H:%M} UTC.")
    return 0


def _token(args: argparse.Namespace) -> int:
    cluster = _cluster()
    actions: dict[str, Callable[[], ServiceTokenInfo | None]] = {
        "status": cluster.access_token_status,
        "refresh": lambda: cluster.refresh_access_token(progress=True),
        "rotate": lambda: cluster.rotate_access_token(progress=True),
    }
    info = actions[args.token_command]()
    if info is None:
        print("No Access service token: deploy the cluster first.")
        return 1
    saved = "secret saved on this computer" if info.saved_here else "secret NOT saved on this computer"
    print(
        f"Access service token {info.name}: client id {info.client_id}, duration {info.duration}, "
        f"{info.expiry_text()} ({saved})."
    )
    return 1 if info.expiring() else 0


def _teardown(args: argparse.Namespace) -> int:
    _cluster().teardown(confirm=args.confirm)
    return 0


LOCAL_ONLY = (
    "local engine only: no Piston endpoint (CODECAPSULE_PISTON_URL) and no cluster (CODECAPSULE_DOMAIN, "
    "AZURE_SUBSCRIPTION_ID, CLOUDFLARE_*) are configured, so code runs in the sandbox on this machine and there "
    "is nothing remote to check. `codecapsule engine` shows the local toolchains and how well they are isolated."
)


def _configured_piston_url() -> str | None:
    from .._settings import Settings

    return Settings.from_env().piston_url


def _doctor(args: argparse.Namespace) -> int:
    from .._errors import ConfigurationError
    from .doctor import format_checks, run_doctor

    cluster = None
    reason = "admin checks need the cluster's credentials"
    if not args.client_only:
        try:
            cluster = _cluster()
        except ConfigurationError as exc:  # a student's machine: only the client-side checks apply
            reason = f"admin check skipped ({' '.join(str(exc).split())})"
    if cluster is None and not (args.url or _configured_piston_url()):
        print(LOCAL_ONLY)  # nothing remote to check: not a failure
        return 0
    checks = run_doctor(cluster, piston_url=args.url, admin_skip_reason=reason, timeout=args.timeout)
    print(format_checks(checks))
    return 1 if any(c.ok is False for c in checks) else 0


# -- parsers -------------------------------------------------------------------------------------------------


def _positive(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be ≥ 0")
    return value


def add_cluster_commands(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``cluster`` and its sub-commands to an argparse sub-parsers object; returns that parser."""
    cluster: argparse.ArgumentParser = subparsers.add_parser(
        "cluster",
        help="deploy, operate and tear down the Piston cluster (Azure + Cloudflare Tunnel)",
        description="Deploy, operate and tear down the Piston cluster. " + _ENV_HELP,
    )
    sub = cluster.add_subparsers(dest="cluster_command", metavar="COMMAND", required=True)

    def command(name: str, handler: Handler, help: str) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = sub.add_parser(name, help=help, description=help[0].upper() + help[1:] + ".")
        parser.set_defaults(func=_guarded(handler))
        return parser

    command("plan", _plan, "show what deploy would create or change, without changing anything")
    p = command("deploy", _deploy, "create or update the tunnel, network and VM scale set (idempotent)")
    p.add_argument("--quiet", "-q", action="store_true", help="print only the plan at the end")
    command("status", _status, "show instances, tunnel connectors, autoscale and Piston health")
    p = command("scale", _scale, "set the number of VMs now")
    p.add_argument("capacity", type=_positive, metavar="N")
    p = command("autoscale", _autoscale, "change the CPU autoscale rule (unset options keep their value)")
    p.add_argument("--min", dest="minimum", type=_positive, metavar="N", help="fewest VMs")
    p.add_argument("--max", dest="maximum", type=_positive, metavar="N", help="most VMs")
    p.add_argument("--out", dest="scale_out", type=float, metavar="CPU%", help="add a VM above this average CPU")
    p.add_argument("--in", dest="scale_in", type=float, metavar="CPU%", help="remove a VM below this average CPU")
    switch = p.add_mutually_exclusive_group()
    switch.add_argument("--enable", dest="enabled", action="store_const", const=True, help="turn autoscale on")
    switch.add_argument("--disable", dest="enabled", action="store_const", const=False, help="turn it off")
    p = command("install", _install, "install a Piston runtime on every VM and in the cloud-init of new ones")
    p.add_argument("language", metavar="LANG", help="Piston package name, e.g. python, node, gcc, java, rust")
    p.add_argument("version", metavar="VERSION", help="exact package version, e.g. 3.12.0")
    p = command("reimage", _reimage, "rebuild VMs from the current model (cloud-init runs again)")
    p.add_argument("--instance", action="append", metavar="ID", help="only this instance (repeatable)")
    p = command("logs", _logs, "print a log from one VM (through Azure run command)")
    p.add_argument("--instance", default="0", metavar="ID", help="instance id (default 0)")
    p.add_argument("--source", default="piston", choices=["piston", "cloudflared", "cloud-init", "health", "runtimes"])
    p.add_argument("--lines", "-n", type=int, default=200, metavar="N", help="how many lines (default 200)")
    p = command("cost", _cost, "estimate the monthly cost at minimum and maximum capacity (no cloud call)")
    p.add_argument("--capacity", type=_positive, metavar="N", help="a fixed number of VMs")
    p.add_argument("--min", dest="minimum", type=_positive, metavar="N")
    p.add_argument("--max", dest="maximum", type=_positive, metavar="N")
    p.add_argument("--size", metavar="VM_SIZE", help="VM size (default: the spec's, Standard_B2s)")
    p.add_argument("--location", metavar="REGION", help="Azure region (default: the spec's)")
    p.add_argument("--price", type=float, metavar="USD_PER_HOUR", help="your own VM price per hour")
    command("schedule", _schedule, "show the lab hours, the next change and the autoscale profiles (no cloud call)")
    p = command("wake", _wake, "keep the VMs up for a session outside lab hours")
    p.add_argument("--hours", type=float, default=2.0, metavar="H", help="how long (default 2)")
    p = command("token", _token, "show, refresh or rotate the Cloudflare Access service token (never its secret)")
    p.add_argument("token_command", choices=["status", "refresh", "rotate"], metavar="status|refresh|rotate")
    p = command("teardown", _teardown, "delete every VM, the network and the tunnel")
    p.add_argument(
        "--confirm",
        required=True,
        metavar="RESOURCE_GROUP",
        help="the resource group's name, to confirm the deletion",
    )
    return cluster


def add_doctor_command(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``doctor`` to an ``argparse`` sub-parsers object; returns its parser."""
    doctor: argparse.ArgumentParser = subparsers.add_parser(
        "doctor",
        help="check the path to Piston step by step and say how to fix what fails",
        description="Walk the troubleshooting table: endpoint configured, DNS, tunnel connectors, Piston "
        "answering "
        "through the tunnel, runtimes installed, instances healthy. Client checks need only "
        "CODECAPSULE_PISTON_URL (and the Access token variables); admin checks run when the cluster's "
        "credentials are set.",
    )
    doctor.add_argument("--url", help="the Piston address to check (default: CODECAPSULE_PISTON_URL)")
    doctor.add_argument("--client-only", action="store_true", help="skip the admin (Azure/Cloudflare) checks")
    doctor.add_argument("--timeout", type=float, default=10.0, help="seconds per request (default 10)")
    doctor.set_defaults(func=_guarded(_doctor))
    return doctor


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``cluster ...`` or ``doctor`` on their own (the full CLI is ``codecapsule``)."""
    parser = argparse.ArgumentParser(prog="codecapsule")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    add_cluster_commands(subparsers)
    add_doctor_command(subparsers)
    args = parser.parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
