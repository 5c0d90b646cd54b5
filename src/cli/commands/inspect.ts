// `rear-update inspect`: what a bundle says about itself, and whether its signature holds.
// Reads the whole archive (so sizes and entries are real), but never refuses for trust. For a
// layered bundle also its layers, where each entry comes from, and the activation apply would
// run (core/activation.ts decides both here and in apply).

import type { Command } from 'commander';
import { release } from 'node:os';
import { loadTrustedKeys } from '../../adapters/fs/keys.ts';
import { readBundle, type ReadResult } from '../../adapters/tar/bundle-reader.ts';
import { activationSteps, commandLine, preHookSteps, selectForKernel, type Step } from '../../core/activation.ts';
import { formatMode, type ManifestEntry } from '../../core/manifest.ts';
import { DEFAULT_LIMITS } from '../../core/policy.ts';
import type { SignatureStatus } from '../../core/signature.ts';
import { collect } from '../options.ts';
import { formatBytes, out, printJson, table } from '../output.ts';
import { openFile } from '../source.ts';
import { kernelRelease } from './apply.ts';
import { describeLayer } from './pack.ts';

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
    ...(r.manifest?.layers ? { layers: r.manifest.layers, shadowed: r.manifest.shadowed ?? [] } : {}),
  };
}

/**
 * What apply would run for `kernel` into an empty root /: every entry it installs is new,
 * udev is assumed to run (apply skips it where it does not), and modules load only when
 * `kernel` is the one running here.
 */
export function expectedActivation(r: ReadResult, kernel: string, running: string): { skipped: { kernel: string; entries: number }[]; steps: Step[] } | null {
  const layers = r.manifest?.layers;
  if (!layers) return null;
  const sel = selectForKernel(r.entries, kernel);
  const left = new Set(sel.left.map((e) => e.path));
  const at = (p: string): string | null => (left.has(p) ? null : `/${p}`);
  const steps = [
    ...preHookSteps(layers, kernel, at),
    ...activationSteps({ layers, changed: sel.install.map((e) => e.path), kernel, running, chroot: false, udevRunning: true, installedAt: at }),
  ];
  return { skipped: [...sel.skipped], steps };
}

const typeLetter = (e: ManifestEntry): string => (e.type === 'dir' ? 'd' : e.type === 'symlink' ? 'l' : e.type === 'hardlink' ? 'h' : '-');

export function registerInspect(program: Command): void {
  program
    .command('inspect')
    .argument('<file>', 'a bundle, or a plain tar.gz')
    .description('show a bundle\'s host, version, size, owned paths, entries and signature status')
    .option('--pubkey <file>', 'a trusted public key to check the signature against, repeatable', collect)
    .option('--keys-dir <dir>', 'also trust every *.pub here (default /etc/rear-update/keys, if it exists)')
    .option('--kernel <release>', 'a layered bundle: show what apply would install and run for this kernel release (default: the running one)', kernelRelease)
    .option('--json', 'machine-readable output, entries included')
    .addHelpText('after', `
Signature status is one of: valid (with the key's fingerprint), INVALID, signed by an
unknown key, or unsigned. inspect reports it and exits 0; use verify to enforce it.
A bundle whose members do not match its manifest still fails (exit 4).

A layered bundle (format 2; docs/layers.md) also shows its layers (name, class, priority,
version, owned paths, modules, hooks, kernel releases), the layer each entry comes from, the
members a later layer shadows, and the activation steps apply would run for --kernel into an
empty root: pre hooks, depmod, udev, modprobe, post hooks (apply decides on the real root's
changes; apply --dry-run shows exactly those).`)
    .action(async (file: string, o: { pubkey?: string[]; keysDir?: string; json?: boolean; kernel?: string }) => {
      const trusted = loadTrustedKeys(o.pubkey ?? [], o.keysDir);
      const src = openFile(file);
      const r = await readBundle(src.stream, { trusted, allowUnsigned: true, enforceTrust: false, limits: DEFAULT_LIMITS });
      const s = summarize(file, r);
      const running = release();
      const kernel = o.kernel ?? running;
      const act = expectedActivation(r, kernel, running);
      const layers = r.manifest?.layers ?? [];
      const layerName = (e: ManifestEntry): string => (e.layer === undefined ? '' : (layers[e.layer]?.name ?? '?'));
      if (o.json) {
        printJson({
          ...s,
          ...(act ? { activation: { kernel, skipped: act.skipped, steps: act.steps.map((st) => ({ kind: st.kind, name: st.name, command: commandLine(st.argv), ...(st.skip ? { skip: st.skip } : {}) })) } } : {}),
          list: r.entries.map(({ staged: _s, ...e }) => e),
        });
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
      if (layers.length) {
        out();
        layers.forEach((l, i) => {
          out(`${i}: ${describeLayer(l)}`);
          out(`   owns ${l.owns.join(', ') || 'nothing (overlay)'}`);
        });
      }
      out();
      const entryRow = (e: ManifestEntry): string[] => [
        typeLetter(e),
        e.type === 'symlink' || e.type === 'hardlink' ? '----' : formatMode(e.mode),
        `${e.uid}:${e.gid}`,
        e.type === 'file' ? String(e.size) : '',
        ...(layers.length ? [layerName(e)] : []),
        e.type === 'symlink' ? `${e.path} -> ${e.target}` : e.type === 'hardlink' ? `${e.path} link to ${e.target}` : e.path,
      ];
      for (const l of table(r.entries.map(entryRow))) out(l);
      const shadowed = r.manifest?.shadowed ?? [];
      if (shadowed.length) {
        out();
        out(`shadowed: ${shadowed.length} member(s) that a later layer replaces (verified, never installed):`);
        for (const l of table(shadowed.map(entryRow))) out(`  ${l}`);
      }
      if (act) {
        out();
        out(`activation apply would run for kernel ${kernel}${kernel === running ? ' (running)' : ''}, into an empty root /:`);
        for (const sk of act.skipped) out(`  skips ${sk.entries} ${sk.entries === 1 ? 'entry' : 'entries'} for kernel ${sk.kernel}`);
        if (act.steps.length === 0) out('  nothing to run');
        for (const st of act.steps) out(`  ${st.kind.padEnd(9)}${st.name}${st.skip ? ` (skipped: ${st.skip})` : st.kind === 'pre' || st.kind === 'post' ? '' : `: ${commandLine(st.argv)}`}`);
      }
    });
}
