"""The ``fastasgi`` command and ``fastasgi.run()``, both derived from :data:`fastasgi.settings.SETTINGS`."""

from __future__ import annotations

import inspect
import logging
import os
import platform
import sys
from typing import Any, Callable

import click

from fastasgi import _speedups
from fastasgi._version import __version__
from fastasgi.config import LOGGING_CONFIG, Config
from fastasgi.errors import STARTUP_FAILURE, ConfigError
from fastasgi.loops import resolve_loop_factory
from fastasgi.protocols.websockets import resolve_ws_protocol, ws_library_name
from fastasgi.server import Server
from fastasgi.settings import RUN_ONLY, SETTINGS
from fastasgi.sockets import remove_unix_binds
from fastasgi.supervisors import run_multiprocess, run_reloader
from fastasgi.systemd import Notifier

logger = logging.getLogger("uvicorn.error")


def version_string() -> str:
    impl = _speedups.describe()
    try:
        loop = "uvloop" if resolve_loop_factory("auto").__name__.startswith("uvloop") else "asyncio"  # type: ignore[union-attr]
    except Exception:  # pragma: no cover
        loop = "asyncio"
    try:
        ws = ws_library_name(resolve_ws_protocol("auto"))
    except Exception:  # pragma: no cover
        ws = "none"
    http2 = _speedups.describe_http2()
    return (
        f"fastasgi {__version__} ({impl}; http2: {http2}; loop: {loop}; websockets: {ws}) on "
        f"{platform.python_implementation()} {platform.python_version()} {platform.system()}"
    )


def print_version(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if not value or ctx.resilient_parsing:
        return
    click.echo(version_string())
    ctx.exit()


def _add_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Decorate ``func`` with one click option per CLI setting (in declaration order)."""
    options = []
    for s in SETTINGS:
        if s.flags is None:
            continue
        default = s.default if s.cli_default == "same" else s.cli_default
        if s.multiple:
            default = None
        kwargs: dict[str, Any] = {"help": s.help, "default": default, "show_default": s.show_default and not s.is_flag}
        if s.envvar:
            kwargs["envvar"] = s.envvar
        if s.is_flag:
            kwargs["is_flag"] = True
        else:
            kwargs["type"] = s.type
        if s.multiple:
            kwargs["multiple"] = True
        options.append(click.option(*s.flags, s.name, **kwargs))
    options.append(
        click.option(
            "--version",
            is_flag=True,
            callback=print_version,
            expose_value=False,
            is_eager=True,
            help="Display the fastasgi version (and which implementation runs) and exit.",
        )
    )
    options.append(
        click.option(
            "--app-dir",
            "app_dir",
            default="",
            show_default=True,
            help="Look for APP in the specified directory, by adding this to the PYTHONPATH. Defaults to the current "
            "working directory.",
        )
    )
    for option in reversed(options):
        func = option(func)
    return func


@click.command(context_settings={"auto_envvar_prefix": None})
@click.argument("app", envvar="FASTASGI_APP")
@_add_options
def main(app: str, **kwargs: Any) -> None:
    """Run the ASGI application APP ("module:attribute") with fastasgi."""
    headers = []
    for header in kwargs.pop("headers") or ():
        if ":" not in header:
            raise click.BadParameter(f"{header!r} is not in Name:Value form", param_hint="'--header'")
        name, value = header.split(":", 1)
        headers.append((name.strip(), value.strip()))
    kwargs["headers"] = headers
    for name in ("reload_dirs", "reload_includes", "reload_excludes", "bind"):
        kwargs[name] = list(kwargs[name]) if kwargs[name] else None
    if kwargs["log_config"] is None:
        kwargs["log_config"] = LOGGING_CONFIG
    run(app, **kwargs)


def run(app: Any, **kwargs: Any) -> None:
    """Run ``app`` (an ASGI app or a ``"module:attribute"`` string); keywords are ``Config``'s plus ``app_dir``."""
    app_dir = kwargs.pop("app_dir", "")
    if app_dir is not None:
        sys.path.insert(0, app_dir)
    try:
        config = Config(app, **kwargs)
    except ConfigError as exc:
        _startup_error(str(exc))
    except TypeError as exc:
        raise TypeError(str(exc).replace("Config()", "run()")) from None

    if config.reload or config.workers > 1:
        if not isinstance(app, str):
            logger.warning("You must pass the application as an import string to enable 'reload' or 'workers'.")
            sys.exit(STARTUP_FAILURE)
    elif config.recycles_workers:
        if not isinstance(app, str):
            logger.warning(
                "You must pass the application as an import string to enable --limit-max-rss or "
                "--limit-max-lifetime (they replace worker processes)."
            )
            sys.exit(STARTUP_FAILURE)
    else:
        try:
            config.load_app()
        except ConfigError as exc:
            _startup_error(str(exc))

    server = Server(config=config)
    try:
        if config.should_reload:
            run_reloader(config, server)
        elif config.workers > 1 or config.recycles_workers:
            run_multiprocess(config)
            return
        else:
            # systemd (Type=notify): READY=1 once started, STOPPING=1, WATCHDOG=1 (the
            # --workers supervisor does the same itself); nothing without NOTIFY_SOCKET
            server.notifier = Notifier.from_environ()
            try:
                server.run()
            except ConfigError as exc:
                _startup_error(str(exc))
    except KeyboardInterrupt:  # pragma: no cover
        pass
    except ImportError as exc:
        _startup_error(f"{exc}")
    finally:
        if config.uds and os.path.exists(config.uds):
            os.remove(config.uds)
        remove_unix_binds(config)

    if not server.started and not config.should_reload and config.workers == 1:
        sys.exit(STARTUP_FAILURE)


def _startup_error(message: str) -> None:
    if not logging.getLogger("uvicorn.error").handlers and not logging.getLogger("uvicorn").handlers:
        click.echo(f"ERROR:    {message}", err=True)
    else:
        logger.error("%s", message)
    sys.exit(STARTUP_FAILURE)


def _run_signature() -> inspect.Signature:
    params = [inspect.Parameter("app", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    config_params = Config.__init__.__signature__.parameters  # type: ignore[attr-defined]
    params += [
        inspect.Parameter(s.name, inspect.Parameter.KEYWORD_ONLY, default=config_params[s.name].default)
        for s in SETTINGS
    ]
    params += [inspect.Parameter(s.name, inspect.Parameter.KEYWORD_ONLY, default=s.default) for s in RUN_ONLY]
    return inspect.Signature(params)


run.__signature__ = _run_signature()  # type: ignore[attr-defined]
