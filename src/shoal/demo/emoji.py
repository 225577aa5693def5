"""emoji: the catalogue of emoji over gRPC (list all, find by shortcode).

Run it as ``python -m shoal.demo.emoji`` (listens on ``$PORT``); the demo runs two
replicas so balancing and per-pod rows have something to show.
"""

from __future__ import annotations

import os

EMOJI = {
    ":joy:": "😂", ":sunglasses:": "😎", ":doughnut:": "🍩", ":stuck_out_tongue_winking_eye:": "😜",
    ":money_mouth_face:": "🤑", ":flushed:": "😳", ":mask:": "😷", ":nerd_face:": "🤓",
    ":ghost:": "👻", ":skull_and_crossbones:": "☠️", ":heart_eyes_cat:": "😻", ":hear_no_evil:": "🙉",
    ":see_no_evil:": "🙈", ":speak_no_evil:": "🙊", ":boy:": "👦", ":girl:": "👧",
    ":man:": "👨", ":woman:": "👩", ":older_man:": "👴", ":policeman:": "👮",
    ":guardsman:": "💂", ":construction_worker:": "👷", ":crown:": "👑", ":unicorn_face:": "🦄",
    ":rocket:": "🚀", ":fire:": "🔥", ":100:": "💯", ":tada:": "🎉", ":pizza:": "🍕",
    ":taco:": "🌮", ":beer:": "🍺", ":champagne:": "🍾",
}


def serve(port: int) -> None:

    from shoal.demo.protos import load, serve

    pb2, pb2_grpc = load("emoji")
    catalogue = [pb2.Emoji(unicode=u, shortcode=s) for s, u in EMOJI.items()]

    class EmojiService(pb2_grpc.EmojiServiceServicer):  # type: ignore[misc,name-defined]
        def ListAll(self, request, context):  # type: ignore[no-untyped-def]  # noqa: N802
            return pb2.ListAllResponse(list=catalogue)

        def FindByShortcode(self, request, context):  # type: ignore[no-untyped-def]  # noqa: N802
            unicode = EMOJI.get(request.shortcode)
            if unicode is None:
                return pb2.FindByShortcodeResponse()
            return pb2.FindByShortcodeResponse(
                emoji=pb2.Emoji(unicode=unicode, shortcode=request.shortcode))

    serve(pb2_grpc.add_EmojiServiceServicer_to_server, EmojiService(), port)


if __name__ == "__main__":
    serve(int(os.environ.get("PORT", "8080")))
