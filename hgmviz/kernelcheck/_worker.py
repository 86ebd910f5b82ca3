"""The child side of :mod:`hgmviz.kernelcheck.live`: one real process that runs commands.

This file runs as a standalone script (``python -I -S _worker.py worker FD``) so that a child
process starts in ~20 ms, imports nothing from hgmviz (and so neither numba nor numpy), and
has an address space that holds only the mappings a scenario asks for.  It uses the standard
library and ctypes only.

Protocol: one JSON object per SOCK_SEQPACKET message on the inherited socket FD; file
descriptors travel as SCM_RIGHTS.  Every request gets exactly one reply, ``{"ok": value}`` or
``{"errno": n, "msg": text}`` (a syscall the kernel refused; ``mapped`` added for
UFFDIO_CONTINUE) or ``{"error": traceback}`` (a bug).  End of file on the socket means the
driver is gone: the process exits, so nothing outlives the driver.

Roles (argv[1]):

``worker``
    A scenario process: mmap, munmap, madvise, userfaultfd(2) and its ioctls, fork, exit.
``guardian``
    Hears of every hugetlb setting the driver changes (a JSON line on stdin before the write
    and one after it, see ``pool.Change``).  If its stdin reaches end of file without the word
    ``disarm`` first (the driver was killed, even by SIGKILL), it gives back each change that
    still reads what the driver left, and leaves (and names) every one somebody else changed
    meanwhile.  The driver restores them itself in every other case.

The prober (the process that *touches* memory of another process, see ``op_poke``) is a
``worker`` too.

Constants below are x86-64 values from the uapi headers: ``include/uapi/linux/userfaultfd.h``,
``include/uapi/asm-generic/mman-common.h``, ``arch/x86/include/uapi/asm/mman.h``,
``arch/x86/entry/syscalls/syscall_64.tbl`` (userfaultfd = 323).
"""
from __future__ import annotations

import ctypes
import errno
import fcntl
import json
import os
import select
import signal
import socket
import struct
import sys
import threading
import time
import traceback

# --- uapi constants -------------------------------------------------------------------------
SYS_userfaultfd = 323                # arch/x86/entry/syscalls/syscall_64.tbl
PROT_READ, PROT_WRITE = 0x1, 0x2
MAP_SHARED, MAP_PRIVATE = 0x01, 0x02
MAP_FIXED = 0x10
MAP_ANONYMOUS = 0x20
MAP_NORESERVE = 0x4000
MAP_FIXED_NOREPLACE = 0x100000

UFFD_API = 0xAA
# _IOWR(UFFDIO, nr, struct) with UFFDIO = 0xAA; sizes of the structs in userfaultfd.h
UFFDIO_API = 0xC018AA3F              # struct uffdio_api (24 bytes)
UFFDIO_REGISTER = 0xC020AA00         # struct uffdio_register (32 bytes)
UFFDIO_UNREGISTER = 0x8010AA01       # struct uffdio_range (16 bytes), _IOR
UFFDIO_WRITEPROTECT = 0xC018AA06     # struct uffdio_writeprotect (24 bytes)
UFFDIO_CONTINUE = 0xC020AA07         # struct uffdio_continue (32 bytes)
UFFDIO_COPY = 0xC028AA03             # struct uffdio_copy (40 bytes)
UFFDIO_WAKE = 0x8010AA02             # struct uffdio_range (16 bytes), _IOR

UFFDIO_REGISTER_MODE_MISSING = 1 << 0
UFFDIO_REGISTER_MODE_WP = 1 << 1
UFFDIO_REGISTER_MODE_MINOR = 1 << 2

UFFD_FEATURE_EVENT_FORK = 1 << 1
UFFD_FEATURE_MISSING_HUGETLBFS = 1 << 4
UFFD_FEATURE_MINOR_HUGETLBFS = 1 << 9
UFFD_FEATURE_WP_HUGETLBFS_SHMEM = 1 << 12

UFFD_EVENT_PAGEFAULT = 0x12
UFFD_EVENT_FORK = 0x13
UFFD_EVENT_REMAP = 0x14
UFFD_EVENT_REMOVE = 0x15
UFFD_EVENT_UNMAP = 0x16
UFFD_MSG_SIZE = 32                   # sizeof(struct uffd_msg)

