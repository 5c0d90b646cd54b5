// QEMU harness: boots a rescue image's kernel and initrd as a throw-away virtual machine and
// reads its serial console, so tests can watch a real ReaR rescue system come up, run the
// rear-update boot hook against a server on this machine's loopback, and start `rear recover`.
//
// How it is isolated and bounded:
//   - TCG (no KVM on these machines), ONE virtual CPU: with two, TCG on two shared host cores
//     once stalled in udev workers with soft lockups for minutes; no disk at all (nothing a
//     recovery could touch), -no-reboot (a guest reboot ends QEMU), no display, no monitor;
//   - QEMU's user-mode network with restrict=on: the guest gets an address from QEMU's own
//     DHCP server (10.0.2.15) and reaches NOTHING, neither this machine nor any other, except
//     the one forwarded address: guest connections to GUEST_SERVER (10.0.2.100:8080) are each
//     handed to a fresh `socat - TCP:127.0.0.1:PORT`, i.e. to the test's server on loopback
//     (guestfwd ... cmd:). A PORT where nothing listens is a server that is down: the guest's
//     connection is accepted and closed at once;
//   - the serial console is QEMU's stdio: the harness keeps everything it printed, can type
//     into it, and on failure shows its last lines;
//   - the VM gets a MAC, and optionally a DMI system UUID and serial (SMBIOS type 1), that the
//     test chooses: none of them is this machine's;
//   - close() kills QEMU (SIGTERM, SIGKILL 5 s later); the harness also kills every VM still
//     running when the test process exits, and a test's timeout ends it the same way.
// Timing, measured here (two VMs at once on two cores): about 20 s of kernel and initrd
// unpacking before systemd starts, 70-100 s from power-on to ReaR's "Running 90-rear-update.sh",
// 105-130 s to an installed bundle.

import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';

/** Where the guest finds the server: forwarded to 127.0.0.1:PORT on this machine. */
export const GUEST_SERVER_IP = '10.0.2.100';
export const GUEST_SERVER_PORT = 8080;
export const GUEST_SERVER_URL = `http://${GUEST_SERVER_IP}:${GUEST_SERVER_PORT}`;

export interface VmOptions {
  /** A name for messages. */
  readonly name: string;
  readonly kernel: string;
  readonly initrd: string;
  /** The kernel command line. */
  readonly append: string;
  /** The virtual NIC's MAC address. */
  readonly mac: string;
  /** SMBIOS type 1 system UUID and serial (QEMU's default: none). */
  readonly uuid?: string;
  readonly serial?: string;
  /** The port on 127.0.0.1 that the guest's GUEST_SERVER_URL reaches. */
  readonly serverPort: number;
  /** Guest memory; default 2048 MiB (the rescue system lives in RAM: a 120 MB initrd unpacks to ~400 MB). */
  readonly memoryMiB?: number;
  /** Raw disk images attached read-only as virtio disks (/dev/vda, /dev/vdb, ...). */
  readonly drives?: readonly string[];
}

export interface Vm {
  readonly name: string;
  /** Everything the console printed so far (CR removed). */
  console(): string;
  /** The last n lines of the console. */
  tail(n?: number): string;
  /**
   * Waits until the console, from character `from` on (default: the start), matches `re`;
   * throws with the console's last lines when `timeoutMs` passes or QEMU ends first. The
   * console arrives a few characters at a time: a pattern that captures must end with what
   * follows the capture (a newline), or it may match half a line.
   */
  waitFor(re: RegExp, timeoutMs: number, what: string, from?: number): Promise<RegExpExecArray>;
  /** Types into the serial console. */
  type(text: string): void;
  /** Seconds since QEMU was started. */
  elapsed(): number;
  close(): Promise<void>;
}

const running = new Set<ChildProcess>();
process.on('exit', () => {
  for (const p of running) p.kill('SIGKILL');
});

const QEMU = 'qemu-system-x86_64';

