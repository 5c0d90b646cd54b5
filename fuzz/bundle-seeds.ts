// The valid bundles the fuzzer starts from, made by the real code: `pack` (signed, signed with
// wide owned paths, overlay, unsigned), GNU tar (plain archives in GNU and POSIX format, with
// a hard link, long and non-ASCII names and a `./` member), and a composed bundle as the server
// serves it (format 2: two layers, a shadowed member, the host on top; added with layers, so case
// numbers of runs before it name other inputs now). Every byte is deterministic (fixed
// times, sorted names, fixed keys derived from a constant), so a case number reproduces the
// same bytes in any later run.

import { execFileSync } from 'node:child_process';
import { createHash, createPrivateKey } from 'node:crypto';
import { chmodSync, chownSync, linkSync, mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gunzipSync, gzipSync } from 'node:zlib';
import { pack } from '../src/cli/commands/pack.ts';
import { compose } from '../src/core/compose.ts';
import { decodeManifest, encodeManifest, type Manifest } from '../src/core/manifest.ts';
import { bufferPayload, concatPayload, metaTarBytes, payloadMember, seal, sealedBytes, type PayloadSource } from '../src/adapters/tar/served-bundle.ts';
import { MANIFEST_MEMBER } from '../src/core/paths.ts';
import { parsePrivateKey, type PrivateKey } from '../src/core/signature.ts';
import type { Keys, SeedBundle } from './bundle-mutations.ts';
import { nameOf, splitTar } from './tar-blocks.ts';

const CREATED = '2024-01-02T03:04:05Z';
const EPOCH = Date.parse(CREATED) / 1000;

/** An ed25519 key from a fixed 32-byte seed (PKCS#8 prefix + seed), so runs agree on every signature. */
function fixedKey(label: string): { key: PrivateKey; pem: string; pub: string } {
  const seed = createHash('sha256').update(`rear-update fuzz key ${label}`).digest();
  const der = Buffer.concat([Buffer.from('302e020100300506032b657004220420', 'hex'), seed]);
  const obj = createPrivateKey({ key: der, format: 'der', type: 'pkcs8' });
  const pem = obj.export({ format: 'pem', type: 'pkcs8' }).toString();
  const key = parsePrivateKey(pem, label);
  return { key, pem, pub: key.publicKey.key.export({ format: 'pem', type: 'spki' }).toString() };
}

const text = (n: number, lines: number): string =>
  Array.from({ length: lines }, (_, i) => `# line ${i} of ${n}: ${((i * 2654435761 + n) >>> 0).toString(36)} ${'xyz'.repeat((i * 7 + n) % 11)}\n`).join('');

/** A small ReaR-like tree: files, a 0600 file, a non-root owner, symlinks (absolute, relative), long and non-ASCII names. */
function makeSource(src: string): void {
  rmSync(src, { recursive: true, force: true });
  const files: Record<string, string> = {
    'etc/rear/local.conf': `OUTPUT=ISO\nBACKUP=NETFS\n${text(1, 30)}`,
    'etc/rear/conf.d/a.conf': text(2, 10),
    'etc/rear/conf.d/empty.conf': '',
    'etc/rear/secret.conf': 'SSH_ROOT_PASSWORD=x\n',
    [`etc/rear/${'long-name-'.repeat(12)}.conf`]: 'LONG=1\n',
    'etc/rear/caf\u00e9.conf': 'UNICODE=1\n',
    'var/lib/rear/layout/disklayout.conf': text(3, 300),
    'var/lib/rear/recovery/bootdisk': '/dev/sda\n',
    'opt/hl/a': 'hard linked\n',
  };
  for (const [p, c] of Object.entries(files)) {
    mkdirSync(join(src, p, '..'), { recursive: true });
    writeFileSync(join(src, p), c);
    chmodSync(join(src, p), 0o644);
  }
  chmodSync(join(src, 'etc/rear/secret.conf'), 0o600);
  chownSync(join(src, 'etc/rear/conf.d/a.conf'), 1000, 1000);
  symlinkSync('local.conf', join(src, 'etc/rear/site.conf'));
  symlinkSync('/usr/share/zoneinfo/UTC', join(src, 'etc/localtime'));
  linkSync(join(src, 'opt/hl/a'), join(src, 'opt/hl/b'));
  for (const d of ['', 'etc', 'etc/rear', 'etc/rear/conf.d', 'var', 'var/lib', 'var/lib/rear', 'var/lib/rear/layout', 'var/lib/rear/recovery', 'opt', 'opt/hl']) chmodSync(join(src, d), 0o755);
  chmodSync(join(src, 'var/lib/rear/recovery'), 0o700);
}

function gnuTar(src: string, format: 'gnu' | 'posix'): Buffer {
  const args = ['-c', '-f', '-', '-C', src, '--sort=name', `--mtime=@${EPOCH}`, '--numeric-owner', `--format=${format}`];
  if (format === 'posix') args.push('--pax-option=delete=atime,delete=ctime,exthdr.name=%d/PaxHeaders/%f');
  args.push('.');
  return execFileSync('tar', args, { maxBuffer: 64 << 20 });
}

export interface Seeds {
  readonly seeds: SeedBundle[];
  readonly keys: Keys;
  /** The trusted public key file apply gets with --pubkey. */
  readonly trustedPub: string;
}

