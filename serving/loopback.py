"""HTTP to this machine's own servers, never through a proxy.

urllib's default opener honours http_proxy/https_proxy/ALL_PROXY, and CPython sends
127.0.0.1 through the proxy unless no_proxy names it: a request to the local management
API would hand its key to whatever listens there. Every client here that carries a key
opens its requests with this opener. Standard library only.
"""

from __future__ import annotations

import urllib.request
from http.client import HTTPResponse

# An empty ProxyHandler: no proxy for any scheme, whatever the environment says.
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def urlopen(request: urllib.request.Request | str, timeout: float) -> HTTPResponse:
    """urllib.request.urlopen without proxies (raises the same HTTPError and URLError)."""
    return OPENER.open(request, timeout=timeout)
