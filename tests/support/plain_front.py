"""A loopback TCP front for a plain-HTTP server that drops TLS handshakes at once.

containers/image (skopeo, podman) always tries HTTPS before falling back to HTTP for an insecure
registry. Against a plain-HTTP server the TLS ClientHello is never answered, so every client run waits
for Go's 10 s TLS handshake timeout. This front closes a connection whose first byte starts a TLS
record, so the client falls back to HTTP immediately; everything else is forwarded byte for byte.
"""
import socket
import threading

TLS_HANDSHAKE = 0x16


class PlainHttpFront:
    def __init__(self, backend_port):
        self.backend = ("127.0.0.1", backend_port)
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        self.host = f"127.0.0.1:{self.port}"
        self.closed = False

    def start(self):
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def stop(self):
        self.closed = True
        self.listener.close()

    def _accept(self):
        while not self.closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client):
        try:
            first = client.recv(1, socket.MSG_PEEK)
            if not first or first[0] == TLS_HANDSHAKE:
                client.close()
                return
            backend = socket.create_connection(self.backend)
        except OSError:
            client.close()
            return
        back = threading.Thread(target=self._pump, args=(backend, client), daemon=True)
        back.start()
        self._pump(client, backend)
        back.join()
        client.close()
        backend.close()

    @staticmethod
    def _pump(source, target):
        try:
            while True:
                data = source.recv(1 << 16)
                if not data:
                    break
                target.sendall(data)
        except OSError:
            pass
        finally:
            for sock, how in ((target, socket.SHUT_WR), (source, socket.SHUT_RD)):
                try:
                    sock.shutdown(how)
                except OSError:
                    pass