export async function makeSeeds(dir: string): Promise<Seeds> {
  mkdirSync(dir, { recursive: true });
  const trusted = fixedKey('trusted');
  const untrusted = fixedKey('untrusted');
  const keyFile = join(dir, 'trusted.key');
  const trustedPub = join(dir, 'trusted.pub');
  writeFileSync(keyFile, trusted.pem, { mode: 0o600 });
  writeFileSync(trustedPub, trusted.pub);
  const src = join(dir, 'src');
  makeSource(src);
  const all = ['etc/rear', 'etc/localtime', 'var/lib/rear/layout', 'var/lib/rear/recovery'];
  const packed = async (name: string, o: { key?: string; paths?: string[]; overlay?: boolean }): Promise<SeedBundle> => {
    const out = join(dir, `${name}.tar.gz`);
    await pack({ root: src, path: o.paths ?? all, host: 'fz1', class: 'fuzz', version: 7, created: CREATED, output: out, ...(o.key ? { key: o.key } : {}), ...(o.overlay ? { overlay: true } : {}) });
    return seedOf(name, readFileSync(out));
  };
  const seeds = [
    await packed('signed', { key: keyFile }),
    await packed('signed-wide', { key: keyFile, paths: ['etc', 'var/lib'] }),
    await packed('signed-overlay', { key: keyFile, overlay: true }),
    await packed('unsigned', {}),
    seedOf('gnu-tar', gzipSync(gnuTar(src, 'gnu'), { level: 6 })),
    seedOf('posix-tar', gzipSync(gnuTar(src, 'posix'), { level: 6 })),
    await composedSeed(dir, src, trusted.key),
  ];
  return { seeds, keys: { trusted: trusted.key, untrusted: untrusted.key }, trustedPub };
}

function seedOf(name: string, bytes: Buffer): SeedBundle {
  const tar = gunzipSync(bytes);
  const first = splitTar(tar).records[0];
  let manifest = null;
  if (first && nameOf(first.header) === MANIFEST_MEMBER) {
    const size = parseInt(first.header.subarray(124, 136).toString('latin1'), 8);
    manifest = decodeManifest(first.data.subarray(0, size));
  }
  return { name, bytes, tar, manifest };
}

/**
 * A bundle as the server composes it for a host of a class with layers (bundle format 2): two
 * layers of class "fuzz" that both carry etc/udev/rules.d/70-fz.rules (the later one wins, the
 * earlier is a shadowed member), the host's own configuration on top; each layer's payload
 * member without tar end blocks, sealed with the trusted key exactly as serving does.
 */
async function composedSeed(dir: string, src: string, key: PrivateKey): Promise<SeedBundle> {
  const layer = async (name: string, priority: number, rule: string): Promise<{ file: string; manifest: Manifest; bytes: Buffer }> => {
    const root = join(dir, `layer-${name}`);
    mkdirSync(join(root, 'etc/udev/rules.d'), { recursive: true });
    mkdirSync(join(root, 'usr/lib/firmware/fz'), { recursive: true });
    writeFileSync(join(root, 'etc/udev/rules.d/70-fz.rules'), rule, { mode: 0o644 });
    writeFileSync(join(root, `usr/lib/firmware/fz/${name}.fw`), `firmware of ${name}\n`.repeat(20), { mode: 0o644 });
    for (const d of ['etc', 'etc/udev', 'etc/udev/rules.d', 'usr', 'usr/lib', 'usr/lib/firmware', 'usr/lib/firmware/fz']) chmodSync(join(root, d), 0o755);
    const file = join(dir, `layer-${name}.tar.gz`);
    await pack({ root, path: ['etc/udev/rules.d', `usr/lib/firmware/fz`], layer: name, class: 'fuzz', priority, created: CREATED, output: file });
    const bytes = readFileSync(file);
    return { file, manifest: seedOf(name, bytes).manifest as Manifest, bytes };
  };
  const a = await layer('nic', 10, 'ACTION=="add", RUN+="/bin/true old"\n');
  const b = await layer('nic-fix', 20, 'ACTION=="add", RUN+="/bin/true new"\n');
  const hostFile = join(dir, 'composed-host.tar.gz');
  await pack({ root: src, path: ['etc/rear', 'var/lib/rear/layout'], host: 'fz1', created: CREATED, output: hostFile });
  const host = seedOf('composed-host', readFileSync(hostFile)).manifest as Manifest;
  const manifest = compose(
    [{ class: 'fuzz', name: 'nic', priority: 10, version: 1, manifest: a.manifest }, { class: 'fuzz', name: 'nic-fix', priority: 20, version: 3, manifest: b.manifest }],
    { id: 'fz1', class: 'fuzz', version: 7, manifest: host },
  );
  const member = async (file: string, m: Manifest, withoutEnd: boolean): Promise<PayloadSource> => {
    const skip = metaTarBytes(encodeManifest(m).length, null);
    const parts: Buffer[] = [];
    for await (const c of payloadMember(file, skip, { withoutEnd })) parts.push(c as Buffer);
    const data = Buffer.concat(parts);
    return bufferPayload(data, createHash('sha256').update(data).digest('hex'));
  };
  const parts = [await member(a.file, a.manifest, true), await member(b.file, b.manifest, true), await member(hostFile, host, false)];
  const all = Buffer.concat(parts.flatMap((p) => p.buffers ?? []));
  const sealed = seal({ ...manifest, host: 'fz1', class: 'fuzz', version: 7, served: CREATED }, key, concatPayload(parts, createHash('sha256').update(all).digest('hex')));
  const out: Buffer[] = [];
  for await (const c of sealedBytes(sealed)) out.push(Buffer.from(c));
  return seedOf('signed-composed', Buffer.concat(out));
}
