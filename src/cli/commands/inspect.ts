// `rear-update inspect`: what a bundle says about itself, and whether its signature holds.
// Reads the whole archive (so sizes and entries are real), but never refuses for trust.

import type { Command } from 'commander';
import { loadTrustedKeys } from '../../adapters/fs/keys.ts';
import { readBundle, type ReadResult } from '../../adapters/tar/bundle-reader.ts';
import { formatMode } from '../../core/manifest.ts';
import { DEFAULT_LIMITS } from '../../core/policy.ts';
import type { SignatureStatus } from '../../core/signature.ts';
import { collect } from '../options.ts';
import { formatBytes, out, printJson, table } from '../output.ts';
import { openFile } from '../source.ts';

export function describeSignature(s: SignatureStatus): string {
  switch (s.status) {
    case 'valid':
      return `valid, ${s.key.fingerprint} (${s.key.source})`;
    case 'invalid':
      return `INVALID: does not match the manifest for ${s.fingerprint}`;
    case 'unknown-key':
      return `signed by ${s.fingerprint}, which is not a trusted key (pass its .pub with --pubkey)`;
    case 'unsigned':
      return 'unsigned';
  }
}

export function summarize(file: string, r: ReadResult): Record<string, unknown> {
  const files = r.entries.filter((e) => e.type === 'file');
  return {
    file,
    format: r.manifest ? `rear-update bundle v${r.manifest.format}` : 'plain tar.gz (no manifest)',
    host: r.manifest?.host ?? null,
    class: r.manifest?.class ?? null,
    version: r.manifest?.version ?? null,
    created: r.manifest?.created ?? null,
    served: r.manifest?.served ?? null,
    nonce: r.manifest?.nonce ?? null,
    signature: r.signature.status === 'valid' ? { status: 'valid', key: r.signature.key.fingerprint } : r.signature,
    entries: r.entries.length,
    files: files.length,
    dirs: r.entries.filter((e) => e.type === 'dir').length,
    symlinks: r.entries.filter((e) => e.type === 'symlink').length,
    hardlinks: r.entries.filter((e) => e.type === 'hardlink').length,
    bytes: files.reduce((n, e) => n + (e.size ?? 0), 0),
    compressedBytes: r.compressedBytes,
    owns: r.manifest?.owns ?? [],
  };
}

export function registerInspect(program: Command): void {
  program
    .command('inspect')
    .argument('<file>', 'a bundle, or a plain tar.gz')
    .description('show a bundle\'s host, version, size, owned paths, entries and signature status')
    .option('--pubkey <file>', 'a trusted public key to check the signature against, repeatable', collect)
    .option('--keys-dir <dir>', 'also trust every *.pub here (default /etc/rear-update/keys, if it exists)')
    .option('--json', 'machine-readable output, entries included')
    .addHelpText('after', `
Signature status is one of: valid (with the key's fingerprint), INVALID, signed by an
unknown key, or unsigned. inspect reports it and exits 0; use verify to enforce it.
A bundle whose members do not match its manifest still fails (exit 4).`)
    .action(async (file: string, o: { pubkey?: string[]; keysDir?: string; json?: boolean }) => {
      const trusted = loadTrustedKeys(o.pubkey ?? [], o.keysDir);
      const src = openFile(file);
      const r = await readBundle(src.stream, { trusted, allowUnsigned: true, enforceTrust: false, limits: DEFAULT_LIMITS });
      const s = summarize(file, r);
      if (o.json) {
        printJson({ ...s, list: r.entries.map(({ staged: _s, ...e }) => e) });
        return;
      }
      const rows: string[][] = [
        ['bundle:', file],
        ['format:', String(s.format)],
        ['host:', r.manifest?.host ?? '-'],
        ['class:', r.manifest?.class ?? '-'],
        ['version:', String(r.manifest?.version ?? '-')],
        ['created:', r.manifest?.created ?? '-'],
        ...(r.manifest?.served ? [['served:', r.manifest.served]] : []),
        ...(r.manifest?.nonce ? [['nonce:', `${r.manifest.nonce} (the request this copy was sealed for)`]] : []),
        ['signature:', describeSignature(r.signature)],
        ['entries:', `${s.entries} (${s.files} files, ${s.dirs} directories, ${s.symlinks} symlinks${s.hardlinks ? `, ${s.hardlinks} hard links` : ''})`],
        ['size:', `${formatBytes(s.bytes as number)} unpacked, ${formatBytes(r.compressedBytes)} compressed`],
        ['owns:', (s.owns as string[]).join(', ') || '-'],
      ];
      for (const l of table(rows)) out(l);
      out();
      for (const l of table(r.entries.map((e) => [
        e.type === 'dir' ? 'd' : e.type === 'symlink' ? 'l' : e.type === 'hardlink' ? 'h' : '-',
        e.type === 'symlink' || e.type === 'hardlink' ? '----' : formatMode(e.mode),
        `${e.uid}:${e.gid}`,
        e.type === 'file' ? String(e.size) : '',
        e.type === 'symlink' ? `${e.path} -> ${e.target}` : e.type === 'hardlink' ? `${e.path} link to ${e.target}` : e.path,
      ]))) out(l);
    });
}
