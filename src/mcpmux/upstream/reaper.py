"""A tiny shim between the gateway and each stdio child: children die with the gateway.

After ``SIGKILL`` of the gateway, stdio servers that ignore stdin EOF (and whatever
they had started) kept running forever: nothing tells a child that its parent died.
The gateway therefore starts ``python -I -S reaper.py --parent PID -- COMMAND ARGS...``
(by file path, so nothing but the standard library is imported; about 20 ms). The shim:

* asks the kernel for a signal when its parent dies (``PR_SET_PDEATHSIG``), then checks
  ``getppid()`` to close the race of a parent that died before that;
* becomes a child subreaper (``PR_SET_CHILD_SUBREAPER``): descendants whose parents exit
  are re-parented to it rather than to init, so it can still find them;
* forks and execs the command in its own process group (the gateway made the shim a
  session and group leader), stdin/stdout/stderr inherited: it never touches the data;
* a SIGTERM/SIGINT/SIGHUP sent by anyone but the gateway is forwarded to the command
  (the gateway signals the whole group itself, so the command gets it exactly once);
* when the command exits, or the gateway dies, it SIGKILLs every descendant and every
  member of its group, and exits with the command's status (or dies of its signal).

Linux only (prctl); the gateway starts commands directly elsewhere.
"""

from __future__ import annotations

import os
import signal
import sys

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
#: The signal the kernel sends the shim when the gateway dies; the gateway sends it too,
#: when a command outlives SIGTERM's grace: kill everything, then exit.
PARENT_DIED = signal.SIGUSR1
_FORWARD = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT)
_WAITED = {signal.SIGCHLD, PARENT_DIED, *_FORWARD}


def _prctl(option: int, arg: int) -> None:
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(option, arg, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), f"prctl({option}) failed")


def _descendants_and_group(me: int) -> set[int]:
    """Every live descendant of ``me`` and every member of its process group."""
    parent: dict[int, int] = {}
    group: set[int] = set()
    pgid = os.getpgid(0)
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                fields = fh.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        pid = int(entry)
        parent[pid] = int(fields[1])
        if int(fields[2]) == pgid:
            group.add(pid)
    children: dict[int, list[int]] = {}
    for pid, ppid in parent.items():
        children.setdefault(ppid, []).append(pid)
    # Walk down from the shim and from every group member: a member's children may
    # have left the group (setsid) while their parent still lives.
    seen = {me, *group}
    todo = list(seen)
    while todo:
        for kid in children.get(todo.pop(), ()):
            if kid not in seen:
                seen.add(kid)
                todo.append(kid)
    seen.discard(me)
    return seen


def _kill_all(me: int, child: int) -> int | None:
    """SIGKILL everything below and beside the shim, until nothing is left (a process
    may fork while we look); zombies re-parented to us are reaped on the way. Returns
    the command's wait status if it was reaped here."""
    status = None
    for _ in range(50):
        victims = _descendants_and_group(me)
        for pid in victims:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        got = _reap(child)
        status = got if got is not None else status
        if not victims or all(_is_zombie(p) for p in victims):
            break
    return status


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rsplit(b")", 1)[1].split()[0] in (b"Z", b"X")
    except OSError:
        return True


def _reap(child: int = -1) -> int | None:
    """Reap every exited child; the wait status of ``child`` if it was among them."""
    status = None
    while True:
        try:
            pid, st = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return status
        if pid == 0:
            return status
        if pid == child:
            status = st


def _exit_like(status: int) -> None:
    code = os.waitstatus_to_exitcode(status)
    if code < 0:  # killed by a signal: die of the same one, so the gateway sees it
        signal.pthread_sigmask(signal.SIG_SETMASK, set())
        try:
            signal.signal(-code, signal.SIG_DFL)
        except (OSError, ValueError):  # SIGKILL, SIGSTOP: always default
            pass
        os.kill(os.getpid(), -code)
    os._exit(code & 0xFF if code >= 0 else 1)


def main(argv: list[str]) -> None:
    if len(argv) < 4 or argv[0] != "--parent" or argv[2] != "--":
        sys.stderr.write("usage: reaper.py --parent PID -- COMMAND [ARGS...]\n")
        os._exit(2)
    parent, cmd = int(argv[1]), argv[3:]
    me = os.getpid()
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, _WAITED)
    _prctl(PR_SET_CHILD_SUBREAPER, 1)
    _prctl(PR_SET_PDEATHSIG, PARENT_DIED)
    if os.getppid() != parent:  # the gateway died before we asked to be told
        os._exit(1)
    child = os.fork()
    if child == 0:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        try:
            os.execvp(cmd[0], cmd)
        except OSError as exc:
            os.write(2, f"mcpmux reaper: cannot run {cmd[0]}: {exc.strerror}\n".encode())
        os._exit(127)
    # Our copies of the pipes go: the gateway must see EOF when the command closes its
    # stdout (a wedged server), exactly as without the shim.
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    os.close(devnull)
    while True:
        info = signal.sigwaitinfo(_WAITED)
        if info.si_signo == signal.SIGCHLD:
            status = _reap(child)
            if status is not None:
                _kill_all(me, child)
                _exit_like(status)
        elif info.si_signo == PARENT_DIED or os.getppid() != parent:  # told, or orphaned
            status = _kill_all(me, child)
            if status is not None:
                _exit_like(status)  # as the command ended: killed (-9), as a SIGKILL would
            os._exit(1)
        elif info.si_pid != parent:  # the gateway signals the whole group itself
            try:
                os.kill(child, info.si_signo)
            except OSError:
                pass


if __name__ == "__main__":
    main(sys.argv[1:])
