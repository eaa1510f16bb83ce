"""A TCP proxy whose connections a test can cut, to break sockets mid-stream."""

from __future__ import annotations

import socket
import threading


class CuttingProxy:
    """Forwards 127.0.0.1:``port`` to ``target_port``; ``cut()`` drops every connection."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.lock = threading.Lock()
        self.open: list[socket.socket] = []
        self.cuts = 0
        self.running = True
        # Cleared by hold_replies(): data from the server waits until it is set again.
        self.replies_flowing = threading.Event()
        self.replies_flowing.set()
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cut(self) -> int:
        """Close both ends of every open connection; return how many were cut."""
        with self.lock:
            sockets, self.open = self.open, []
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()
        self.cuts += 1
        return len(sockets) // 2

    def hold_replies(self) -> None:
        """Stop forwarding what the server sends, until ``release_replies()``."""
        self.replies_flowing.clear()

    def release_replies(self) -> None:
        self.replies_flowing.set()

    def close(self) -> None:
        self.running = False
        self.replies_flowing.set()
        self.listener.close()
        self.cut()

    def _accept(self) -> None:
        while self.running:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:
                client.close()
                continue
            with self.lock:
                self.open += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                gate = self.replies_flowing if source is upstream else None
                threading.Thread(target=self._pump, args=(source, sink, gate), daemon=True).start()

    def _pump(
        self, source: socket.socket, sink: socket.socket, gate: threading.Event | None
    ) -> None:
        try:
            while data := source.recv(65536):
                if gate is not None:
                    gate.wait()
                sink.sendall(data)
        except OSError:
            pass
        for sock in (source, sink):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
