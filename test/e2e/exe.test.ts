// The one-file executable (dist/rear-update, built by scripts/build-exe.mjs) as it runs in a
// rescue system: no node on PATH, no node_modules, an empty environment and working directory.
// The test command builds the executable first; if it is missing, these tests FAIL (a skipped
// suite would hide a broken build).

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, mkdirSync, readFileSync, statSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { cleanup, EXE, makeTree, REPO, tempDir } from '../helpers.ts';

const VERSION = (JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')) as { version: string }).version;

const dirs: string[] = [];
const scratch = (prefix: string): string => {
  const d = tempDir(prefix);
  dirs.push(d);
  return d;
};
after(() => cleanup(...dirs));

/**
 * A PATH with the usual tools and no `node`: /usr/bin:/bin when node is not installed there,
 * otherwise a directory of symlinks to just the tools the CLI may call.
 */
function pathWithoutNode(): string {
  const system = ['/usr/bin', '/bin'];
  if (!system.some((d) => existsSync(join(d, 'node')))) return system.join(':');
  const bin = scratch('ru-exe-bin-');
  for (const tool of ['sh', 'tar', 'gzip', 'sync']) {
    const found = system.map((d) => join(d, tool)).find((p) => existsSync(p));
    if (found) symlinkSync(found, join(bin, tool));
  }
  return bin;
}

const PATH = pathWithoutNode();

interface Run {
  readonly status: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs dist/rear-update with only PATH in the environment, from `cwd` (an empty dir by default). */
function exe(args: readonly string[], cwd = scratch('ru-exe-cwd-')): Run {
  assert.ok(existsSync(EXE), `${EXE} is missing: build it with \`node scripts/build.mjs && node scripts/build-exe.mjs\``);
  const r = spawnSync(EXE, args, { cwd, env: { PATH }, encoding: 'utf8', timeout: 60_000 });
  assert.equal(r.error, undefined, `spawning ${EXE} failed: ${String(r.error)}`);
  assert.doesNotMatch(r.stderr, /ExperimentalWarning|single executable/i, 'the SEA warning must be disabled');
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

const ok = (r: Run, what: string): Run => {
  assert.equal(r.status, 0, `${what} exited ${r.status}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
  return r;
};

describe('one-file executable dist/rear-update', () => {
  test('exists and is an executable ELF file, not a script', () => {
    assert.ok(existsSync(EXE), `${EXE} is missing: build it with \`node scripts/build.mjs && node scripts/build-exe.mjs\``);
    assert.ok((statSync(EXE).mode & 0o111) !== 0, 'not executable');
    assert.deepEqual([...readFileSync(EXE).subarray(0, 4)], [0x7f, 0x45, 0x4c, 0x46], 'not an ELF binary');
  });

  test('the test environment really has no node', () => {
    for (const dir of PATH.split(':')) assert.ok(!existsSync(join(dir, 'node')), `${dir}/node exists`);
    const r = spawnSync('sh', ['-c', 'command -v node'], { env: { PATH }, encoding: 'utf8' });
    if (!r.error) assert.notEqual(r.status, 0, `node resolves on PATH=${PATH}: ${r.stdout}`);
  });

  test('--version prints the package version', () => {
    const r = ok(exe(['--version']), '--version');
    assert.equal(r.stdout.trim(), VERSION);
  });

  test('--help works with no node, no node_modules, an empty environment', () => {
    const r = ok(exe(['--help']), '--help');
    assert.match(r.stdout, /Usage: rear-update/);
    for (const cmd of ['keygen', 'pack', 'verify', 'inspect', 'apply']) assert.match(r.stdout, new RegExp(`\\b${cmd}\\b`));
  });

  test('keygen --out DIR writes rear-update.key (0600) and rear-update.pub', () => {
    const cwd = scratch('ru-exe-keygen-');
    ok(exe(['keygen', '--out', 'keys'], cwd), 'keygen');
    const key = join(cwd, 'keys', 'rear-update.key');
    const pub = join(cwd, 'keys', 'rear-update.pub');
    assert.ok(existsSync(key) && existsSync(pub), 'key pair not written');
    assert.equal(statSync(key).mode & 0o777, 0o600);
    assert.match(readFileSync(key, 'utf8'), /-----BEGIN PRIVATE KEY-----/);
    assert.match(readFileSync(pub, 'utf8'), /-----BEGIN PUBLIC KEY-----/);
  });

  test('pack, then verify and inspect the bundle', () => {
    const cwd = scratch('ru-exe-pack-');
    ok(exe(['keygen', '--out', 'keys'], cwd), 'keygen');
    makeTree(join(cwd, 'root'), {
      etc: {
        rear: {
          'local.conf': 'OUTPUT=ISO\nBACKUP=NETFS\n',
          'site.conf': 'BACKUP_URL=nfs://backup/rear\n',
          'mappings': { 'ip_addresses': 'eth0 192.0.2.10/24\n' },
        },
        hostname: 'not packed\n',
      },
    });
    mkdirSync(join(cwd, 'out'));
    const packed = ok(exe(['pack', '--root', 'root', '--path', 'etc/rear', '--key', 'keys/rear-update.key', '--host', 'e2e-host', '-o', 'out/b.tar.gz'], cwd), 'pack');
    assert.match(packed.stdout, /signed by/);
    assert.ok(existsSync(join(cwd, 'out', 'b.tar.gz')), 'bundle not written');

    ok(exe(['verify', 'out/b.tar.gz', '--pubkey', 'keys/rear-update.pub'], cwd), 'verify');

    // A different key must not verify it: the crypto really runs inside the executable.
    ok(exe(['keygen', '--out', 'other'], cwd), 'keygen (other)');
    const wrong = exe(['verify', 'out/b.tar.gz', '--pubkey', 'other/rear-update.pub'], cwd);
    assert.notEqual(wrong.status, 0, 'verify accepted a bundle signed by an untrusted key');

    const r = ok(exe(['inspect', 'out/b.tar.gz', '--json', '--pubkey', 'keys/rear-update.pub'], cwd), 'inspect --json');
    const info = JSON.parse(r.stdout) as { host: string; entries: number; files: number; signature: { status: string }; list: { path: string; type: string }[] };
    assert.equal(info.host, 'e2e-host');
    assert.equal(info.signature.status, 'valid');
    assert.equal(info.files, 3);
    const paths = info.list.map((e) => e.path);
    assert.equal(info.entries, paths.length);
    for (const p of ['etc/rear/local.conf', 'etc/rear/site.conf', 'etc/rear/mappings/ip_addresses']) assert.ok(paths.includes(p), `${p} missing from ${paths.join(', ')}`);
    assert.ok(!paths.includes('etc/hostname'), 'a path outside --path was packed');
  });

  test('self-update: the executable installs a bundle that replaces itself; the run completes and the next run is the new program', () => {
    const cwd = scratch('ru-exe-self-');
    ok(exe(['keygen', '--out', 'keys'], cwd), 'keygen');
    // The rescue system: the updater lives in the root it updates.
    const root = join(cwd, 'root');
    mkdirSync(join(root, 'bin'), { recursive: true });
    copyFileSync(EXE, join(root, 'bin', 'rear-update'));
    chmodSync(join(root, 'bin', 'rear-update'), 0o755);
    // The update carries a new bin/rear-update (a stand-in program that says what it is).
    makeTree(join(cwd, 'src'), { bin: { 'rear-update': { mode: 0o755, content: '#!/bin/sh\necho rear-update 99.0.0-new\n' } } });
    ok(exe(['pack', '--root', 'src', '--path', 'bin/rear-update', '--key', 'keys/rear-update.key', '--overlay', '-o', 'self.tar.gz'], cwd), 'pack');
    const self = spawnSync(join(root, 'bin', 'rear-update'), ['apply', join(cwd, 'self.tar.gz'), '--root', root, '--pubkey', join(cwd, 'keys/rear-update.pub'), '-q'], { env: { PATH }, encoding: 'utf8' });
    assert.equal(self.status, 0, self.stderr);
    assert.match(self.stdout, /1 replaced/);
    const next = spawnSync(join(root, 'bin', 'rear-update'), ['--version'], { env: { PATH }, encoding: 'utf8' });
    assert.equal(next.stdout.trim(), 'rear-update 99.0.0-new');
    // And back: rollback (run by the new program's predecessor, from outside) restores the executable.
    ok(exe(['rollback', '--root', root]), 'rollback');
    assert.deepEqual(readFileSync(join(root, 'bin', 'rear-update')), readFileSync(EXE));
  });
});
