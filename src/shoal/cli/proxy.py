"""``shoal proxy``: run the data plane proxy beside one workload instance."""

from __future__ import annotations

import sys

import click

from shoal.proxy.config import ConfigError, ProxyConfig

_ENV = "SHOAL_PROXY_"


def _opt(name: str, help: str, **kw):  # type: ignore[no-untyped-def]
    env = _ENV + name.lstrip("-").replace("-", "_").upper()
    return click.option(name, envvar=env, show_envvar=True, help=help, **kw)


@click.command(name="proxy")
@_opt("--inbound", "Inbound listener HOST:PORT (0 picks a port); 'off' disables it.")
@_opt("--app", "The app's own listener HOST:PORT that inbound forwards to.")
@_opt("--outbound", "Outbound listener (the app's HTTP proxy) HOST:PORT.")
@_opt("--admin", "Admin listener HOST:PORT (/metrics /ready /live /shutdown).")
@_opt("--tap", "Tap listener HOST:PORT.")
@_opt("--namespace", "Namespace of this workload.")
@_opt("--deployment", "Deployment of this workload.")
@_opt("--pod", "Pod name of this workload instance.")
@_opt("--service-account", "Service account (identity) of this workload.")
@_opt("--destination", "Static destination NAME:PORT=HOST:PORT (repeatable).", multiple=True)
@_opt("--upstream", "Local port for a destination NAME:PORT=LOCALPORT (repeatable).",
      multiple=True)
@_opt("--log-level", "debug, info, warning or error.", default="info")
@_opt("--detect-timeout", "Seconds to wait for a client's first bytes.")
@_opt("--header-timeout", "Seconds allowed to send request headers (then 408).")
@_opt("--max-header-bytes", "Largest request header section (then 431).")
@_opt("--connect-timeout", "Seconds allowed to connect upstream (then 502).")
@_opt("--idle-timeout", "Seconds an idle client connection is kept.")
@_opt("--max-connections", "Most client connections at once; more are refused.")
@_opt("--shutdown-grace", "Seconds in-flight requests get to finish on SIGTERM.")
@_opt("--tap-redact", "More header names to redact in tap (comma-separated).")
@_opt("--tap-record-bytes", "Keep recent tap events in a ring of this many bytes "
      "(for `shoal tap --since`); 0 (default) is off.")
@_opt("--tap-client-id", "The control plane's identity: the only TLS client allowed to tap "
      "(plaintext tap is accepted from loopback only).")
@_opt("--control-plane", "Control plane API URL (discovery, identity).")
@_opt("--bootstrap-token", "One-time token for this proxy's first certificate.")
@_opt("--profile", "Service profile file (YAML/JSON) for static destinations (repeatable).",
      multiple=True)
@_opt("--service", "This workload's service NAME:PORT: its profile gives inbound route metrics.")
@_opt("--mtls", "permissive (default) or strict: refuse plaintext inbound connections.")
def command(**opts: object) -> None:
    """Run the proxy. Prints one JSON line with its addresses once listening."""
    env: dict[str, str] = {}
    for key, value in opts.items():
        if value is None or value == ():
            continue
        env[key] = ",".join(value) if isinstance(value, tuple) else str(value)
    try:
        config = ProxyConfig.parse(env)
    except ConfigError as e:
        click.echo(f"shoal proxy: {e}", err=True)
        sys.exit(2)
    from shoal import logs
    from shoal.proxy.server import run

    logs.setup(config.log_level)
    try:
        code = run(config)
    except OSError as e:
        click.echo(f"shoal proxy: cannot listen: {e}", err=True)
        sys.exit(1)
    sys.exit(code)
