// What decides a rescue image's networking, read from this machine: its links and addresses
// (`ip -d -j addr show`: -d adds the link kinds and parent devices), ReaR's site.conf and
// local.conf below the root, and the names of running processes (/proc/PID/comm). Judged by
// src/core/rescue-network.ts.

import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { IpLink } from '../../core/rescue-network.ts';

export interface NetworkProbe {
  /** null when `ip` could not be run or said something unreadable; then `error` says why. */
  readonly links: readonly IpLink[] | null;
  readonly error: string | null;
  readonly confFiles: readonly { readonly file: string; readonly text: string }[];
  readonly processNames: readonly string[];
}

const CONF_FILES = ['etc/rear/site.conf', 'etc/rear/local.conf'];

function readLinks(ip: string): { links: IpLink[] | null; error: string | null } {
  try {
    const json = execFileSync(ip, ['-d', '-j', 'addr', 'show'], { encoding: 'utf8', timeout: 5000, stdio: ['ignore', 'pipe', 'pipe'] });
    const links = JSON.parse(json) as unknown;
    if (!Array.isArray(links)) return { links: null, error: `${ip} -d -j addr show did not print a JSON array` };
    return { links: links as IpLink[], error: null };
  } catch (e) {
    return { links: null, error: `${ip} -d -j addr show: ${(e as Error).message.split('\n')[0]}` };
  }
}

function processNames(proc: string): string[] {
  const names: string[] = [];
  let pids: string[] = [];
  try {
    pids = readdirSync(proc).filter((n) => /^\d+$/.test(n));
  } catch {
    return names;
  }
  for (const pid of pids) {
    try {
      names.push(readFileSync(join(proc, pid, 'comm'), 'utf8').trim());
    } catch {
      // gone meanwhile, or not ours to read
    }
  }
  return names;
}

/** `ip` and `proc` are seams for tests; the configuration files are read below `root`. */
export function probeNetwork(root: string, opts: { ip?: string; proc?: string } = {}): NetworkProbe {
  const { links, error } = readLinks(opts.ip ?? 'ip');
  const confFiles: { file: string; text: string }[] = [];
  for (const rel of CONF_FILES) {
    try {
      confFiles.push({ file: `/${rel}`, text: readFileSync(join(root, rel), 'utf8') });
    } catch {
      // absent: nothing set there
    }
  }
  return { links, error, confFiles, processNames: processNames(opts.proc ?? '/proc') };
}