/** Starts the VM. Needs qemu-system-x86 and socat (scripts/ensure-system-deps.sh). */
export function startVm(o: VmOptions): Vm {
  for (const f of [o.kernel, o.initrd]) if (!existsSync(f)) throw new Error(`qemu-vm: no ${f}`);
  if (!Number.isInteger(o.serverPort) || o.serverPort <= 0 || o.serverPort > 65535) throw new Error(`qemu-vm: bad port ${o.serverPort}`);
  if (!/^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/.test(o.mac)) throw new Error(`qemu-vm: bad MAC ${o.mac}`);
  // QEMU option values: a comma inside a value is written twice.
  const q = (s: string): string => s.replaceAll(',', ',,');
  const smbios = [o.uuid ? `uuid=${q(o.uuid)}` : '', o.serial ? `serial=${q(o.serial)}` : ''].filter(Boolean).join(',');
  const nic = [
    'user', 'model=virtio-net-pci', `mac=${o.mac}`, 'restrict=on',
    // socat's own messages would reach the guest (the command's output is the connection).
    `guestfwd=tcp:${GUEST_SERVER_IP}:${GUEST_SERVER_PORT}-cmd:socat -lf /dev/null - TCP:127.0.0.1:${o.serverPort}`,
  ].join(',');
  const args = [
    '-machine', 'pc', '-accel', 'tcg', '-smp', '1', '-m', String(o.memoryMiB ?? 2048),
    '-display', 'none', '-monitor', 'none', '-serial', 'stdio', '-no-reboot',
    '-kernel', o.kernel, '-initrd', o.initrd, '-append', o.append,
    '-nic', nic,
    ...(smbios ? ['-smbios', `type=1,${smbios}`] : []),
    ...(o.drives ?? []).flatMap((f) => ['-drive', `file=${f},format=raw,if=virtio,readonly=on`]),
  ];
  const started = Date.now();
  const p = spawn(QEMU, args, { stdio: ['pipe', 'pipe', 'pipe'] });
  running.add(p);
  let out = '';
  let ended: string | null = null;
  const waiters = new Set<() => void>();
  const wake = (): void => {
    for (const w of [...waiters]) w();
  };
  p.stdout!.on('data', (d: Buffer) => {
    out += d.toString('utf8').replaceAll('\r', '');
    wake();
  });
  let err = '';
  p.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  p.stdin!.on('error', () => {});
  const exited = new Promise<void>((res) => {
    p.on('close', (code, signal) => {
      running.delete(p);
      ended = `QEMU ended (${code ?? signal})${err ? `: ${err.trim()}` : ''}`;
      wake();
      res();
    });
    p.on('error', (e) => {
      ended = `QEMU failed to start: ${e.message}`;
      wake();
      res();
    });
  });
  const tail = (n = 60): string => out.split('\n').slice(-n).join('\n');
  return {
    name: o.name,
    console: () => out,
    tail,
    elapsed: () => (Date.now() - started) / 1000,
    type(text) {
      p.stdin!.write(text);
    },
    waitFor(re, timeoutMs, what, from = 0) {
      const flags = re.flags.replace('g', '');
      return new Promise((resolve, reject) => {
        const check = (): boolean => {
          const m = new RegExp(re.source, flags).exec(out.slice(from));
          if (m) {
            done();
            resolve(m);
            return true;
          }
          if (ended) {
            done();
            reject(new Error(`${o.name}: ${ended} before the console showed ${what} (${re}) after ${((Date.now() - started) / 1000).toFixed(0)} s; its last lines:\n${tail()}`));
            return true;
          }
          return false;
        };
        const timer = setTimeout(() => {
          done();
          reject(new Error(`${o.name}: the console did not show ${what} (${re}) within ${timeoutMs / 1000} s (${((Date.now() - started) / 1000).toFixed(0)} s since power-on); its last lines:\n${tail()}`));
        }, timeoutMs);
        const done = (): void => {
          clearTimeout(timer);
          waiters.delete(w);
        };
        const w = (): void => void check();
        if (!check()) waiters.add(w);
      });
    },
    async close() {
      if (ended) return;
      p.kill('SIGTERM');
      const t = setTimeout(() => p.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(t);
    },
  };
}
