#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-only
"""Run the test VM's QEMU, and stop it, saying where and why, if it stalls.

Usage: supervise.py [OPTIONS] -- QEMU [ARG...]

QEMU runs with transparent huge pages off (PR_SET_THP_DISABLE: it asks for
them on all guest RAM, and each byte the guest touched in a sparse DIMM
would then cost 2 MiB of host memory).  Its console (stdout and stderr) is
copied to --log as it comes, with each line's arrival, in seconds since
the start, in --log with ".times" for ".log".  Its stdin is a pipe into
the serial console's multiplexer (QEMU's -serial mon:stdio), through
which a break and a SysRq key reach the guest; its human monitor listens
on the UNIX socket --monitor.

The guest's /init (tests/vm/init) prints "NVG-HEARTBEAT <uptime>" every
30 s, "NVG-STEP <name>" before each step and every line of a test section
as "NVG-LIVE <section>: <line>".  The watchdog stops the VM when its
console has printed nothing at all for --silence seconds (guest time has
stopped, or no CPU reaches user space), or nothing but heartbeats and
kernel lines for --stuck seconds (guest time runs, a test is stuck).
First it asks QEMU's monitor for every vCPU's registers, twice 5 s apart,
and for jiffies_64 (its address from --system-map: the guest runs with
nokaslr) each time, and on x86_64 for the local APICs; then the guest, by
a break and SysRq "l" and "w" on the serial console, for every CPU's
backtrace and the blocked tasks; last it injects an NMI, on which an
x86_64 guest booted with unknown_nmi_panic and panic_print=0x40 panics
with the backtraces of its CPUs.  All of that goes to --report; one line
saying what stalled goes to stderr and to --verdict.

Exit status: QEMU's; 124 after --timeout seconds (QEMU then gets SIGTERM,
and SIGKILL --kill-after seconds later); 3 when the watchdog stopped an
emulator stall (guest time stopped with every vCPU idle, waiting for an
interrupt), which tests/vm/run-vm.sh runs once more; 4 when it stopped any
other stall.  QEMU's peak RSS (KiB) goes to --rss.
"""
import argparse
import bisect
import ctypes
import os
import re
import select
import signal
import socket
import sys
import time

PR_SET_THP_DISABLE = 41
EXIT_TIMEOUT = 124
EXIT_EMULATOR_STALL = 3
EXIT_STALL = 4

HEARTBEAT = re.compile(r'NVG-HEARTBEAT (\d+)')
LIVE = re.compile(r'NVG-LIVE ([\w-]+): (.*)')
STEP = re.compile(r'NVG-STEP (\S+)')
RUN = re.compile(r'#\s+RUN\s+(\S+)')
RESULT = re.compile(r'(?:not )?ok \d+ .*')
KERNEL_LINE = re.compile(r'\[\s*\d+\.\d+\]')
ESCAPE = re.compile(r'\x1b\[[0-9;?]*[A-Za-z]|\r')
PROMPT = b'(qemu) '
# Why the watchdog stopped the VM: what ran out, and what a guest whose
# time still runs was doing
WHY = {
    'silence': ('of silence', 'no CPU reaches user space'),
    'stuck': ('of heartbeats and kernel lines only', 'a test is stuck'),
    'timeout': ('of running, its time limit', 'its job did not end in time'),
}
# Where an idle arm64 CPU waits for an interrupt (its WFI)
ARM64_IDLE = ('cpu_do_idle', 'arch_cpu_idle', 'default_idle_call')


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split('\n', 1)[0])
    p.add_argument('--arch', required=True)
    p.add_argument('--log', required=True)
    p.add_argument('--rss', required=True)
    p.add_argument('--report', required=True)
    p.add_argument('--verdict', required=True)
    p.add_argument('--monitor', required=True)
    p.add_argument('--system-map', required=True)
    p.add_argument('--timeout', type=float, required=True)
    p.add_argument('--kill-after', type=float, default=30)
    p.add_argument('--silence', type=float, default=180)
    p.add_argument('--stuck', type=float, default=900)
    p.add_argument('qemu', nargs=argparse.REMAINDER)
    args = p.parse_args()
    if args.qemu[:1] == ['--']:
        args.qemu = args.qemu[1:]
    if not args.qemu:
        p.error('no QEMU command')
    return args


