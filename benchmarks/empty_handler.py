"""A handler with no model, kept only as the benchmark's floor.

benchmarks/bench.py archives it with the main server layout (batchSize, maxBatchDelay,
workers) and loads it like the real handler: what it measures is what TorchServe itself
costs a request (the frontend, the batch delay, the worker protocol) and what the real
handler's latency has to be read against. Each request's JSON body is parsed and a small
answer returned. Not for production use.
"""

from __future__ import annotations

import json

from handlers.parsing import request_body  # the archive carries the handlers package


class EmptyHandler:
    def initialize(self, context) -> None:
        self.initialized = True

    def handle(self, data, context):
        answers = []
        for request in data:
            body = request_body(request)
            fields = json.loads(body) if isinstance(body, (bytes, bytearray, str)) else body
            answers.append(json.dumps({"path": [], "path_score": 0.0, "fields": sorted(fields or {})}))
        return answers
