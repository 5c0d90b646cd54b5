// `rear-update admin token create|list|revoke`: the server's API tokens. A token's secret is
// shown once, when it is created; the server keeps only its hash. A token may expire
// (--expires) and a fetch token may be good for N bundle downloads only (--uses).

import type { Command } from 'commander';
import { DURATION_EXAMPLES, parseDuration } from '../../../core/duration.ts';
import { RuError } from '../../../core/errors.ts';
import type { TokenRecord } from '../../../core/store/metadata.ts';
import { note, out, printJson } from '../../output.ts';
import { api, dash, leaf, printTable, seg, SERVER_HELP, time, type AdminFlags } from './common.ts';

interface TokenFlags extends AdminFlags {
  admin?: boolean;
  view?: boolean;
  operate?: boolean;
  publish?: string;
  publishClass?: string;
  fetch?: string;
  fetchClass?: string;
  label?: string;
  expires?: string;
  uses?: string;
}

type PublicToken = Omit<TokenRecord, 'secretHash'> & { expired: boolean; usesLeft: number | null };

/** --expires: a duration from now (the server's now), or an absolute ISO 8601 time. */
function expiryFrom(v: string | undefined): { expiresIn: number } | { expires: string } | Record<string, never> {
  if (v === undefined) return {};
  const s = parseDuration(v);
  if (s !== null) {
    if (s < 1) throw new RuError('USAGE', '--expires must be at least 1s');
    return { expiresIn: s };
  }
  if (/^\d{4}-\d\d-\d\d([T ]\S+)?$/.test(v.trim())) return { expires: v.trim() };
  throw new RuError('USAGE', `--expires ${JSON.stringify(v)} is neither a duration (${DURATION_EXAMPLES}) nor a time (2026-12-31T00:00:00Z)`);
}

function usesFrom(v: string | undefined): { uses: number } | Record<string, never> {
  if (v === undefined) return {};
  if (!/^\d{1,7}$/.test(v.trim()) || Number(v) < 1) throw new RuError('USAGE', `--uses ${JSON.stringify(v)} is not a whole number of at least 1`);
  return { uses: Number(v) };
}

/** "3 of 5", "used up", or "-" for a token without a limit. */
const usesText = (t: PublicToken): string => (t.uses === null ? '-' : t.usesLeft === 0 ? `0 of ${t.uses} (used up)` : `${t.usesLeft} of ${t.uses}`);

/** The expiry, marked when it has passed by the server's clock. */
const expiryText = (t: PublicToken): string => (t.expires === null ? '-' : `${time(t.expires)}${t.expired ? ' (expired)' : ''}`);

function scopeFrom(o: TokenFlags): string {
  const given = [o.admin ? 'admin' : null, o.view ? 'view' : null, o.operate ? 'operate' : null, o.publish ? `publish:${o.publish}` : null, o.publishClass ? `publish-class:${o.publishClass}` : null, o.fetch ? `fetch:${o.fetch}` : null, o.fetchClass ? `fetch-class:${o.fetchClass}` : null].filter((s): s is string => s !== null);
  if (given.length !== 1) throw new RuError('USAGE', 'give exactly one of --admin, --view, --operate, --publish HOST, --publish-class CLASS, --fetch HOST, --fetch-class CLASS');
  return given[0]!;
}

/** How to use a new token, by scope (TOKEN stands for it: the secret is not repeated on stderr). */
function hints(scope: string, server: string): string[] {
  const token = '$TOKEN';
  const [kind, value] = !scope.includes(':') ? [scope, ''] : [scope.slice(0, scope.indexOf(':')), scope.slice(scope.indexOf(':') + 1)];
  const u = new URL(server);
  const withCreds = `${u.protocol}//rear:${token}@${u.host}`;
  if (kind === 'admin') return [`rear-update admin host list --server ${server} --token ${token}`];
  if (kind === 'view') return [`rear-update admin recoveries --server ${server} --token ${token}`, `the web console: ${server}/ (sign in with the token)`];
  if (kind === 'operate') return [`rear-update admin pending --hints --server ${server} --token ${token}`, `rear-update admin assign PENDING-ID HOST --server ${server} --token ${token}`];
  if (kind === 'publish') return [`on ${value}: REAR_UPDATE_SERVER=${server} REAR_UPDATE_TOKEN=${token} rear-update publish --host ${value}`];
  if (kind === 'publish-class') return [`REAR_UPDATE_SERVER=${server} REAR_UPDATE_TOKEN=${token} rear-update publish --layer NAME --class '${value}' --root DIR --path PATH`];
  const host = kind === 'fetch' ? value : 'HOST';
  return [
    `in the rescue system: rear-update apply --server ${server} --token ${token}${kind === 'fetch' ? ` ${value}` : ''}`,
    `ReaR's own hook:      RECOVERY_UPDATE_URL=${withCreds}/rear/${host}.tar.gz`,
    `DRLM (rear recover):  DRLM_MANAGED=y DRLM_SERVER=${u.host} DRLM_ID=${host} DRLM_REST_OPTS="-H 'Authorization: ${token}'"`,
  ];
}