class Symbols:
    """The kernel's text symbols, from its System.map"""

    def __init__(self, path):
        self.address = {}
        text = []
        try:
            with open(path) as f:
                for line in f:
                    addr, kind, name = line.split()[:3]
                    self.address[name] = int(addr, 16)
                    if kind in 'tTwW':
                        text.append((int(addr, 16), name))
        except OSError:
            pass
        text.sort()
        self.addrs = [addr for addr, _ in text]
        self.names = [name for _, name in text]

    def lookup(self, addr):
        """The symbol of the kernel image's text that holds @addr, and its
        start; None outside that text (a module's, say)"""
        i = bisect.bisect_right(self.addrs, addr) - 1
        end = self.address.get('_etext', self.addrs[-1] if self.addrs else 0)
        if i < 0 or addr >= end:
            return None, 0
        return self.names[i], self.addrs[i]

    def name(self, addr):
        return self.lookup(addr)[0]

    def describe(self, addr):
        name, start = self.lookup(addr)
        if name is None:
            return '%#x (outside the kernel image)' % addr
        return '%s+%#x' % (name, addr - start)


class Vm:
    """QEMU, its console and its monitor"""

    def __init__(self, args):
        self.args = args
        self.start = time.monotonic()
        self.log = open(args.log, 'wb')
        self.times = open(re.sub(r'\.log$', '', args.log) + '.times', 'w',
                          buffering=1)
        self.partial = b''
        self.last_output = self.start
        self.last_progress = self.start
        self.longest_silence = 0.0
        self.longest_unprogressed = 0.0
        self.heartbeat = None
        self.step = 'boot'
        self.section = None
        self.running = None
        self.last_result = None
        self.mon = None
        self.mon_buf = b''
        self.status = None
        self.rusage = None
        self.spawn()

    def spawn(self):
        stdin_r, self.stdin = os.pipe()
        self.out, out_w = os.pipe()
        self.pid = os.fork()
        if not self.pid:
            # A group of its own, which stop() signals whole
            os.setpgid(0, 0)
            os.dup2(stdin_r, 0)
            os.dup2(out_w, 1)
            os.dup2(out_w, 2)
            os.closerange(3, 256)
            try:
                os.execvp(self.args.qemu[0], self.args.qemu)
            finally:
                os._exit(127)
        os.close(stdin_r)
        os.close(out_w)

    def now(self):
        return time.monotonic() - self.start

    def take_line(self, raw, t):
        line = raw.decode('utf-8', 'replace').rstrip('\r')
        self.times.write('%.1f\t%s\n' % (t - self.start, line))
        m = HEARTBEAT.search(line)
        if m:
            self.heartbeat = (t, int(m.group(1)))
            return
        m = STEP.search(line)
        if m:
            self.step = m.group(1)
        m = LIVE.search(line)
        if m:
            self.section, text = m.group(1), m.group(2)
            r = RUN.match(text)
            if r:
                self.running = r.group(1)
            elif RESULT.match(text):
                self.last_result = text
        if KERNEL_LINE.match(line) or not line.strip():
            return
        self.longest_unprogressed = max(self.longest_unprogressed,
                                        t - self.last_progress)
        self.last_progress = t

    def take_output(self, data):
        t = time.monotonic()
        self.longest_silence = max(self.longest_silence, t - self.last_output)
        self.last_output = t
        self.log.write(data)
        self.log.flush()
        lines = (self.partial + data).split(b'\n')
        self.partial = lines.pop()
        for raw in lines:
            self.take_line(raw, t)

    def exited(self):
        if self.status is None:
            pid, status, usage = os.wait4(self.pid, os.WNOHANG)
            if pid == self.pid:
                self.status, self.rusage = status, usage
        return self.status is not None

    def pump(self, seconds, fd=None):
        """Copy the console for up to @seconds; True once @fd is readable"""
        end = time.monotonic() + seconds
        while True:
            left = end - time.monotonic()
            if left <= 0:
                return False
            fds = [self.out] if self.out is not None else []
            if fd is not None:
                fds.append(fd)
            if not fds:
                time.sleep(min(left, 1))
                continue
            ready, _, _ = select.select(fds, [], [], min(left, 1))
            if self.out in ready:
                data = os.read(self.out, 65536)
                if data:
                    self.take_output(data)
                else:
                    os.close(self.out)
                    self.out = None
            if fd is not None and fd in ready:
                return True
            if self.out is None and fd is None:
                return False

    # ---- The human monitor ----

    def monitor(self, command, timeout=15):
        """Run one monitor command; its output, or None without an answer"""
        if self.mon is None:
            try:
                self.mon = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self.mon.settimeout(5)
                self.mon.connect(self.args.monitor)
                self.mon.setblocking(False)
            except OSError:
                self.mon = None
                return None
            if self.read_prompt(timeout) is None:
                return None
        try:
            self.mon.sendall(command.encode() + b'\n')
        except OSError:
            return None
        out = self.read_prompt(timeout)
        if out is None:
            return None
        text = ESCAPE.sub('', out.decode('utf-8', 'replace'))
        # The monitor echoes the command first
        lines = text.split('\n')
        if lines and command in lines[0]:
            lines = lines[1:]
        return '\n'.join(lines).strip('\n')

    def read_prompt(self, timeout):
        end = time.monotonic() + timeout
        while PROMPT not in self.mon_buf:
            left = end - time.monotonic()
            if left <= 0 or not self.pump(left, self.mon.fileno()):
                return None
            try:
                data = self.mon.recv(65536)
            except BlockingIOError:
                continue
            except OSError:
                return None
            if not data:
                return None
            self.mon_buf += data
        out, self.mon_buf = self.mon_buf.split(PROMPT, 1)
        return out

    def sysrq(self, key):
        """A break on the serial console, then SysRq @key"""
        try:
            os.write(self.stdin, b'\x01b')
            self.pump(0.5)
            os.write(self.stdin, key.encode())
        except OSError:
            pass

    def signal(self, sig):
        try:
            os.killpg(self.pid, sig)
        except ProcessLookupError:
            pass

    def stop(self):
        """End QEMU (SIGTERM, then SIGKILL) and copy what it printed last"""
        end = time.monotonic() + self.args.kill_after
        if not self.exited():
            self.signal(signal.SIGTERM)
            while not self.exited() and time.monotonic() < end:
                self.pump(0.2)
            if not self.exited():
                self.signal(signal.SIGKILL)
        if self.status is None:
            _, self.status, self.rusage = os.wait4(self.pid, 0)
        # What is left in the pipe; a child that QEMU left behind may keep
        # it open, and gets SIGKILL
        end = time.monotonic() + self.args.kill_after
        while self.out is not None and time.monotonic() < end:
            self.pump(0.2)
        self.signal(signal.SIGKILL)
        self.longest_silence = max(self.longest_silence,
                                   time.monotonic() - self.last_output)
        if self.partial:
            self.take_output(b'\n')


