"""A small HTTP/JSON service for the demo: fast, sometimes slow, sometimes failing.

Run it as ``python -m shoal.demo.backend --port N``; it never learns about the mesh.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random


async def app(scope, receive, send):  # type: ignore[no-untyped-def]
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    path = scope["path"]
    status, body = 200, {"ok": True, "path": path}
    if path == "/api/slow":
        await asyncio.sleep(random.choice((0.005, 0.01, 0.02, 0.3)))
    elif path == "/api/flaky" and random.random() < 0.2:
        status, body = 500, {"ok": False, "error": "flaky backend"}
    else:
        await asyncio.sleep(random.uniform(0.0005, 0.004))
    data = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(data)).encode())]})
    await send({"type": "http.response.body", "body": data})


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", lifespan="off")


if __name__ == "__main__":
    main()