export function registerToken(admin: Command): void {
  const token = admin.command('token').description('create, list and revoke API tokens');

  leaf(token, 'create', 'create a token; its secret is printed once, on stdout')
    .option('--admin', 'every admin route and every host')
    .option('--view', 'read what an admin reads (hosts, versions, diffs, tokens, audit, recoveries, logs, pending machines and their hints); change nothing')
    .option('--operate', 'what --view reads, and assign and forget pending machines (the disaster-time role); no publish, pin, or tokens')
    .option('--publish <host>', 'publish (and fetch) one host')
    .option('--publish-class <class>', 'publish layers of one hardware class (drivers, firmware, scripts) and nothing else; \'*\' for the every-class layers')
    .option('--fetch <host>', 'fetch one host\'s bundle, config and logs')
    .option('--fetch-class <class>', 'fetch any host of one hardware class (one token for a class-wide rescue image)')
    .option('--label <text>', 'a note for token list: who or what uses it')
    .option('--expires <duration|time>', `refused (401 AUTH_EXPIRED) from then on: a span from now (${DURATION_EXAMPLES}) or an ISO 8601 time`)
    .option('--uses <n>', 'fetch tokens only: good for N bundle downloads, then refused (401 AUTH_USED_UP); a resumed download is not a second use')
    .addHelpText('after', `
Give exactly one scope. A --publish or --fetch host must exist. --view and --operate are the
console roles (docs/console.md): people watching a recovery, and those who assign machines
during one, without the admin's power over bundles, keys and tokens. The token alone goes to
stdout (so T=$(rear-update admin token create ...) works); how to use it goes to stderr.

--expires is turned into an absolute time by the server's clock. --uses counts bundle
downloads (the api bundle route and ReaR's /rear/ URL): one is spent when a download starts,
before any byte is sent, so two machines racing for the last use cannot both get the bundle; a
resume of that download (If-Range, as apply does after a cut) costs nothing; a resolve, a HEAD
or a DRLM config read costs nothing. A used-up token is refused everywhere except for
resuming a download it spent a use on and uploading the recovery log.
${SERVER_HELP}

Examples:
  rear-update admin token create --publish e229 --label "cron on e229"
  rear-update admin token create --fetch-class typeA --label "typeA rescue ISO" --expires 30d
  rear-update admin token create --publish-class typeC --label "driver builds for typeC"
  rear-update admin token create --fetch e229 --uses 1 --expires 12h --label "recovery of e229"
  rear-update admin token create --view --label "service desk" --expires 30d
  rear-update admin token create --operate --label "on-call bob" --expires 12h
  rear-update admin token create --admin --label alice --expires 1w`)
    .action(async (o: TokenFlags) => {
      const scope = scopeFrom(o);
      const body = { scope, ...(o.label !== undefined ? { label: o.label } : {}), ...expiryFrom(o.expires), ...usesFrom(o.uses) };
      const client = api(o);
      const r = await client.request<PublicToken & { token: string }>('POST', '/api/v1/tokens', { body });
      if (o.json) return printJson(r.body);
      out(r.body.token);
      note(`token ${r.body.id} created with scope ${r.body.scope}${r.body.label ? ` (${r.body.label})` : ''}.`);
      if (r.body.expires) note(`it expires at ${time(r.body.expires)}.`);
      if (r.body.uses !== null) note(`it is good for ${r.body.uses} bundle download${r.body.uses === 1 ? '' : 's'}.`);
      note('this is the only time the token is shown: store it now (the server keeps only its hash). Use it as $TOKEN:');
      const server = client.base.href.replace(/\/$/, '');
      for (const h of hints(r.body.scope, server)) process.stderr.write(`  ${h}\n`);
      note(`revoke it with: rear-update admin token revoke ${r.body.id}`);
    });

  leaf(token, 'list', 'list tokens (id, scope, label, created, revoked, expiry, uses left, last use; never secrets)')
    .addHelpText('after', `
LAST USED and FROM are when and from which address a request last presented the token. The
server writes them at most once a minute per token (at once when the address changes), so
they may lag by that much; the audit log (admin audit --token-id ID) has every fetch.
${SERVER_HELP}

Example:
  rear-update admin token list`)
    .action(async (o: TokenFlags) => {
      const r = await api(o).request<{ tokens: PublicToken[] }>('GET', '/api/v1/tokens');
      if (o.json) return printJson(r.body);
      printTable(
        ['ID', 'SCOPE', 'LABEL', 'CREATED', 'REVOKED', 'EXPIRES', 'USES LEFT', 'LAST USED', 'FROM'],
        r.body.tokens.map((t) => [t.id, t.scope, dash(t.label), time(t.created), time(t.revoked), expiryText(t), usesText(t), time(t.lastUsed), dash(t.lastAddress)]),
        'no tokens',
      );
    });

  leaf(token, 'revoke <id>', 'revoke a token: it is refused from now on (401 AUTH_INVALID)')
    .addHelpText('after', `
The id is the part after ru_ in the token, as token list shows it. Revoking twice keeps the first time.
${SERVER_HELP}

Example:
  rear-update admin token revoke 3f2a9c01b7de`)
    .action(async (id: string, o: TokenFlags) => {
      const r = await api(o).request<{ token: PublicToken }>('DELETE', `/api/v1/tokens/${seg(id)}`);
      if (o.json) return printJson(r.body);
      out(`token ${r.body.token.id} (${r.body.token.scope}) revoked at ${time(r.body.token.revoked)}`);
    });
}