def parse_registers(arch, text):
    """Per vCPU of "info registers -a": (pc, waiting for an interrupt?)"""
    cpus = []
    for block in re.split(r'^CPU#\d+', text or '', flags=re.M)[1:]:
        if arch == 'x86_64':
            pc = re.search(r'RIP=([0-9a-f]+)', block)
            flags = re.search(r'RFL=([0-9a-f]+)', block)
            halted = re.search(r'HLT=(\d)', block)
            if not (pc and flags and halted):
                continue
            # Halted with interrupts on: idle; with them off, dead
            waiting = halted.group(1) == '1' and int(flags.group(1), 16) & 0x200
            cpus.append((int(pc.group(1), 16), bool(waiting)))
        else:
            pc = re.search(r'\bPC=([0-9a-f]+)', block)
            if pc:
                cpus.append((int(pc.group(1), 16), None))
    return cpus


def read_jiffies(vm, symbols):
    addr = symbols.address.get('jiffies_64')
    if addr is None:
        return None
    out = vm.monitor('x /1gx %#x' % addr)
    m = re.search(r':\s*0x([0-9a-f]+)', out or '')
    return int(m.group(1), 16) if m else None


def diagnose(vm, symbols, why, seconds):
    """Ask the monitor and the guest what the stall is; the verdict line"""
    args = vm.args
    rep = open(args.report, 'w')
    where = 'step %s' % vm.step
    if vm.section:
        where += ', section %s' % vm.section
    if vm.running:
        where += ', test %s' % vm.running
    if vm.last_result:
        where += ' (last result: %s)' % vm.last_result
    if vm.heartbeat:
        where += ', last heartbeat at guest uptime %d s, %.0f s ago' % (
            vm.heartbeat[1], time.monotonic() - vm.heartbeat[0])
    rep.write('%s after %.0f s: %s\n' % (why, seconds, where))

    snaps = []
    for i in range(2):
        regs = vm.monitor('info registers -a')
        jiffies = read_jiffies(vm, symbols)
        rep.write('\n---- info registers -a (%d) ----\n%s\n' % (i + 1, regs))
        rep.write('jiffies_64: %s\n' % jiffies)
        snaps.append((regs, jiffies))
        if regs is None:
            break
        if i == 0:
            vm.pump(5)
    cpus = parse_registers(args.arch, snaps[0][0])
    later = parse_registers(args.arch, snaps[-1][0])
    if args.arch == 'x86_64':
        for cpu in range(len(cpus)):
            rep.write('\n---- info lapic %d ----\n%s\n' %
                      (cpu, vm.monitor('info lapic %d' % cpu)))

    mark = vm.log.tell()
    vm.sysrq('l')
    vm.pump(15)
    vm.sysrq('w')
    vm.pump(15)
    rep.write('\n---- nmi ----\n%s\n' % vm.monitor('nmi'))
    vm.pump(20)
    vm.log.flush()
    with open(args.log, 'rb') as f:
        f.seek(mark)
        rep.write('\n---- the guest after SysRq l, w and the NMI ----\n')
        rep.write(f.read().decode('utf-8', 'replace'))

    if snaps[0][0] is None:
        verdict = "QEMU's monitor did not answer: the emulator itself is stuck"
        status = EXIT_STALL
    else:
        descr, idle = [], True
        for n, (pc, waiting) in enumerate(cpus):
            if waiting is None:
                waiting = (symbols.name(pc) in ARM64_IDLE and
                           n < len(later) and later[n][0] == pc)
            idle = idle and waiting
            descr.append('CPU%d %s %s' % (n, 'idle at' if waiting else 'at',
                                          symbols.describe(pc)))
        j0, j1 = snaps[0][1], snaps[-1][1]
        if j0 is None or j1 is None:
            clock = 'jiffies unreadable'
            stopped = False
        else:
            clock = 'jiffies +%d in 5 s' % (j1 - j0)
            stopped = j1 == j0
        if why == 'silence' and stopped and idle and cpus:
            verdict = 'guest time stopped with every vCPU idle, waiting for an interrupt: an emulator stall'
            status = EXIT_EMULATOR_STALL
        elif stopped:
            verdict = 'guest time stopped with a vCPU busy: the guest is stuck'
            status = EXIT_STALL
        else:
            verdict = 'guest time runs: %s' % WHY[why][1]
            status = EXIT_STALL
        verdict += ' (%s; %s)' % (clock, ', '.join(descr) or 'no vCPU state')
    line = 'watchdog: the %s VM stopped after %.0f s %s, in %s: %s' % (
        args.arch, seconds, WHY[why][0], where, verdict)
    rep.write('\n%s\n' % line)
    rep.close()
    with open(args.verdict, 'w') as f:
        f.write(line + '\n')
    return line, status