# --- libc -----------------------------------------------------------------------------------
libc = ctypes.CDLL(None, use_errno=True)
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                      ctypes.c_int, ctypes.c_long]
libc.munmap.restype = ctypes.c_int
libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
libc.madvise.restype = ctypes.c_int
libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
libc.mremap.restype = ctypes.c_void_p
libc.mremap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_size_t, ctypes.c_int,
                        ctypes.c_void_p]
libc.mprotect.restype = ctypes.c_int
libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
libc.syscall.restype = ctypes.c_long
libc.ioctl.restype = ctypes.c_int
libc.ioctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p]
libc.read.restype = ctypes.c_ssize_t
libc.read.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t]


class _Iovec(ctypes.Structure):
    _fields_ = [("iov_base", ctypes.c_void_p), ("iov_len", ctypes.c_size_t)]


libc.process_vm_writev.restype = ctypes.c_ssize_t
libc.process_vm_writev.argtypes = [ctypes.c_int, ctypes.POINTER(_Iovec), ctypes.c_ulong,
                                   ctypes.POINTER(_Iovec), ctypes.c_ulong, ctypes.c_ulong]
libc.process_vm_readv.restype = ctypes.c_ssize_t
libc.process_vm_readv.argtypes = libc.process_vm_writev.argtypes
MAP_FAILED = ctypes.c_void_p(-1).value


def _raise_errno(what: str):
    e = ctypes.get_errno()
    raise OSError(e, "%s: %s" % (what, os.strerror(e)))


# --- messages -------------------------------------------------------------------------------
MAX_MSG = 1 << 16


def send(sock: socket.socket, obj, fds=()):
    data = json.dumps(obj).encode()
    if fds:
        socket.send_fds(sock, [data], list(fds))
    else:
        sock.send(data)


def recv(sock: socket.socket):
    data, fds, _flags, _addr = socket.recv_fds(sock, MAX_MSG, 8)
    if not data:
        for fd in fds:
            os.close(fd)
        raise EOFError
    return json.loads(data), fds


class _NoReply:
    """Returned by a handler in a freshly forked child: it must not answer its parent's call."""


NO_REPLY = _NoReply()


# --- userfaultfd ----------------------------------------------------------------------------
def _uffd_msg(raw: bytes) -> dict:
    event = raw[0]
    out = {"event": event}
    if event == UFFD_EVENT_PAGEFAULT:
        flags, address = struct.unpack_from("QQ", raw, 8)
        out.update(kind="pagefault", flags=flags, address=address)
    elif event == UFFD_EVENT_FORK:
        out.update(kind="fork", ufd=struct.unpack_from("I", raw, 8)[0])
    else:
        out.update(kind={UFFD_EVENT_REMAP: "remap", UFFD_EVENT_REMOVE: "remove",
                         UFFD_EVENT_UNMAP: "unmap"}.get(event, "event%#x" % event))
    return out


class Uffd:
    """One userfaultfd context created by this process and the ranges registered on it."""

    def __init__(self, fd: int, features: int):
        self.fd = fd
        self.features = features
        self.ranges: list[list[int]] = []          # [start, end, mode]

    def covers(self, start: int) -> bool:
        return any(s <= start < e for s, e, _m in self.ranges)

    def forget(self, start: int, end: int):
        """munmap(start, end) removed these addresses from every VMA, hence from the ranges."""
        out = []
        for s, e, m in self.ranges:
            if e <= start or s >= end:
                out.append([s, e, m])
                continue
            if s < start:
                out.append([s, start, m])
            if e > end:
                out.append([end, e, m])
        self.ranges = out


def _task_waiting_in_read(tid: int) -> bool:
    try:
        with open("/proc/self/task/%d/wchan" % tid) as f:
            wchan = f.read().strip()
        if "userfaultfd" in wchan:
            return True
        with open("/proc/self/task/%d/syscall" % tid) as f:
            return f.read().split()[0] == "0"          # read(2) on x86-64
    except OSError:
        return False


