# shellcheck shell=bash
# free_ports N: prints N distinct free loopback ports (bound at once, so
# they differ, then released for the caller's servers). Sourced by
# chantra-server.sh, bench.sh and check-deploy.sh.
free_ports() {
  python3 - "$1" <<'PY'
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))
PY
}