def main():
    args = parse_args()
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0):
        sys.exit('prctl(PR_SET_THP_DISABLE): ' +
                 os.strerror(ctypes.get_errno()))
    for path in (args.verdict, args.report):
        if os.path.exists(path):
            os.unlink(path)
    symbols = Symbols(args.system_map)
    vm = Vm(args)

    # QEMU runs in a group of its own: take it along when stopped
    def end(sig, frame):
        vm.signal(signal.SIGKILL)
        sys.exit(128 + sig)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, end)
    status = None
    while not vm.exited() and vm.out is not None:
        vm.pump(1)
        now = time.monotonic()
        elapsed = now - vm.start
        silent = now - vm.last_output
        unprogressed = now - vm.last_progress
        if elapsed >= args.timeout:
            line, _ = diagnose(vm, symbols, 'timeout', elapsed)
            print(line.replace('watchdog:', 'timeout:', 1), file=sys.stderr)
            status = EXIT_TIMEOUT
            break
        if silent >= args.silence:
            line, status = diagnose(vm, symbols, 'silence', silent)
            print(line, file=sys.stderr)
            break
        if unprogressed >= args.stuck:
            line, status = diagnose(vm, symbols, 'stuck', unprogressed)
            print(line, file=sys.stderr)
            break
    vm.stop()
    with open(args.rss, 'w') as f:
        f.write('%d\n' % vm.rusage.ru_maxrss)
    print('console: longest silence %.0f s, longest without a line of user '
          'space %.0f s, %.0f s in all' %
          (vm.longest_silence, vm.longest_unprogressed, vm.now()),
          file=sys.stderr)
    if status is None:
        status = os.waitstatus_to_exitcode(vm.status) & 0xff
    sys.exit(status)


if __name__ == '__main__':
    main()
