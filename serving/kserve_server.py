"""Serve a trained run with KServe's Python model server: no JVM, the cascade in process.

  python -m serving.kserve_server --model-dir RUN_OR_MAR_OR_LAYOUT --name NAME [--host 127.0.0.1]
         [--http-port 8085] [--grpc-port 0]

Routes (NAME is the model's name):
  POST /predictions/NAME                TorchServe's: the same bodies, answers, statuses and messages
  GET  /ping                            TorchServe's health check
  GET  /v1/models/NAME, POST /v1/models/NAME:predict    KServe v1: {"instances": [event, ...]}
  GET  /v2/health/live, /v2/health/ready, /v2, /v2/models/NAME, /v2/models/NAME/ready,
  POST /v2/models/NAME/infer            Open Inference Protocol v2 (tensors: serving/oip_tensors.py)
  GET  /metrics                         Prometheus, with the batcher's batches and requests
gRPC v2 (KServe's servicer) with --grpc-port N, on --host as HTTP.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from serving.kservectl import HTTP_PORT
from serving.model_source import SourceError, open_source

if TYPE_CHECKING:  # kserve is imported when the server starts, so that its arguments parse anywhere
    from serving.kserve_model import EventModel

logger = logging.getLogger("serving.kserve_server")
MAX_REQUEST_BYTES = 1_048_576  # config.properties' max_request_size


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    p.add_argument("--model-dir", required=True, help="a run directory, a built .mar, or KServe's storage layout")
    p.add_argument("--name", required=True, help="the model's name in every route")
    p.add_argument("--host", default="127.0.0.1", help="HTTP address (default: loopback only)")
    p.add_argument("--http-port", type=int, default=HTTP_PORT)
    p.add_argument("--grpc-port", type=int, default=0, help="gRPC v2 port on --host; 0: off (default)")
    p.add_argument("--max-request-bytes", type=int, default=MAX_REQUEST_BYTES)
    p.add_argument("--max-waiting", type=int, default=256, help="requests queued for the model before 503")
    p.add_argument("--batch-size", type=int, help="requests per model batch (default: the archive's, else 32)")
    p.add_argument("--max-batch-delay", type=int, help="ms to fill a batch (default: the archive's, else 5)")
    return p.parse_args(argv)


async def serve(model: EventModel, args: argparse.Namespace) -> None:
    from kserve import ModelServer
    from kserve.constants.constants import FASTAPI_APP_IMPORT_STRING
    from kserve.model_server import app
    from kserve.protocol.grpc.server import GRPCServer
    from kserve.protocol.rest.server import RESTServer

    from serving.kserve_routes import add_routes

    server = ModelServer(http_port=args.http_port, grpc_port=args.grpc_port or 8081, enable_grpc=args.grpc_port > 0,
                         workers=1, enable_latency_logging=False)
    server.register_model(model)
    logging.getLogger("kserve.trace").setLevel(logging.WARNING)  # two timing lines per request otherwise
    add_routes(app, model, args.max_request_bytes)
    rest = RESTServer(FASTAPI_APP_IMPORT_STRING, server.dataplane, server.model_repository_extension,
                      args.http_port, workers=1, grace_period=10)
    rest.config.host = args.host  # KServe binds 0.0.0.0; on one machine, loopback unless told otherwise
    grpc = None
    if args.grpc_port:
        _grpc_on_host(args.host)
        grpc = GRPCServer(args.grpc_port, server.dataplane, server.model_repository_extension,
                          kwargs={"grpc_max_send_message_length": 8 << 20,
                                  "grpc_max_receive_message_length": args.max_request_bytes}, grace_period=10)
        grpc_task = asyncio.ensure_future(grpc.start(4))
    await rest.start()  # until SIGTERM or SIGINT (uvicorn's own handlers)
    if grpc is not None:
        await grpc.stop()
        grpc_task.cancel()
    model.stop()


def _grpc_on_host(host: str) -> None:
    """KServe's gRPC server listens on [::] (every interface); make it listen on ``host``, as HTTP does."""
    from kserve.protocol.grpc import server as grpc_server

    aio = grpc_server.aio  # grpc.aio, as KServe's gRPC server module holds it

    class OnHost:
        @staticmethod
        def server(*args, **kwargs):
            made = aio.server(*args, **kwargs)
            add = made.add_insecure_port
            made.add_insecure_port = lambda address: add(address.replace("[::]", host, 1))
            return made

    grpc_server.aio = OnHost


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    overrides = {key: value for key, value in (("batch_size", args.batch_size),
                                               ("max_batch_delay_ms", args.max_batch_delay)) if value is not None}
    try:
        from serving.kserve_model import EventModel

        with open_source(Path(args.model_dir)) as source:
            source = dataclasses.replace(source, **overrides)
            model = EventModel(args.name, source, gpu_id=0 if _cuda() else None, max_waiting=args.max_waiting)
            model.load()
            logger.warning("serving %s (%s) as %s on http://%s:%d, batches of %d within %d ms", args.model_dir,
                           source.origin, args.name, args.host, args.http_port, source.batch_size,
                           source.max_batch_delay_ms)
            asyncio.run(serve(model, args))
    except SourceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


if __name__ == "__main__":
    sys.exit(main())
