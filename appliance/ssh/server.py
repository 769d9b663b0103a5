"""The SSH gateway daemon (``appliance ssh``): paramiko server in front, the
guest's own sshd behind.

    ssh client ==SSH==> gateway (paramiko, :ssh_port) ==SSH==> guest sshd (root, gateway key)

Per client connection:

1. Public-key auth only (``admission``): for each signed key attempt the
   gateway asks the core's internal ``SshGatewayService.Authorize`` (``authorizer``; a ~1 ms
   unary call over the core's Unix socket, cached per connection); unsigned
   key queries get the same answer whatever the state. No password,
   keyboard-interactive or "none" auth. Limits, the login timeout and the
   re-checks of open connections: ``limits``; paramiko's own gaps (packet
   size, banner length, flow control): ``hardening``.
2. Once admitted, a second SSH connection is opened in the background to the
   guest's sshd (bridge address, root, the gateway's guest-access key),
   whose host key must be one the core reported for that guest (``guest``).
3. Every channel the client opens is mirrored on the guest connection:
   session channels with their pty-req, env, window-change, shell / exec /
   subsystem (so scp, sftp, rsync, exit codes and stderr are OpenSSH's own);
   direct-tcpip (``ssh -L``/``-W``) is opened by the guest's sshd, so
   ``localhost`` means the guest. Remote forwarding (``ssh -R``) asks the
   guest's sshd to listen and mirrors each forwarded-tcpip channel back.
   ``<user>.<id>`` logs in as root and wraps the request in ``runuser -l``.

paramiko callbacks run on the transport's thread, so none of them waits on
the guest: requests are recorded and replayed by the channel's own worker
thread. Bytes are relayed by one thread per direction; windows
(``hardening.WINDOW``) bound what one channel can hold in the gateway.
"""
from __future__ import annotations

import io
import logging
import signal
import socket
import threading
import time
from concurrent.futures import Future

import paramiko

from appliance import gatewaykeys as keys
from appliance import logship, metrics
from appliance.config import Config
from appliance.logsafe import clip
from appliance.ssh.admission import Admission, Guarded
from appliance.ssh.authorizer import Authorizer
from appliance.ssh.guest import GUEST_CONNECT_TIMEOUT, SessionRequest, open_guest, open_session
from appliance.ssh.hardening import gateway_transport, install_log_clip, trim_malloc, tune_malloc
from appliance.ssh.limits import Registry
from appliance.ssh.relay import fail, relay_pair, relay_session, spawn

log = logging.getLogger("appliance.ssh")

KNOWN_SUBSYSTEMS = {"sftp"}
MAX_ENV = 64