class _ForkEventReader(threading.Thread):
    """Reads the UFFD_EVENT_FORK message that fork() waits for.

    With UFFD_FEATURE_EVENT_FORK, ``dup_userfaultfd_complete()`` makes the *parent's* fork()
    sleep until somebody reads the fork event from the parent's userfaultfd.  os.fork() keeps
    the GIL across fork(2), so the reader must already sit inside read(2) (GIL released) when
    fork(2) starts: the fd is switched to blocking and the thread reads through ctypes (which
    also returns EINTR on SIGUSR1, the way a reader that never gets an event is stopped).
    """

    def __init__(self, uffd: Uffd):
        super().__init__(daemon=True)
        self.uffd = uffd
        self.msgs: list[dict] = []
        self.tid = 0
        self.stop = False

    def run(self):
        self.tid = threading.get_native_id()
        buf = ctypes.create_string_buffer(UFFD_MSG_SIZE)
        while not self.stop:
            n = libc.read(self.uffd.fd, buf, UFFD_MSG_SIZE)
            if n == UFFD_MSG_SIZE:
                msg = _uffd_msg(buf.raw)
                self.msgs.append(msg)
                if msg["kind"] == "fork":
                    return
            elif n < 0 and ctypes.get_errno() in (errno.EINTR, errno.EAGAIN):
                continue
            else:
                return


