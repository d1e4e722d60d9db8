"""--workers N with the HTTP listener: worker i serves /metrics and the probes on PORT + i, so
every worker can be scraped (they used to fight over one port)."""
import socket
import time
import urllib.request

import cloud
from run import check_eq

CASES = []


def case(fn):
    CASES.append(fn)
    return fn


def free_port_pair():
    for _ in range(50):
        a = socket.socket()
        a.bind(("127.0.0.1", 0))
        port = a.getsockname()[1]
        b = socket.socket()
        try:
            b.bind(("127.0.0.1", port + 1))
            return port
        except OSError:
            continue
        finally:
            a.close()
            b.close()
    raise RuntimeError("no two free ports in a row")


@case
def workers_listen_on_consecutive_ports():
    with cloud.Scenario() as s:
        port = free_port_pair()
        b = cloud.Bepipe(s.emu, ["--workers", "2", "--http", f"127.0.0.1:{port}"])
        codes = []
        for p in (port, port + 1):
            end = time.time() + 20
            while True:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{p}/healthz", timeout=5) as r:
                        codes.append(r.status)
                        break
                except OSError:
                    if time.time() > end:
                        codes.append(None)
                        break
                    time.sleep(0.2)
        check_eq(codes, [200, 200], "both workers answer /healthz")
        check_eq(b.stop(), 0, "exit code: " + b.stderr()[-1500:])
