// Which keys apply and verify trust: the pinned keys moved by key statements (from the keys
// directory, --statement files, and, when apply fetches from a rear-update server, the server's
// GET /api/v1/key-statements). Also the two things that follow from a statement: a refusal
// that names a retired key (KEY_RETIRED instead of BUNDLE_KEY_UNTRUSTED), and, after an apply,
// recording a key learned through a rotation so the next run trusts it without the server.

import { RuError } from '../core/errors.ts';
import { describeRetirement, describeVia, findTrusted, parseStatement, type Sourced, type Trust } from '../core/key-statements.ts';
import { keysDirInUse, loadTrust, recordLearnedKey, recordStatement } from '../adapters/fs/key-statements.ts';
import type { InstalledTrust } from '../adapters/fs/state.ts';
import { note } from './output.ts';
import { clientFrom, serverFrom, type ServerFlags } from './server-options.ts';
import { effectiveEnv } from './settings.ts';

export interface TrustFlags extends ServerFlags {
  pubkey?: string[];
  keysDir?: string;
  statement?: string[];
}

/**
 * The statements the configured server hands out, when `url` is on that server (a host id or
 * resolution becomes such a URL). The route is open and the statements prove themselves; a
 * server that does not answer or has no such route means no statements, said once.
 */
export async function serverStatements(url: string, o: ServerFlags): Promise<Sourced[]> {
  const server = serverFrom(o, effectiveEnv());
  if (!server || !/^https?:\/\//i.test(url)) return [];
  let api;
  try {
    api = clientFrom(o);
    if (new URL(url).origin !== api.base.origin) return [];
  } catch {
    return [];
  }
  const source = `${api.base.origin}/api/v1/key-statements`;
  let body: unknown;
  try {
    body = (await api.request<unknown>('GET', '/api/v1/key-statements')).body;
  } catch (e) {
    note(`no key statements from the server (${(e as Error).message}); trusting the pinned keys only`);
    return [];
  }
  const list = (body as { statements?: unknown } | null)?.statements;
  if (!Array.isArray(list)) {
    note(`the server's key statements are not a list; ignoring them (${source})`);
    return [];
  }
  const out: Sourced[] = [];
  list.slice(0, 64).forEach((v, i) => {
    try {
      out.push({ statement: parseStatement(v, `${source} #${i + 1}`), source: `${source} #${i + 1}` });
    } catch (e) {
      note(`ignoring a malformed key statement from the server: ${(e as Error).message}`);
    }
  });
  return out;
}

/** The trust of this run; statements the server sent that did not count are named (forged ones always). */
export function trustFrom(o: TrustFlags, served: readonly Sourced[], verbose: boolean): Trust {
  const t = loadTrust(o.pubkey ?? [], o.keysDir, o.statement ?? [], served);
  for (const i of t.ignored) {
    if (i.forged) note(`REFUSED key statement (${i.source}): ${i.reason}`);
    else if (verbose) note(`key statement ignored (${i.source}): ${i.reason}`);
  }
  for (const k of t.trusted) if (k.via && verbose) note(`trusting ${k.key.fingerprint}: ${describeVia(k.via)}`);
  return t;
}

/** A trust refusal told in terms of the statements: a retired signer is KEY_RETIRED. */
export function explainRefusal(t: Trust, e: RuError): RuError {
  if (e.code !== 'BUNDLE_KEY_UNTRUSTED' || typeof e.context.key !== 'string') return e;
  const fp = e.context.key;
  const r = t.retired.get(fp);
  if (r) return new RuError('KEY_RETIRED', `bundle is signed by ${fp}, which is no longer trusted: ${describeRetirement(r)}`, { key: fp, retiredBy: r.by, reason: r.reason });
  const about = t.ignored.filter((i) => i.statement.kind === 'rotate' && i.statement.fingerprint === fp);
  if (about.length) return new RuError('BUNDLE_KEY_UNTRUSTED', `${e.message}; a rotation statement names it but does not count: ${about.map((i) => i.reason).join('; ')}`, e.context);
  return e;
}

/** How the signer of an applied bundle was trusted, for the installed record (status). */
export function trustOf(t: Trust, signer: string | null): { trust?: InstalledTrust } {
  const k = signer === null ? null : findTrusted(t, signer);
  if (!k) return {};
  return { trust: k.via ? { via: 'statement', chain: [...k.via.chain] } : { via: 'pinned', chain: [k.key.fingerprint] } };
}

/**
 * After a committed apply: a signer trusted only through a rotation becomes a pinned key of the
 * keys directory (learned-HEX.pub), and the retirements that counted are kept there too, so
 * they hold even when a later answer leaves them out. A keys directory that cannot be written
 * is said, not fatal: the apply is done.
 */
export function recordTrust(t: Trust, signer: string | null, o: TrustFlags, context: string): string | null {
  const k = signer === null ? null : findTrusted(t, signer);
  const dir = keysDirInUse(o.keysDir);
  let recorded: string | null = null;
  try {
    if (dir !== null) {
      for (const s of t.retirements) {
        const p = recordStatement(dir, s);
        if (p) note(`recorded the retirement of ${s.statement.kind === 'retire' ? s.statement.retired : '?'} as ${p}`);
      }
      if (k?.via) recorded = recordLearnedKey(dir, k, context);
    }
  } catch (e) {
    note(`could not record what the key statements taught in ${dir}: ${(e as Error).message}`);
  }
  if (!k?.via || signer === null) return null;
  note(`${signer} is ${describeVia(k.via)}${recorded ? `; recorded as ${recorded}` : dir === null ? '; not recorded: no keys directory (--keys-dir, or /etc/rear-update/keys), so the statement is needed again next time' : ''}`);
  return recorded;
}

/** "trusted through a rotation statement from ed25519:OLD" for status. */
export const describeTrust = (r: InstalledTrust): string => (r.via === 'pinned' ? 'a pinned key' : describeVia(r));