class Connection(Guarded):
    """One client connection: auth and limits (``Guarded``) plus the guest side."""

    def __init__(self, gateway: Gateway, sock: socket.socket, address):
        super().__init__(gateway, sock, address)
        self.guest: Future = Future()
        self.sessions: dict[int, SessionRequest] = {}
        self.direct: dict[int, tuple] = {}

    # -- channels --------------------------------------------------------------------
    def check_channel_request(self, kind, chanid):
        if kind != "session":
            return paramiko.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED
        refused = self.may_open()
        if refused:
            return refused
        self.sessions[chanid] = SessionRequest()
        return paramiko.OPEN_SUCCEEDED

    def check_channel_direct_tcpip_request(self, chanid, origin, destination):
        refused = self.may_open()
        if refused:
            return refused
        self.direct[chanid] = (origin, destination)
        return paramiko.OPEN_SUCCEEDED

    def check_channel_pty_request(self, channel, term, width, height, pixelwidth, pixelheight, modes):
        s = self.sessions.get(channel.get_id())
        if s is None or s.kind:
            return False
        term = term.decode() if isinstance(term, bytes) else term
        s.pty = (term, width, height, pixelwidth, pixelheight)
        return True

    def check_channel_env_request(self, channel, name, value):
        s = self.sessions.get(channel.get_id())
        if s is None or s.kind or len(s.env) >= MAX_ENV:
            return False
        name = name.decode(errors="replace") if isinstance(name, bytes) else name
        value = value.decode(errors="replace") if isinstance(value, bytes) else value
        s.env[name] = value
        return True

    def _start(self, channel, kind: str, command: str | None) -> bool:
        s = self.sessions.get(channel.get_id())
        if s is None or s.kind:
            return False
        s.kind, s.command = kind, command
        s.started.set()
        return True

    def check_channel_shell_request(self, channel):
        return self._start(channel, "shell", None)

    def check_channel_exec_request(self, channel, command):
        return self._start(channel, "exec", command.decode(errors="surrogateescape")
                           if isinstance(command, bytes) else command)

    def check_channel_subsystem_request(self, channel, name):
        if name not in KNOWN_SUBSYSTEMS:
            return False
        return self._start(channel, "subsystem", name)

    def check_channel_window_change_request(self, channel, width, height, pixelwidth, pixelheight):
        s = self.sessions.get(channel.get_id())
        if s is None:
            return False
        s.size = (width, height, pixelwidth, pixelheight)
        if s.guest is not None:
            try:
                s.guest.resize_pty(width, height, pixelwidth, pixelheight)
            except Exception:  # noqa: BLE001 - the guest channel went away
                pass
        return True

    def check_channel_x11_request(self, *args):
        return False

    def check_channel_forward_agent_request(self, channel):
        return False

    def check_port_forward_request(self, address, port):
        """``ssh -R``: the guest's sshd listens; its connections come back to us."""
        if self.may_open():
            return False
        self.channel_closed()  # a forward is not a channel; each connection it brings is
        try:
            guest = self.guest_transport().result(GUEST_CONNECT_TIMEOUT)
            return guest.request_port_forward(address, port, handler=self._forwarded)
        except Exception as e:  # noqa: BLE001
            log.info("ssh %s: remote forward %s:%s refused: %s",
                     self.address, clip(address), clip(port), clip(str(e), 200))
            return False

    def cancel_port_forward_request(self, address, port):
        try:
            self.guest.result(1).cancel_port_forward(address, port)
        except Exception:  # noqa: BLE001
            pass

    def _forwarded(self, guest_channel, origin, server):
        if self.may_open():
            guest_channel.close()
            return
        try:
            client_channel = self.client.open_forwarded_tcpip_channel(origin, server)
        except Exception:  # noqa: BLE001
            guest_channel.close()
            self.channel_closed()
            return
        spawn(self._relay_forwarded, client_channel, guest_channel)

    def _relay_forwarded(self, client_channel, guest_channel):
        try:
            relay_pair(client_channel, guest_channel)
        finally:
            self.channel_closed()

    # -- the guest side -----------------------------------------------------------------
    def guest_transport(self) -> Future:
        """The SSH connection to the guest's sshd, opened once in the background
        after the client proved its key (first channel or forward request)."""
        a = self.logged_in()
        with self.lock:
            if not self.guest.done() and not self.guest.running():
                if a is None:
                    self.guest.set_exception(paramiko.SSHException("not admitted"))
                    return self.guest
                self.guest.set_running_or_notify_cancel()
                spawn(self._connect_guest, a)
        return self.guest

    def _connect_guest(self, admission: Admission) -> None:
        try:
            self.guest.set_result(open_guest(admission, self.gateway.guest_key))
        except Exception as e:  # noqa: BLE001
            log.warning("ssh %s: cannot reach %s: %s", self.address, admission.container_id, e)
            self.guest.set_exception(e)

    def serve(self) -> None:
        t = gateway_transport(self.sock)
        self.client = t
        t.local_version = "SSH-2.0-appliance"
        t.add_server_key(self.gateway.host_key)
        t.banner_timeout = t.auth_timeout = self.gateway.config.ssh_auth_timeout
        try:
            t.start_server(server=self)
        except (paramiko.SSHException, EOFError, OSError) as e:
            log.debug("ssh %s: handshake failed: %s", self.address, e)
            t.close()
            return
        try:
            while t.is_active():
                chan = t.accept(1)
                if chan is not None and t.is_authenticated():
                    self.guest_transport()
                    spawn(self.serve_channel, chan)
        finally:
            t.close()
            if self.guest.done() and self.guest.exception() is None:
                self.guest.result().close()
            elif not self.guest.done():
                self.guest.add_done_callback(lambda f: f.exception() is None and f.result().close())

    def serve_channel(self, chan: paramiko.Channel) -> None:
        try:
            self._serve_channel(chan)
        finally:
            self.channel_closed()

    def _serve_channel(self, chan: paramiko.Channel) -> None:
        chanid = chan.get_id()
        try:
            guest = self.guest_transport().result(GUEST_CONNECT_TIMEOUT)
        except Exception:  # noqa: BLE001
            fail(chan, "the appliance could not reach the container's SSH server\r\n")
            return
        if chanid in self.direct:
            origin, destination = self.direct.pop(chanid)
            try:
                gchan = guest.open_channel("direct-tcpip", destination, origin)
            except Exception as e:  # noqa: BLE001
                log.info("ssh %s: forward to %s refused: %s", self.address, clip(destination), clip(str(e), 200))
                chan.close()
                return
            relay_pair(chan, gchan)
            return
        s = self.sessions.get(chanid)
        if s is None:
            chan.close()
            return
        if not s.started.wait(60):
            chan.close()
            return
        assert self.admission is not None  # channels open only once logged in
        try:
            gchan = open_session(guest, s, self.admission.guest_user)
        except Exception as e:  # noqa: BLE001
            log.warning("ssh %s: session on %s failed: %s", self.address, self.admission.container_id, e)
            fail(chan, "the container refused the session\r\n")
            return
        relay_session(chan, gchan)
        self.sessions.pop(chanid, None)


