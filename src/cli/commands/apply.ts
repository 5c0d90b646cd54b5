// `rear-update apply`: resolve the source, verify while staging, plan against the live root,
// commit through the journal. Plan first, then apply: --dry-run prints the same plan that a
// real run executes, and writes nothing at all.

import type { Command } from 'commander';
import { realpathSync, statfsSync, statSync } from 'node:fs';
import { freemem } from 'node:os';
import { scanRoot, type RootScan } from '../../adapters/fs/root-view.ts';
import { DirStager } from '../../adapters/fs/stager.ts';
import { StateDir, type Installed } from '../../adapters/fs/state.ts';
import { Transactions } from '../../adapters/fs/transaction.ts';
import { readBundle, type ReadOptions, type ReadResult } from '../../adapters/tar/bundle-reader.ts';
import { fromSystemError, RuError } from '../../core/errors.ts';
import { freshnessCheck } from '../../core/freshness.ts';
import { keepMatcher, splitKeep } from '../../core/keep.ts';
import { manifestBytes, type Manifest } from '../../core/manifest.ts';
import { ancestors, parentOf, ROOT_PATH, STATE_DIR } from '../../core/paths.ts';
import { planApply, type Plan, type PlanOptions } from '../../core/plan.ts';
import { byteSize, collect, limitsFrom, positiveInt, type LimitFlags } from '../options.ts';
import { formatBytes, note, out, printJson, table } from '../output.ts';
import { openSource, type OpenedSource } from '../source.ts';
import { duration, sourceFor } from '../server-source.ts';
import { effectiveEnv } from '../settings.ts';
import { testHooks } from '../test-hooks.ts';
import { explainRefusal, recordTrust, serverStatements, trustFrom, trustOf } from '../key-trust.ts';
import { trustedKeys, type Trust } from '../../core/key-statements.ts';

export interface ApplyFlags extends LimitFlags {
  root: string;
  server?: string;
  token?: string;
  tokenFile?: string;
  wait?: number;
  sysRoot: string;
  hostname?: string;
  keep?: string[];
  pubkey?: string[];
  keysDir?: string;
  statement?: string[];
  unsigned?: boolean;
  dryRun?: boolean;
  cacert?: string;
  json?: boolean;
  verbose?: boolean;
  quiet?: boolean;
}

export function resolveRoot(root: string): string {
  let real: string;
  try {
    real = realpathSync(root);
  } catch {
    throw new RuError('ROOT_INVALID', `${root}: no such directory`, { root });
  }
  if (!statSync(real).isDirectory()) throw new RuError('ROOT_INVALID', `${root}: not a directory`, { root });
  return real;
}

export function printPlan(plan: Plan, all: boolean): void {
  const rows = plan.items
    .filter((it) => all || it.action !== 'unchanged')
    .map((it) => [it.action, it.type, it.action === 'unchanged' || it.bytes === 0 ? '' : formatBytes(it.bytes), it.path]);
  for (const l of table(rows)) out(`  ${l}`);
  const t = plan.totals;
  out(`${t.create} to create, ${t.replace} to replace, ${t.update} to update, ${t.remove} to remove, ${t.unchanged} unchanged; ${formatBytes(t.bytesIn)} in, ${formatBytes(t.bytesOut)} out`);
}

function spaceCheck(dir: string, m: Manifest | null): void {
  if (!m) return; // a plain archive does not say its size; a full disk is caught while staging
  const st = statfsSync(dir);
  // A file system without a size (ramfs: a rescue system's initramfs root, where statfs says
  // 0 blocks and 0 free) is bounded by memory only: staging there takes RAM.
  const sized = st.blocks > 0;
  const free = sized ? st.bavail * st.bsize : freemem();
  const need = manifestBytes(m) + m.entries.length * (sized ? st.bsize : 4096);
  if (free < need) {
    throw new RuError('NO_SPACE', `staging needs about ${formatBytes(need)} but only ${formatBytes(free)} is free in ${dir}${sized ? '' : ' (a file system without a size, in memory: free RAM)'}`, { need, free });
  }
}

