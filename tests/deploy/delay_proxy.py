"""A TCP proxy that delays the data in each direction by a fixed time: link latency without `tc netem`.

    python -m tests.deploy.delay_proxy --listen 10.203.0.6:8001 --to 127.0.0.1:8001 --delay-ms 20

Every chunk read from one side is written to the other ``--delay-ms`` after it was read, in order,
so the delay is one-way per direction and pipelined (chunks in flight do not add up): a round trip
through the proxy grows by 2 x ``--delay-ms``. The netns test and ``scripts/netns_demo.sh`` run it
inside the cloud namespace with ``ip netns exec`` when the kernel has no netem qdisc, with half of
the link delay each way, so the round trip grows by the same 40 ms that netem adds on one direction.
Half-closes are forwarded; a connection ends when both directions have. Stops on SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys

CHUNK = 64 * 1024
QUEUE_CHUNKS = 256  # backpressure: a reader waits once this many chunks are in flight one way


def _addr(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host.strip("[]"), int(port)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay_s: float) -> None:
    """Copy reader to writer, each chunk ``delay_s`` after it was read; EOF is forwarded as a half-close."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue(QUEUE_CHUNKS)

    async def read() -> None:
        try:
            while chunk := await reader.read(CHUNK):
                await queue.put((loop.time() + delay_s, chunk))
        except OSError:
            pass
        await queue.put((loop.time() + delay_s, b""))  # EOF, or the peer reset: end this direction

    reading = asyncio.create_task(read())
    try:
        while True:
            due, chunk = await queue.get()
            if (wait := due - loop.time()) > 0:
                await asyncio.sleep(wait)
            if not chunk:
                if writer.can_write_eof():
                    writer.write_eof()
                return
            writer.write(chunk)
            await writer.drain()
    finally:
        reading.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reading


async def _handle(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter,
                  to: tuple[str, int], delay_s: float) -> None:
    try:
        upstream_r, upstream_w = await asyncio.open_connection(*to)
    except OSError:
        client_w.close()
        return
    try:
        await asyncio.gather(_pipe(client_r, upstream_w, delay_s), _pipe(upstream_r, client_w, delay_s),
                             return_exceptions=True)
    finally:
        for w in (client_w, upstream_w):
            w.close()
            with contextlib.suppress(OSError):
                await w.wait_closed()


async def start(listen: tuple[str, int], to: tuple[str, int], delay_ms: float) -> asyncio.Server:
    """Listen on ``listen`` and forward every connection to ``to``, ``delay_ms`` late each way."""
    delay_s = delay_ms / 1000

    async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await _handle(r, w, to, delay_s)

    return await asyncio.start_server(handle, *listen, reuse_address=True)


async def _main(args: argparse.Namespace) -> None:
    server = await start(args.listen, args.to, args.delay_ms)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"delay proxy {args.listen[0]}:{args.listen[1]} -> {args.to[0]}:{args.to[1]}, "
          f"+{args.delay_ms:g} ms each way", flush=True)
    async with server:
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.deploy.delay_proxy", description=__doc__.split("\n\n")[0])
    p.add_argument("--listen", type=_addr, required=True, metavar="HOST:PORT")
    p.add_argument("--to", type=_addr, required=True, metavar="HOST:PORT")
    p.add_argument("--delay-ms", type=float, required=True, help="one-way delay per direction")
    args = p.parse_args(argv)
    if args.delay_ms < 0:
        p.error("--delay-ms must be >= 0")
    asyncio.run(_main(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
