// The product server as a target of bench/serve.ts: `rear-update serve` (dist/rear-update.cjs,
// default settings but no per-address connection cap: wrk's clients share one address) in a
// child process, seeded with one host per simulated client whose bundle carries that client's
// 1 MiB file, downloaded at /api/v1/hosts/h<i>/bundle with an admin token: every answer sealed
// for its request, as in production.

import { spawn } from 'node:child_process';
import { copyFileSync, mkdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { pack } from '../src/cli/commands/pack.ts';
import { freePort, pidOf, stopProcess, track, waitUntilServing, type RunningTarget, type ServeContext, type ServeTarget, type TargetFactory } from './serve.ts';

const CLI = join(import.meta.dirname, '..', 'dist', 'rear-update.cjs');

async function seed(ctx: ServeContext, base: string, token: string): Promise<void> {
  const tree = join(ctx.workDir, 'ru-tree');
  const one = async (i: number): Promise<void> => {
    const root = join(tree, `h${i}`);
    mkdirSync(join(root, 'var/lib/rear/recovery'), { recursive: true });
    copyFileSync(join(ctx.wwwDir, 'files', `c${i}.tar.gz`), join(root, 'var/lib/rear/recovery', `c${i}.bin`));
    const file = join(tree, `h${i}.tar.gz`);
    await pack({ root, path: ['var/lib/rear/recovery'], host: `h${i}`, created: '2026-01-01T00:00:00Z', output: file });
    const res = await fetch(`${base}/api/v1/hosts/h${i}/versions`, {
      method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/gzip', 'content-length': String(statSync(file).size) }, body: readFileSync(file),
    });
    if (res.status !== 201) throw new Error(`seeding h${i}: HTTP ${res.status} ${await res.text()}`);
    rmSync(root, { recursive: true, force: true });
    rmSync(file, { force: true });
  };
  for (let i = 0; i < ctx.clients; i += 4) await Promise.all([0, 1, 2, 3].filter((k) => i + k < ctx.clients).map((k) => one(i + k)));
}

async function startProduct(ctx: ServeContext): Promise<RunningTarget> {
  const port = await freePort();
  const data = join(ctx.workDir, 'ru-data');
  // The whole simulated fleet comes from one address: lift the per-address connection cap.
  const child = track(spawn(process.execPath, [CLI, 'serve', '--data', data, '--listen', `127.0.0.1:${port}`, '--log-level', 'warn', '--max-connections-per-address', '0'], { stdio: ['ignore', 'ignore', 'pipe'] }));
  let err = '';
  child.stderr?.on('data', (d: Buffer) => (err += d.toString()));
  const base = `http://127.0.0.1:${port}`;
  for (let i = 0; i < 200; i++) {
    if (await fetch(`${base}/healthz`).then((r) => r.ok, () => false)) break;
    await sleep(50);
  }
  const token = readFileSync(join(data, 'admin.token'), 'utf8').trim();
  await seed(ctx, base, token);
  const target: ServeTarget = {
    name: 'rear-update serve', baseUrl: base, pathFor: (i) => `/api/v1/hosts/h${i}/bundle`, headers: { Authorization: `Bearer ${token}` }, pid: pidOf(child),
  };
  await waitUntilServing(target, child, () => err);
  return { target, stop: () => stopProcess(child) };
}

export const productTarget = (): TargetFactory => ({ name: 'rear-update serve', start: startProduct });
