"""web: the demo's front end, HTTP/1.1 + JSON, calling emoji and voting over gRPC.

    GET  /                         a tiny page to vote from a browser
    GET  /api/list                 every emoji            (emoji.ListAll)
    POST /api/vote?choice=:joy:    one vote               (emoji.FindByShortcode, voting.Vote)
    GET  /api/results              the tally, best first  (voting.Results, emoji.ListAll)

gRPC calls go to ``emoji.shoalvoto:8080`` and ``voting.shoalvoto:8080`` by name;
grpcio tunnels them through ``$http_proxy`` with CONNECT, so the proxy resolves the
names. Run it as ``python -m shoal.demo.web`` (listens on ``$PORT``).
"""

from __future__ import annotations

import json
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

EMOJI_ADDR = os.environ.get("EMOJI_ADDR", "emoji.shoalvoto:8080")
VOTING_ADDR = os.environ.get("VOTING_ADDR", "voting.shoalvoto:8080")
TIMEOUT = 5.0

PAGE = b"""<!doctype html>
<meta charset="utf-8"><title>shoalvoto</title>
<h1>Vote for your favourite emoji</h1>
<div id="emoji"></div><h2>Results</h2><ol id="results"></ol>
<script>
async function refresh() {
  const r = await (await fetch('/api/results')).json();
  document.getElementById('results').innerHTML =
    r.map(e => `<li>${e.unicode} ${e.votes}</li>`).join('');
}
async function vote(code) {
  await fetch('/api/vote?choice=' + encodeURIComponent(code), {method: 'POST'});
  refresh();
}
fetch('/api/list').then(r => r.json()).then(list => {
  document.getElementById('emoji').innerHTML = list.map(e =>
    `<button style="font-size:2em" onclick="vote('${e.shortcode}')">${e.unicode}</button>`
  ).join('');
  refresh();
});
</script>
"""


def make_handler(emoji_pb2, emoji_stub, voting_pb2, voting_stub):  # type: ignore[no-untyped-def]
    import grpc

    def catalogue() -> list[dict[str, str]]:
        got = emoji_stub.ListAll(emoji_pb2.ListAllRequest(), timeout=TIMEOUT)
        return [{"shortcode": e.shortcode, "unicode": e.unicode} for e in got.list]

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def send(self, status: int, body: object, ctype: str = "application/json") -> None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            self.send_response(status)
            self.send_header("content-type", ctype)
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def route(self, method: str) -> None:
            length = int(self.headers.get("content-length") or 0)
            if length:
                self.rfile.read(length)
            url = urlsplit(self.path)
            try:
                if method == "GET" and url.path == "/":
                    self.send(200, PAGE, "text/html; charset=utf-8")
                elif method == "GET" and url.path == "/api/list":
                    self.send(200, catalogue())
                elif method == "POST" and url.path == "/api/vote":
                    self.vote(parse_qs(url.query).get("choice", [""])[0])
                elif method == "GET" and url.path == "/api/results":
                    tally = voting_stub.Results(voting_pb2.ResultsRequest(), timeout=TIMEOUT)
                    votes = {r.shortcode: r.votes for r in tally.results}
                    rows = [{**e, "votes": votes.get(e["shortcode"], 0)} for e in catalogue()]
                    self.send(200, sorted(rows, key=lambda r: -r["votes"]))
                else:
                    self.send(404, {"error": f"no route for {method} {url.path}"})
            except grpc.RpcError as e:
                self.send(500, {"error": f"{e.code().name}: {e.details()}"})

        def vote(self, choice: str) -> None:
            found = emoji_stub.FindByShortcode(
                emoji_pb2.FindByShortcodeRequest(shortcode=choice), timeout=TIMEOUT)
            if not found.HasField("emoji"):
                self.send(404, {"error": f"no emoji {choice!r}"})
                return
            voting_stub.Vote(voting_pb2.VoteRequest(shortcode=choice), timeout=TIMEOUT)
            self.send(200, {"voted": choice})

        def do_GET(self) -> None:  # noqa: N802
            self.route("GET")

        def do_POST(self) -> None:  # noqa: N802
            self.route("POST")

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass

    return Handler


def serve(port: int) -> None:
    import grpc

    from shoal.demo.protos import load

    emoji_pb2, emoji_grpc = load("emoji")
    voting_pb2, voting_grpc = load("voting")
    emoji_stub = emoji_grpc.EmojiServiceStub(grpc.insecure_channel(EMOJI_ADDR))
    voting_stub = voting_grpc.VotingServiceStub(grpc.insecure_channel(VOTING_ADDR))
    handler = make_handler(emoji_pb2, emoji_stub, voting_pb2, voting_stub)
    ThreadingHTTPServer(("127.0.0.1", port), handler).serve_forever()


if __name__ == "__main__":
    serve(int(os.environ.get("PORT", "8080")))
