// The product server as a target of bench/serve.ts: `rear-update serve` (dist/rear-update.cjs,
// default settings but no per-address connection cap: wrk's clients share one address) in a
// child process, seeded with one host per simulated client whose bundle carries that client's
// 1 MiB file, downloaded at /api/v1/hosts/h<i>/bundle with an admin token: every answer sealed
// for its request, as in production.

import { spawn } from 'node:child_process';
import { copyFileSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { pack } from '../src/cli/commands/pack.ts';
import { freePort, pidOf, stopProcess, track, waitUntilServing, type RunningTarget, type ServeContext, type ServeTarget, type TargetFactory } from './serve.ts';

const CLI = join(import.meta.dirname, '..', 'dist', 'rear-update.cjs');

/** Seeds one client after another, four at a time (the server stores each publish in one transaction). */
async function eachClient(clients: number, one: (i: number) => Promise<void>): Promise<void> {
  for (let i = 0; i < clients; i += 4) await Promise.all([0, 1, 2, 3].filter((k) => i + k < clients).map((k) => one(i + k)));
}

/** Host h<i> with files/c<i>.tar.gz as its configuration, published through the API. */
export async function seed(ctx: ServeContext, base: string, token: string): Promise<void> {
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
  await eachClient(ctx.clients, one);
}

/**
 * Layers (issue 12): ONE 100 MiB layer of class "fleet" (the first 100 MiB of client 0's
 * file), and per client a host of that class whose own configuration is the last 1 MiB of its
 * file: every answer is a composed bundle (layer member + host member, sealed per request).
 */
async function seedLayered(ctx: ServeContext, base: string, token: string): Promise<void> {
  const tree = join(ctx.workDir, 'ru-tree');
  const layerBytes = ctx.fileBytes - (1 << 20);
  const lroot = join(tree, 'layer');
  mkdirSync(join(lroot, 'usr/lib/firmware/fleet'), { recursive: true });
  const src = readFileSync(join(ctx.wwwDir, 'files', 'c0.tar.gz'));
  writeFileSync(join(lroot, 'usr/lib/firmware/fleet/blob.bin'), src.subarray(0, layerBytes));
  const lfile = join(tree, 'layer.tar.gz');
  await pack({ root: lroot, path: ['usr/lib/firmware/fleet'], layer: 'firmware', class: 'fleet', created: '2026-01-01T00:00:00Z', output: lfile });
  const lr = await fetch(`${base}/api/v1/layers/fleet/firmware/versions?priority=10`, {
    method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/gzip', 'content-length': String(statSync(lfile).size) }, body: readFileSync(lfile),
  });
  if (lr.status !== 201) throw new Error(`seeding the layer: HTTP ${lr.status} ${await lr.text()}`);
  rmSync(lroot, { recursive: true, force: true });
  const one = async (i: number): Promise<void> => {
    const add = await fetch(`${base}/api/v1/hosts`, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: JSON.stringify({ id: `h${i}`, class: 'fleet' }) });
    if (add.status !== 201) throw new Error(`adding h${i}: HTTP ${add.status} ${await add.text()}`);
    const root = join(tree, `h${i}`);
    mkdirSync(join(root, 'var/lib/rear/recovery'), { recursive: true });
    const own = readFileSync(join(ctx.wwwDir, 'files', `c${i}.tar.gz`));
    writeFileSync(join(root, 'var/lib/rear/recovery', `c${i}.bin`), own.subarray(own.length - (1 << 20)));
    const file = join(tree, `h${i}.tar.gz`);
    await pack({ root, path: ['var/lib/rear/recovery'], host: `h${i}`, created: '2026-01-01T00:00:00Z', output: file });
    const res = await fetch(`${base}/api/v1/hosts/h${i}/versions`, {
      method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/gzip', 'content-length': String(statSync(file).size) }, body: readFileSync(file),
    });
    if (res.status !== 201) throw new Error(`seeding h${i}: HTTP ${res.status} ${await res.text()}`);
    rmSync(root, { recursive: true, force: true });
    rmSync(file, { force: true });
  };
  await eachClient(ctx.clients, one);
}

async function startProduct(ctx: ServeContext, layered = false): Promise<RunningTarget> {
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
  await (layered ? seedLayered(ctx, base, token) : seed(ctx, base, token));
  const target: ServeTarget = {
    name: 'rear-update serve', baseUrl: base, pathFor: (i) => `/api/v1/hosts/h${i}/bundle`, headers: { Authorization: `Bearer ${token}` }, pid: pidOf(child),
  };
  await waitUntilServing(target, child, () => err);
  return { target, stop: () => stopProcess(child) };
}

export const productTarget = (): TargetFactory => ({ name: 'rear-update serve', start: (ctx) => startProduct(ctx) });

/** The product server serving composed bundles: a shared 100 MiB layer plus each host's 1 MiB. */
export const layeredProductTarget = (): TargetFactory => ({ name: 'rear-update serve (composed)', start: (ctx) => startProduct(ctx, true) });