# --- the worker -----------------------------------------------------------------------------
class Worker:
    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.uffds: dict[int, Uffd] = {}
        self.next_uffd = 1
        self.child_ctx_fds: list[int] = []   # fds of children's contexts (UFFD_EVENT_FORK)

    # main loop
    def serve(self):
        while True:
            try:
                msg, fds = recv(self.sock)
            except (EOFError, ConnectionError):
                os._exit(0)
            reply_fds: list[int] = []
            try:
                handler = getattr(self, "op_" + str(msg.get("op")), None)
                if handler is None:
                    raise ValueError("unknown op %r" % (msg.get("op"),))
                reply = handler(msg, fds, reply_fds)
            except OSError as e:
                reply = {"errno": e.errno, "msg": e.strerror or str(e)}
                reply.update(getattr(e, "extra", {}))
            except Exception:
                reply = {"error": traceback.format_exc()}
            finally:
                for fd in fds:
                    try:
                        os.close(fd)
                    except OSError:
                        pass
            if reply is NO_REPLY:
                continue
            try:
                send(self.sock, reply, reply_fds)
            except (BrokenPipeError, ConnectionError):
                os._exit(0)
            finally:
                for fd in reply_fds:
                    os.close(fd)

    def _uffd_fds(self):
        return [u.fd for u in self.uffds.values()] + list(self.child_ctx_fds)

    def _state(self):
        return {"nuffd": len(self._uffd_fds())}

    # ops
    def op_ping(self, msg, fds, out_fds):
        return {"ok": os.getpid()}

    def op_mmap(self, msg, fds, out_fds):
        fd = fds[0] if fds else -1
        flags = MAP_SHARED if msg.get("shared", True) else MAP_PRIVATE
        if msg.get("noreserve"):
            flags |= MAP_NORESERVE
        addr = msg.get("addr")
        if addr is not None:
            flags |= MAP_FIXED if msg.get("replace") else MAP_FIXED_NOREPLACE
        prot = msg.get("prot", PROT_READ | PROT_WRITE)
        ctypes.set_errno(0)
        r = libc.mmap(addr or None, msg["length"], prot, flags, fd, msg.get("offset", 0))
        if r is None or r == MAP_FAILED:
            _raise_errno("mmap")
        return {"ok": r}

    def op_munmap(self, msg, fds, out_fds):
        if libc.munmap(msg["addr"], msg["length"]) != 0:
            _raise_errno("munmap")
        for u in self.uffds.values():
            u.forget(msg["addr"], msg["addr"] + msg["length"])
        return {"ok": 0}

    def op_mremap(self, msg, fds, out_fds):
        ctypes.set_errno(0)
        r = libc.mremap(msg["addr"], msg["old_len"], msg["new_len"], msg["flags"],
                        msg.get("new_addr") or 0)
        if r is None or r == MAP_FAILED:
            _raise_errno("mremap")
        return {"ok": r}

    def op_mprotect(self, msg, fds, out_fds):
        if libc.mprotect(msg["addr"], msg["length"], msg["prot"]) != 0:
            _raise_errno("mprotect")
        return {"ok": 0}

    def op_madvise(self, msg, fds, out_fds):
        if libc.madvise(msg["addr"], msg["length"], msg["advice"]) != 0:
            _raise_errno("madvise")
        return {"ok": 0}

    def op_uffd_register(self, msg, fds, out_fds):
        fd = libc.syscall(ctypes.c_long(SYS_userfaultfd),
                          ctypes.c_long(os.O_CLOEXEC | os.O_NONBLOCK))
        if fd < 0:
            _raise_errno("userfaultfd")
        try:
            api = ctypes.create_string_buffer(struct.pack("QQQ", UFFD_API, msg["features"], 0), 24)
            if libc.ioctl(fd, UFFDIO_API, api) != 0:
                _raise_errno("UFFDIO_API")
            _api, features, _ioctls = struct.unpack("QQQ", api.raw)
            reg = ctypes.create_string_buffer(
                struct.pack("QQQQ", msg["start"], msg["length"], msg["mode"], 0), 32)
            if libc.ioctl(fd, UFFDIO_REGISTER, reg) != 0:
                _raise_errno("UFFDIO_REGISTER")
            ioctls = struct.unpack("QQQQ", reg.raw)[3]
        except BaseException:
            os.close(fd)
            raise
        u = Uffd(fd, msg["features"])   # UFFDIO_API answers with *all* supported features
        u.ranges.append([msg["start"], msg["start"] + msg["length"], msg["mode"]])
        uid = self.next_uffd
        self.next_uffd += 1
        self.uffds[uid] = u
        return {"ok": {"id": uid, "features": msg["features"], "supported": features,
                       "ioctls": ioctls}, **self._state()}

    def _uffd_for(self, start: int, mode_bit: int) -> Uffd:
        for u in reversed(list(self.uffds.values())):
            if any(s <= start < e and (m & mode_bit) for s, e, m in u.ranges):
                return u
        for u in reversed(list(self.uffds.values())):
            if u.covers(start):
                return u
        if self.uffds:
            return list(self.uffds.values())[-1]
        raise OSError(errno.EBADF, "this process has no userfaultfd registered")

    def op_uffd_copy(self, msg, fds, out_fds):
        u = self._uffd_for(msg["start"], 0xff)
        src = libc.mmap(None, msg["length"], PROT_READ | PROT_WRITE,
                        MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
        if src is None or src == MAP_FAILED:
            _raise_errno("mmap(source)")
        try:
            buf = ctypes.create_string_buffer(struct.pack("QQQQq", msg["start"], src,
                                                          msg["length"], 0, 0), 40)
            r = libc.ioctl(u.fd, UFFDIO_COPY, buf)
            e = ctypes.get_errno()
            copied = struct.unpack("QQQQq", buf.raw)[4]
        finally:
            libc.munmap(src, msg["length"])
        if r != 0:
            err = OSError(e, "UFFDIO_COPY: %s" % os.strerror(e))
            if e == errno.EAGAIN:
                err.extra = {"mapped": copied}
            raise err
        return {"ok": copied}

    def op_uffd_wake(self, msg, fds, out_fds):
        u = self._uffd_for(msg["start"], 0xff)
        buf = ctypes.create_string_buffer(struct.pack("QQ", msg["start"], msg["length"]), 16)
        if libc.ioctl(u.fd, UFFDIO_WAKE, buf) != 0:
            _raise_errno("UFFDIO_WAKE")
        return {"ok": 0}

    def op_uffd_continue(self, msg, fds, out_fds):
        u = self._uffd_for(msg["start"], UFFDIO_REGISTER_MODE_MINOR)
        buf = ctypes.create_string_buffer(struct.pack("QQQq", msg["start"], msg["length"],
                                                      msg.get("mode", 0), 0), 32)
        r = libc.ioctl(u.fd, UFFDIO_CONTINUE, buf)
        e = ctypes.get_errno()
        mapped = struct.unpack("QQQq", buf.raw)[3]
        if r != 0:
            err = OSError(e, "UFFDIO_CONTINUE: %s" % os.strerror(e))
            err.extra = {"mapped": mapped}
            raise err
        return {"ok": mapped}

    def op_uffd_writeprotect(self, msg, fds, out_fds):
        u = self._uffd_for(msg["start"], UFFDIO_REGISTER_MODE_WP)
        buf = ctypes.create_string_buffer(struct.pack("QQQ", msg["start"], msg["length"],
                                                      1 if msg.get("wp", True) else 0), 24)
        if libc.ioctl(u.fd, UFFDIO_WRITEPROTECT, buf) != 0:
            _raise_errno("UFFDIO_WRITEPROTECT")
        return {"ok": 0}

    def op_uffd_unregister(self, msg, fds, out_fds):
        u = self._uffd_for(msg["start"], 0xff)
        buf = ctypes.create_string_buffer(struct.pack("QQ", msg["start"], msg["length"]), 16)
        if libc.ioctl(u.fd, UFFDIO_UNREGISTER, buf) != 0:
            _raise_errno("UFFDIO_UNREGISTER")
        u.forget(msg["start"], msg["start"] + msg["length"])
        return {"ok": 0}

    def op_watch(self, msg, fds, out_fds):
        """Wait for a userfault message on any of our userfaultfds, or for the next request.

        The driver sends ``watch`` before it touches memory in some process; a fault that
        userfaultfd hands to user space queues a UFFD_EVENT_PAGEFAULT message here (the
        faulting task sleeps in handle_userfault()).  The reply is that message, or, when the
        driver's next message ("stop") comes first, ``{"ok": null}``.
        """
        poller = select.poll()
        poller.register(self.sock.fileno(), select.POLLIN)
        for fd in self._uffd_fds():
            poller.register(fd, select.POLLIN)
        while True:
            for fd, _ev in poller.poll():
                if fd == self.sock.fileno():
                    try:
                        m, extra = recv(self.sock)
                    except (EOFError, ConnectionError):
                        os._exit(0)
                    for x in extra:
                        os.close(x)
                    if m.get("op") == "exit":           # the driver is tearing down
                        os._exit(int(m.get("code", 0)))
                    return {"ok": None}
                try:
                    raw = os.read(fd, UFFD_MSG_SIZE)
                except BlockingIOError:
                    continue
                return {"ok": _uffd_msg(raw)}

    def op_fork(self, msg, fds, out_fds):
        drv_end, kid_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        readers = [_ForkEventReader(u) for u in self.uffds.values()
                   if u.features & UFFD_FEATURE_EVENT_FORK and u.ranges]
        saved_flags = []
        for r in readers:
            fl = fcntl.fcntl(r.uffd.fd, fcntl.F_GETFL)
            saved_flags.append(fl)
            fcntl.fcntl(r.uffd.fd, fcntl.F_SETFL, fl & ~os.O_NONBLOCK)
            r.start()
        deadline = time.monotonic() + 2.0
        for r in readers:
            while not (r.tid and _task_waiting_in_read(r.tid)) and time.monotonic() < deadline:
                time.sleep(0.0005)
        pid = os.fork()
        if pid == 0:                                   # the child
            try:
                drv_end.close()
                self.sock.close()
                for fd in self._uffd_fds():            # contexts of the parent's mm
                    os.close(fd)
                self.uffds = {}
                self.child_ctx_fds = []
                self.sock = kid_end
            except BaseException:
                os._exit(70)
            return NO_REPLY
        kid_end.close()
        events = []
        for r in readers:
            r.join(0.2)
            if r.is_alive():                           # this context had no fork event
                r.stop = True
                while r.is_alive():
                    signal.pthread_kill(r.ident, signal.SIGUSR1)
                    r.join(0.05)
            for m in r.msgs:
                events.append(m)
                if m["kind"] == "fork":
                    self.child_ctx_fds.append(m["ufd"])
        for r, fl in zip(readers, saved_flags):
            fcntl.fcntl(r.uffd.fd, fcntl.F_SETFL, fl)
        out_fds.append(os.dup(drv_end.fileno()))
        drv_end.close()
        return {"ok": {"pid": pid, "events": events}, **self._state()}

    def op_exit(self, msg, fds, out_fds):
        os._exit(int(msg.get("code", 0)))

    def op_cpu_touch(self, msg, fds, out_fds):
        """Touch with the CPU in this very process (no protection against SIGBUS / userfaults)."""
        addr = msg["addr"]
        if msg.get("write", True):
            ctypes.memset(addr, msg.get("value", 0x5A), 1)
        else:
            ctypes.string_at(addr, 1)
        return {"ok": 0}

    def op_poke(self, msg, fds, out_fds):
        """Touch one byte of *another* process's memory (the prober's job).

        ``method="vm"``: process_vm_writev()/process_vm_readv().  They fault the page in
        through get_user_pages_remote() with FAULT_FLAG_ALLOW_RETRY, so a fault that
        userfaultfd must handle sleeps in handle_userfault() and queues a message (the driver
        sees it and kills this prober); a fault the kernel answers with VM_FAULT_SIGBUS fails
        with EFAULT instead of killing anybody.
        ``method="mem"``: pwrite()/pread() on /proc/<pid>/mem (GUP without ALLOW_RETRY: a
        userfault fails at once with EIO, indistinguishable from SIGBUS).
        """
        pid, addr, write = msg["pid"], msg["addr"], msg.get("write", True)
        value = bytes([msg.get("value", 0x5A)])
        if msg.get("method", "vm") == "mem":
            fd = os.open("/proc/%d/mem" % pid, os.O_RDWR if write else os.O_RDONLY)
            try:
                if write:
                    os.pwrite(fd, value, addr)
                else:
                    os.pread(fd, 1, addr)
            finally:
                os.close(fd)
            return {"ok": 0}
        buf = ctypes.create_string_buffer(value, 1)
        local = _Iovec(ctypes.cast(buf, ctypes.c_void_p), 1)
        remote = _Iovec(addr, 1)
        fn = libc.process_vm_writev if write else libc.process_vm_readv
        n = fn(pid, ctypes.byref(local), 1, ctypes.byref(remote), 1, 0)
        if n != 1:
            _raise_errno("process_vm_%s" % ("writev" if write else "readv"))
        return {"ok": 0}


HUGEPAGES_SYSFS = "/sys/kernel/mm/hugepages"


def _persistent(path):
    """What a write to ``path`` sets (pool.persistent: nr_hugepages without surplus pages)."""
    with open(path) as f:
        value = int(f.read().strip())
    if os.path.basename(path) == "nr_hugepages" and path.startswith(HUGEPAGES_SYSFS):
        with open(os.path.join(os.path.dirname(path), "surplus_hugepages")) as f:
            value -= int(f.read().strip())
    return value


def _give_back(rec):
    """pool.PoolKeeper.restore for one change: only if it still reads what the check left."""
    path, before, target, got = rec["path"], rec["before"], rec["target"], rec.get("got")
    now = _persistent(path)
    if now == before:
        return
    if rec.get("disowned"):
        ours = False
    elif got is not None:
        ours = now == got
    else:
        ours = min(before, target) <= now <= max(before, target)
    if not ours:
        sys.stderr.write("hgmviz guardian: %s was set to %d by someone else while the check "
                         "ran: left as it is\n" % (path, now))
        return
    for _ in range(40):
        with open(path, "w") as f:
            f.write(str(before))
        if _persistent(path) == before:
            return
        time.sleep(0.05)                                # pages still being freed
    sys.stderr.write("hgmviz guardian: %s reads %d after writing %d\n"
                     % (path, _persistent(path), before))


def _guardian():
    """Give back the changes announced on stdin (one JSON line each, see pool.Change) unless
    the driver disarms us first; stdin reaching end of file means the driver is gone."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        sys.stdout.write("armed\n")
        sys.stdout.flush()
    except OSError:                     # the driver died before it read this: keep going (stdin
        null = os.open(os.devnull, os.O_WRONLY)     # tells whether it changed anything), and
        os.dup2(null, 1)                            # let the exit's flush of "armed" succeed
        os.close(null)
    changes = {}
    for line in sys.stdin:
        line = line.strip()
        if line == "disarm":
            return 0
        try:
            rec = json.loads(line)
        except ValueError:              # a line cut short by the driver's death
            continue
        if isinstance(rec, dict) and "path" in rec:
            changes.pop(rec["path"], None)
            changes[rec["path"]] = rec
    if not changes:
        return 0
    time.sleep(0.5)                     # the driver's children let go of their pages
    for rec in reversed(list(changes.values())):
        try:
            _give_back(rec)
        except (OSError, ValueError, KeyError, TypeError) as e:
            sys.stderr.write("hgmviz guardian: could not restore %s: %s\n"
                             % (rec.get("path"), e))
    return 0


def main(argv):
    role = argv[1]
    if role == "guardian":
        return _guardian()
    signal.signal(signal.SIGINT, signal.SIG_IGN)        # the driver decides when we go
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)       # forked children are reaped by the kernel
    signal.signal(signal.SIGUSR1, lambda *_: None)      # interrupts a _ForkEventReader
    sock = socket.socket(fileno=int(argv[2]))
    Worker(sock).serve()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
