"""Reference servers for bench/load.py: the HTTP ceiling without Raft, and the client's own ceiling.

    .venv/bin/python bench/trivial_server.py --mode quart --port 9000   # Quart-Trio on hypercorn (trio)
    .venv/bin/python bench/trivial_server.py --mode raw --port 9001     # bare Trio HTTP/1.1 responder

``quart``: one trivial Quart-Trio route on ``hypercorn.trio.serve`` (in-process, one trio.run, as
a Beaver-Vault node serves its API), shaped like the KV route: ``PUT /api/v1/kv/<key>`` reads the
body and answers a small JSON document; ``GET`` answers a fixed 100-byte JSON value. No
validation, no Raft, no storage: what any route on this stack costs at least.

``raw``: a keep-alive HTTP/1.1 responder on bare Trio streams that answers every request with a
fixed 200 JSON response (it parses just enough: the header block and Content-Length). It is
many times faster than any Quart route, so running bench/load.py against it measures the load
generator's own ceiling.

Prints ``READY <port>`` on stdout once listening; stops on SIGINT/SIGTERM.
"""

from __future__ import annotations

import argparse
import signal
import sys
from functools import partial

import trio

VALUE = b'{"v":"' + b"x" * 92 + b'"}'  # 100 bytes
assert len(VALUE) == 100


def quart_app():  # type: ignore[no-untyped-def]
    from quart import Response, request
    from quart_trio import QuartTrio

    app = QuartTrio(__name__, static_folder=None)

    @app.route("/api/v1/kv/<path:key>", methods=["PUT"])
    async def put(key: str) -> Response:
        body = await request.get_data(cache=True, as_text=False, parse_form_data=False)
        return Response(b'{"key":"%s","size":%d}' % (key.encode(), len(body)), status=200, mimetype="application/json")

    @app.route("/api/v1/kv/<path:key>", methods=["GET"])
    async def get(key: str) -> Response:
        return Response(VALUE, status=200, mimetype="application/json")

    return app


async def serve_quart(host: str, port: int) -> None:
    import hypercorn.trio
    from hypercorn.config import Config

    config = Config()
    config.bind = [f"{host}:{port}"]
    config.accesslog = None
    config.errorlog = None
    config.graceful_timeout = 0.5
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_wait_signal, stop)
        binds = await nursery.start(
            partial(hypercorn.trio.serve, quart_app(), config, shutdown_trigger=stop.wait)  # type: ignore[arg-type]
        )
        print("READY", binds[0].rsplit(":", 1)[1], flush=True)


RAW_RESPONSE = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n" % len(VALUE) + VALUE


async def _raw_conn(stream: trio.SocketStream) -> None:
    buf = bytearray()
    try:
        while True:
            end = buf.find(b"\r\n\r\n")
            while end < 0:
                data = await stream.receive_some(65536)
                if not data:
                    return
                buf += data
                end = buf.find(b"\r\n\r\n")
            head = bytes(buf[:end]).lower()
            length = 0
            i = head.find(b"content-length:")
            if i >= 0:
                length = int(head[i + 15 :].split(b"\r\n", 1)[0])
            need = end + 4 + length
            while len(buf) < need:
                data = await stream.receive_some(65536)
                if not data:
                    return
                buf += data
            del buf[:need]
            await stream.send_all(RAW_RESPONSE)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        return


async def serve_raw(host: str, port: int) -> None:
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_wait_signal, stop)
        listeners = await nursery.start(partial(trio.serve_tcp, _raw_conn, port, host=host))
        print("READY", listeners[0].socket.getsockname()[1], flush=True)
        await stop.wait()
        nursery.cancel_scope.cancel()


async def _wait_signal(stop: trio.Event) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for _ in signals:
            stop.set()
            return


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", choices=("quart", "raw"), default="quart")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    trio.run(serve_quart if args.mode == "quart" else serve_raw, args.host, args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
