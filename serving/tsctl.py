#!/usr/bin/env python3
"""Start, stop and talk to the TorchServe that serves this bundle's archives.

serve.sh, manage.sh and predict.sh are thin wrappers around this file. Standard library
only, so it runs with any Python 3.9+.

The parts: serving/ts_config.py (config.properties, listeners, free ports),
serving/ts_client.py (``Server``: addresses, keys, authorised calls; the serve directory),
serving/ts_process.py (start, stop, status) and serving/ts_models.py (the management calls).
"""

from __future__ import annotations

import argparse
import sys
import urllib.parse
from typing import Callable

from serving.ts_client import CtlError, Server
from serving.ts_models import predict, print_answer, register, scale
from serving.ts_process import start, status, stop


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="TorchServe config (default: $TS_CONFIG or config.properties)")
    parser.add_argument("--serve-dir", help="where pid, logs and keys go (default: $SERVE_DIR or .serve)")
    parser.add_argument("--model-store", help="archive folder (default: the config's model_store)")
    sub = parser.add_subparsers(dest="command", required=True)
    _process_commands(sub)
    _model_commands(sub)
    _key_commands(sub)
    return parser


def _process_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("start", help="start TorchServe and wait until /ping answers")
    p.add_argument("--models", default="", help="comma-separated NAME.mar to register at start")
    p.add_argument("--timeout", type=float, default=120, help="seconds to wait for /ping")
    p.add_argument("--no-restore", action="store_true",
                   help="do not register again the models registered when the server was last stopped")
    sub.add_parser("stop", help="stop TorchServe (remembering the registered models)")
    sub.add_parser("status", help="say whether TorchServe runs and which models it serves")


def _model_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("register", help="register an archive from the model store")
    p.add_argument("archive", help="NAME.mar in the model store")
    p.add_argument("--workers", type=int, default=None,
                   help="workers for the version registered, over the archive's minWorkers/maxWorkers "
                        "(default: the archive's)")
    p.add_argument("--name", help="model name (default: the archive's)")
    p.add_argument("--timeout", type=int, default=120, help="response timeout in seconds")
    p = sub.add_parser("unregister", help="unregister a model (its default version, or the version given)")
    p.add_argument("name")
    p.add_argument("version", nargs="?")
    p = sub.add_parser("scale", help="set a model's worker count")
    p.add_argument("name")
    p.add_argument("workers", type=int)
    p.add_argument("--version", help="the version to scale (default: the default version)")
    p = sub.add_parser("set-default", help="make a registered version the one /predictions/NAME serves")
    p.add_argument("name")
    p.add_argument("version")
    sub.add_parser("list", help="list registered models")
    p = sub.add_parser("describe", help="describe a model and its workers")
    p.add_argument("name")
    p.add_argument("version", nargs="?", help="a version, or all (default: the default version)")
    p = sub.add_parser("predict", help="send a request body from a file or stdin")
    p.add_argument("name")
    p.add_argument("source", nargs="?", default="-", help="file with the body, or - for stdin")
    p.add_argument("--content-type", help="default: application/json for JSON, text/plain otherwise")
    p.add_argument("--version", help="a registered version (default: the model's default version)")


def _key_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("key", help="print a current key (for programs; curl reads the header file instead)")
    p.add_argument("kind", choices=["inference", "management"])
    p = sub.add_parser("address", help="print an API's address from the config (for curl)")
    p.add_argument("api", choices=["inference", "management", "metrics"])
    p = sub.add_parser("header", help="print the path of a 0600 file with a current Authorization header, "
                                      "for curl -H @FILE (keeps the key off the command line)")
    p.add_argument("kind", choices=["inference", "management"])


def _model_path(args: argparse.Namespace) -> str:
    """/models/NAME, or /models/NAME/VERSION when a version is given."""
    version = f"/{urllib.parse.quote(args.version)}" if args.version else ""
    return f"/models/{urllib.parse.quote(args.name)}{version}"


def _printed(value: object) -> int:
    print(value)
    return 0


def _header(server: Server, args: argparse.Namespace) -> int:
    server.key(args.kind)  # renews an expired key first
    server.write_headers()
    return _printed(server.header_file(args.kind))


# Each command: (server, parsed arguments) -> exit status.
COMMANDS: dict[str, Callable[[Server, argparse.Namespace], int]] = {
    "start": lambda server, args: start(server, [m for m in args.models.split(",") if m], args.timeout,
                                        not args.no_restore) or 0,
    "stop": lambda server, args: stop(server) or 0,
    "status": lambda server, args: status(server),
    "register": lambda server, args: register(server, args.archive, args.workers, args.name, args.timeout),
    "unregister": lambda server, args: print_answer(*server.call("management", "DELETE", _model_path(args))),
    "scale": lambda server, args: print_answer(*scale(server, args.name, args.workers, args.version)),
    "set-default": lambda server, args: print_answer(*server.call("management", "PUT",
                                                                  _model_path(args) + "/set-default")),
    "list": lambda server, args: print_answer(*server.call("management", "GET", "/models")),
    "describe": lambda server, args: print_answer(*server.call("management", "GET", _model_path(args))),
    "predict": lambda server, args: predict(server, args.name, args.source, args.content_type, args.version),
    "key": lambda server, args: _printed(server.key(args.kind)),
    "address": lambda server, args: _printed(server.address(args.api)),
    "header": _header,
}


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return COMMANDS[args.command](Server(args.config, args.serve_dir, args.model_store), args)
    except (CtlError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
