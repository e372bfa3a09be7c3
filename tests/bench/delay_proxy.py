#!/usr/bin/env python3
"""A TCP proxy on 127.0.0.1 that adds a fixed delay to every segment, in each direction,
for `make bench`'s runs with network delay (this kernel has no netem).

  delay_proxy.py LISTEN_PORT TARGET_HOST:TARGET_PORT DELAY_MS [PROCESSES]

Each segment read from one side is written to the other DELAY_MS after it was read:
pipelined (a segment read at t goes out at t + DELAY_MS whatever is still queued before
it; order kept), so 10 ms each way makes a 20 ms round trip without cutting the
bandwidth. A new connection's first bytes wait one round trip more (the TCP handshake
the kernel completed at once on loopback). PROCESSES workers (default 1) accept on the same port (SO_REUSEPORT) so one
process's CPU does not bound the throughput; the parent prints "ready" once all listen
and waits for them. Read the CPU of the proxy from /proc of the parent's children.
"""
import asyncio
import os
import signal
import socket
import sys

CHUNK = 256 * 1024
# Segments queued per direction and connection: reading stops (TCP back-pressure) when
# the far side does not take them; at 10 ms and a few hundred MiB/s a few MiB are queued.
QUEUE = 1024


async def pump(reader, writer, delay, opened=0.0):
    """Forwards reader to writer, each segment `delay` s after it was read and not before
    `opened` (loop time)."""
    loop = asyncio.get_running_loop()
    queue = asyncio.Queue(QUEUE)

    async def read():
        try:
            while True:
                data = await reader.read(CHUNK)
                await queue.put((max(loop.time(), opened) + delay, data))
                if not data:
                    return
        except (ConnectionError, OSError):
            await queue.put((loop.time() + delay, b""))

    async def write():
        try:
            while True:
                due, data = await queue.get()
                wait = due - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                if not data:
                    if writer.can_write_eof():
                        writer.write_eof()
                    return
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            return

    reading = asyncio.ensure_future(read())
    await write()
    reading.cancel()


async def handle(client_r, client_w, target, delay):
    host, port = target
    # The kernel completed the client's handshake at once; over a real link it costs a
    # round trip before the first byte can leave, so the first request waits one more.
    opened = asyncio.get_running_loop().time() + 2 * delay
    try:
        server_r, server_w = await asyncio.open_connection(host, port)
    except OSError:
        client_w.close()
        return
    for w in (client_w, server_w):
        sock = w.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        await asyncio.gather(pump(client_r, server_w, delay, opened), pump(server_r, client_w, delay))
    except Exception:  # a peer reset mid-stream: the connection ends, the proxy goes on
        pass
    finally:
        for w in (client_w, server_w):
            w.close()


async def serve(sock, target, delay):
    server = await asyncio.start_server(lambda r, w: handle(r, w, target, delay), sock=sock)
    async with server:
        await server.serve_forever()


def listener(port):
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(1024)
    return sock


def main():
    port, target, delay_ms = int(sys.argv[1]), sys.argv[2], float(sys.argv[3])
    procs = int(sys.argv[4]) if len(sys.argv) > 4 else 1
    host, tport = target.rsplit(":", 1)
    children = []
    for _ in range(procs):
        sock = listener(port)  # bound before the fork: "ready" means every worker listens
        pid = os.fork()
        if pid == 0:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            asyncio.run(serve(sock, (host, int(tport)), delay_ms / 1000))
            os._exit(0)
        sock.close()
        children.append(pid)

    def stop(*_):
        for pid in children:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print("ready " + " ".join(str(p) for p in children), flush=True)
    for _ in children:
        os.wait()


if __name__ == "__main__":
    main()