/** A bundle fetched for host X must say it is X's: the server's key signs every host's bundle. */
function hostCheck(m: Manifest | null, expected: string | undefined): void {
  if (expected === undefined) return;
  if (m?.host !== expected) {
    throw new RuError('BUNDLE_HOST_MISMATCH', `asked the server for host ${expected} but the bundle is ${m ? `host ${m.host ?? '(none)'}'s` : 'a plain archive'}`, { expected, actual: m?.host ?? null });
  }
}

function installedRecord(r: ReadResult, source: string, keep: readonly string[]): Installed {
  return {
    host: r.manifest?.host ?? null,
    class: r.manifest?.class ?? null,
    version: r.manifest?.version ?? null,
    created: r.manifest?.created ?? null,
    appliedAt: new Date().toISOString(),
    source,
    key: r.signature.status === 'valid' ? r.signature.key.fingerprint : null,
    owns: r.manifest?.owns ?? [],
    keep: [...keep],
    entries: r.entries.map(({ staged: _s, ...e }) => e),
  };
}

/** Every directory a commit renames into must be on the state directory's file system. */
function crossDeviceCheck(plan: Plan, devs: ReadonlyMap<string, number>, stateDev: number): void {
  for (const op of plan.ops) {
    const chain = [ROOT_PATH, ...ancestors(op.path)];
    for (let i = chain.length - 1; i >= 0; i--) {
      const d = devs.get(chain[i] as string);
      if (d === undefined) continue; // created by this plan: it inherits its existing parent's
      if (d !== stateDev) throw new RuError('ROOT_CROSS_DEVICE', `${parentOf(op.path) || '/'} is on another file system than ${STATE_DIR}; cannot commit ${op.path} by rename`, { path: op.path });
      break;
    }
  }
}

interface Planned {
  readonly r: ReadResult;
  readonly scan: RootScan;
  readonly plan: Plan;
}

/** The one path from bundle to plan, shared by --dry-run (no stager) and a real apply. */
async function readAndPlan(src: OpenedSource, root: string, opts: ReadOptions, plan: PlanOptions, assumeDirs: readonly string[], trust: Trust): Promise<Planned> {
  let r: ReadResult;
  try {
    r = await readBundle(src.stream, opts);
  } catch (e) {
    // A signer that a key statement retired is KEY_RETIRED, not merely untrusted.
    throw explainRefusal(trust, fromSystemError(e, 'staging the bundle'));
  }
  const owns = r.manifest?.owns ?? [];
  const scan = await scanRoot(root, r.entries, owns, assumeDirs);
  return { r, scan, plan: planApply(r.entries, owns, scan, plan) };
}

export async function apply(source: string | undefined, o: ApplyFlags): Promise<void> {
  const root = resolveRoot(o.root);
  const from = await sourceFor(source, o);
  // Is this the server's answer to this very request: the host asked for, the nonce sent?
  const answers = (m: Manifest | null): void => {
    hostCheck(m, from.host);
    freshnessCheck(m, from.nonce);
  };
  // The pinned keys, moved by key statements: the keys directory's, --statement, the server's (docs/keys.md).
  const trust = trustFrom(o, await serverStatements(from.url, o), o.verbose === true);
  const trusted = trustedKeys(trust);
  const limits = limitsFrom(o);
  const owners = process.getuid?.() === 0;
  const allowUnsigned = o.unsigned === true;
  const state = new StateDir(root);
  const keep = o.keep ?? splitKeep(effectiveEnv().REAR_UPDATE_KEEP);
  const keepPath = keepMatcher(keep);
  const planOpts: PlanOptions = { owners, ...(keepPath ? { keep: keepPath } : {}) };

  if (o.dryRun) {
    const txns = new Transactions(state);
    if (state.listTxns().some((id) => txns.read(id)?.state !== 'committed')) {
      note('an interrupted transaction exists; the next real apply, rollback or status rolls it back first');
    }
    const src = await openSource(from.url, { ...from.open, quiet: o.quiet === true || o.json === true });
    try {
      const { r, plan } = await readAndPlan(src, root, { trusted, allowUnsigned, enforceTrust: true, limits, onVerified: answers }, planOpts, state.missingParents(), trust);
      if (o.json) printJson({ dryRun: true, root, source: src.label, host: r.manifest?.host ?? null, version: r.manifest?.version ?? null, items: plan.items, totals: plan.totals });
      else {
        out(`dry run: would apply ${src.label} to ${root} (host ${r.manifest?.host ?? '-'}, version ${r.manifest?.version ?? '-'})`);
        printPlan(plan, true);
        out('nothing was written');
      }
    } finally {
      src.cleanup();
    }
    return;
  }

  state.open();
  const txns = new Transactions(state);
  let src: OpenedSource | null = null;
  let txnId: string | null = null;
  let committed = false;
  try {
    for (const line of txns.recover()) note(line);
    src = await openSource(from.url, { ...from.open, quiet: o.quiet === true || o.json === true });
    const txn = state.newTxnDir();
    txnId = txn.id;
    const stager = new DirStager(txn.dir, owners);
    const { r, scan, plan } = await readAndPlan(src, root, {
      trusted, allowUnsigned, enforceTrust: true, limits, stager,
      onVerified: (m) => {
        answers(m);
        spaceCheck(txn.dir, m);
      },
    }, planOpts, [], trust);
    if (r.signature.status !== 'valid') note(`applying an UNVERIFIED bundle (--unsigned): ${r.signature.status === 'unknown-key' ? `signed by unknown key ${r.signature.fingerprint}` : 'no signature'}`);
    crossDeviceCheck(plan, scan.devs, statSync(state.dir).dev);
    const previous = state.readInstalled();
    const next: Installed = { ...installedRecord(r, src.label, keep), ...trustOf(trust, r.signature.status === 'valid' ? r.signature.key.fingerprint : null) };
    txns.commit(txn.id, plan.ops, previous, next, { owners, beforeOp: testHooks().beforeOp });
    committed = true;
    recordTrust(trust, next.key, o, `by apply on ${next.appliedAt} from ${src.label}`);
    if (o.json) {
      printJson({ applied: true, root, source: src.label, host: next.host, version: next.version, key: next.key, items: plan.items, totals: plan.totals });
    } else {
      if (o.verbose) printPlan(plan, true);
      const t = plan.totals;
      out(`applied ${src.label} to ${root}: host ${next.host ?? '-'}, version ${next.version ?? '-'}, ${next.key ? `signed by ${next.key}` : 'UNSIGNED'}`);
      out(`${t.create} created, ${t.replace} replaced, ${t.update} updated, ${t.remove} removed, ${t.unchanged} unchanged (${formatBytes(t.bytesIn)} written); undo with: rear-update rollback${root === '/' ? '' : ` --root ${root}`}`);
    }
  } finally {
    src?.cleanup();
    // A transaction whose journal exists is not ours to delete: its commit started, and if its
    // own undo could not finish, the next run must find the journal and the backups.
    if (txnId && !committed && !txns.hasJournal(txnId)) state.removeTxn(txnId);
    state.close();
  }
}

export function registerApply(program: Command): void {
  program
    .command('apply')
    .argument('[source]', 'bundle file, file:// URL or http(s):// URL; with --server: a host id, or nothing to be resolved by this machine\'s facts')
    .description('verify a bundle and install it into the root, all or nothing')
    .option('--root <dir>', 'install into this root', '/')
    .option('--pubkey <file>', 'a trusted public key, repeatable', collect)
    .option('--keys-dir <dir>', 'trust every *.pub here too, moved by its *.statement files (default /etc/rear-update/keys, if it exists)')
    .option('--statement <file>', 'a key statement to consider (a rotation or retirement made by `rear-update key rotate|retire`), repeatable', collect)
    .option('--unsigned', 'accept a bundle without a valid signature from a trusted key (plain tar.gz archives); the extraction rules still apply')
    .option('--keep <glob>', 'never remove paths matching this glob below owned directories, although the bundle lacks them (e.g. etc/rear/rescue.conf), repeatable', collect)
    .option('--dry-run', 'print the plan (create / replace / update / remove / unchanged per path) and write nothing')
    .option('--max-bytes <size>', 'refuse more unpacked content than this (default 1G)', byteSize)
    .option('--max-entries <n>', 'refuse more members than this (default 100000)', positiveInt)
    .option('--max-ratio <n>', 'refuse data that expands more than n:1 beyond the first 16 MiB (default 200)', positiveInt)
    .option('--cacert <file>', 'PEM CA certificate(s) to trust for https downloads')
    .option('--server <url>', 'fetch from this rear-update server (env REAR_UPDATE_SERVER)')
    .option('--token <token>', 'fetch token for the server (env REAR_UPDATE_TOKEN)')
    .option('--token-file <file>', 'read the token from a file')
    .option('--wait <duration>', 'with --server and no id: how long to wait for an admin to assign a pending machine (e.g. 90s, 15m, 0; default 15m or REAR_UPDATE_WAIT)', duration)
    .option('--sys-root <dir>', 'read this machine\'s facts below this directory: sys/, proc/, and etc/rear-release and etc/HOSTNAME (a rescue system, and the hostname its image was made with)', '/')
    .option('--hostname <name>', 'with --server and no id: send this as the machine\'s hostname (env REAR_UPDATE_HOSTNAME; kernel option rear_update=hostname=NAME)')
    .option('--json', 'print the executed (or, with --dry-run, the planned) changes as JSON')
    .option('-v, --verbose', 'print every changed path')
    .option('-q, --quiet', 'no progress output')
    .addHelpText('after', `
What happens:
  1. The bundle is read once, streaming. Its signature is checked against the trusted keys
     before any payload is looked at; every member is then checked against the manifest and
     against the safe-extraction rules while it is written to a staging area on the root's
     file system (var/lib/rear-update/txn/). A refusal stops here; the root is untouched.
  2. The plan compares the bundle with the root. Paths the bundle owns lose files it lacks.
  3. The commit renames each staged file into place (a running script keeps its old file),
     journaling every step. If it is interrupted (kill -9, power loss), the next apply,
     rollback or status rolls it back. \`rear-update rollback\` undoes a completed apply.

From a server (--server, or REAR_UPDATE_SERVER): with an id, that host's bundle; without
one, the server resolves this machine by its facts (MACs, DMI UUID and serial, hostname). An
unknown machine is recorded as pending: the command shows its facts and waits (--wait) until
an admin runs \`rear-update admin assign PENDING-ID HOST\`, then proceeds. The server signs
what it serves: trust its key (DATA/server.pub) with --pubkey or the keys directory.
Each fetch sends a fresh random nonce (header X-Rear-Update-Nonce; ?nonce= for a URL of the
server's /api/v1/hosts/ID/bundle route) that the server signs into the bundle it seals for
this request; a bundle without it (a replayed or cached answer) is refused with BUNDLE_STALE
and nothing is written. A resumed download sends the same nonce. ReaR's /rear/HOST.tar.gz
route and other URLs carry no nonce and are open to replay: fetch them over https.

Key rotation: a key statement signed by a trusted key can hand its trust on to a new key
(rotation) or disown a key (retirement); apply reads the *.statement files of the keys
directory, --statement FILE, and the server's statements (GET /api/v1/key-statements) when
it fetches from a server. A bundle signed by a key trusted only through a rotation is
applied, and that key is recorded in the keys directory (learned-HEX.pub) for later; status
names the rotation. A bundle signed by a retired key is refused with KEY_RETIRED. The rules
and what a leaked key can still do: docs/keys.md.

Download progress: a bar on a terminal; a plain line every 5 s on anything else, and also on
a serial or IPMI console (stderr on /dev/ttyS*, ttyAMA*, ttyUSB*, hvc*, ttysclp*, or on
/dev/console while the kernel's active console is one of those) and with TERM=dumb.
REAR_UPDATE_PROGRESS=bar|plain|none overrides that choice (none: no progress, retries are
still reported); -q prints neither.

In a ReaR rescue system (etc/rear-release exists) the image's own values are not sent: the
hostname it was made with (etc/HOSTNAME, REAR_UPDATE_IMAGE_HOSTNAME), the template's DMI UUID
and serial (REAR_UPDATE_IMAGE_UUID, _SERIAL). A hostname is sent only when it differs from
the image's (DHCP) or is given (--hostname). Each fact left out is printed with its reason,
and so is the fact that resolved the machine. \`rear-update facts\` shows both beforehand;
docs/resolution.md has the rules.

Examples:
  rear-update apply --server http://rear-server:8080 --token ru_... --pubkey server.pub
  rear-update apply e229 --server http://rear-server:8080 --token ru_...
  rear-update apply e229.tar.gz --pubkey /etc/rear-update/keys/fleet.pub
  rear-update apply https://rear.example.com/rear/e229.tar.gz --cacert ca.pem
  rear-update apply --unsigned --dry-run legacy-config.tar.gz`)
    .action((src: string | undefined, o: ApplyFlags) => apply(src, o));
}