# -- the daemon ---------------------------------------------------------------------------

class Gateway:
    def __init__(self, config: Config):
        self.config = config
        self.host_key = paramiko.Ed25519Key.from_private_key(
            io.StringIO(keys.private_key_pem(config, keys.HOST_KEY).decode()))
        self.guest_key = paramiko.Ed25519Key.from_private_key(
            io.StringIO(keys.private_key_pem(config, keys.GUEST_ACCESS_KEY).decode()))
        self.authorizer = Authorizer(config)  # asked by each connection's auth (admission.py)
        self.listener: socket.socket | None = None
        self.stopping = threading.Event()
        self.registry = Registry(config, self.authorizer.recheck)

    def serve_forever(self) -> None:
        family = socket.AF_INET6 if ":" in self.config.ssh_listen else socket.AF_INET
        s = socket.socket(family, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((self.config.ssh_listen, self.config.ssh_port))
        s.listen(128)
        self.listener = s
        self.registry.start()
        log.info("ssh gateway listening on %s:%d", self.config.ssh_listen, self.config.ssh_port)
        while not self.stopping.is_set():
            try:
                conn, address = s.accept()
            except OSError:
                if self.stopping.is_set():
                    break
                time.sleep(0.05)
                continue
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            spawn(self._serve, conn, address)

    def _serve(self, conn: socket.socket, address) -> None:
        c = Connection(self, conn, address)
        refusal = self.registry.open(c)
        if refusal:
            metrics.SSH_REFUSED.inc()
            log.info("ssh %s: connection refused: %s", c.address, refusal)
            conn.close()
            return
        try:
            c.serve()
        except Exception:  # noqa: BLE001
            log.exception("ssh connection from %s failed", address)
        finally:
            self.registry.close(c)
            try:
                conn.close()
            except OSError:
                pass
            if c.admission is not None:
                trim_malloc()

    def stop(self) -> None:
        self.stopping.set()
        self.registry.stop()
        if self.listener is not None:
            try:
                self.listener.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self.listener.close()


def serve(config: Config) -> None:
    tune_malloc()
    install_log_clip()
    shipper = logship.start(config)  # entries for the core's /sse/logs
    gateway = Gateway(config)
    done = threading.Event()

    def on_signal(signum, frame):
        gateway.stop()
        done.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    thread = spawn(gateway.serve_forever)
    done.wait()
    thread.join(2)
    log.info("ssh gateway stopped")
    shipper.close()
