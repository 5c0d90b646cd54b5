// `rear-update admin key rotate|retire|list`: the server's signing key over time
// (server/key-ring.ts). A rotation is vouched for by the old key in a statement that the server
// hands out with every bundle, so images that trust only the old key follow it.

import type { Command } from 'commander';
import { note, out, printJson } from '../../output.ts';
import { api, dash, leaf, printTable, SERVER_HELP, time, type AdminFlags } from './common.ts';

interface KeyInfo {
  fingerprint: string;
  status: string;
  since: string | null;
  retired: string | null;
  retiredBy: string | null;
}

export function registerKey(admin: Command): void {
  const key = admin.command('key').description('the server\'s signing key: rotate it, retire former keys, list them');

  leaf(key, 'rotate', 'make a new signing key; the current one signs a rotation statement for it')
    .addHelpText('after', `
The server signs bundles with the new key from the next request on, without a restart, and
hands out the rotation statement with every bundle (header X-Rear-Update-Key-Statements, and
GET /api/v1/key-statements). Rescue images that trust only the old key (DATA/server.pub of
before) accept the new key through it and record it; DATA/server.pub becomes the new key (put
it into images you build from now on). The old key stays in DATA/signing/previous/ (0600).
When every image trusts the new key, retire the old one: admin key retire OLD.
Other server processes sharing the data directory keep the old key until restarted.
${SERVER_HELP}

Examples:
  rear-update admin key rotate
  rear-update admin key list`)
    .action(async (o: AdminFlags) => {
      const r = await api(o).request<{ previous: string; current: string; statement: unknown }>('POST', '/api/v1/keys/rotate', { body: {} });
      if (o.json) return printJson(r.body);
      out(`rotated: ${r.body.previous} -> ${r.body.current}`);
      note(`the server signs with ${r.body.current} from now on; images that trust ${r.body.previous} follow the rotation statement it serves`);
      note(`retire the old key once every image trusts the new one: rear-update admin key retire ${r.body.previous}`);
    });

  leaf(key, 'retire <fingerprint>', 'retire a former signing key: a retirement statement by the current key; what it signed is no longer served')
    .addHelpText('after', `
Images that trust the current key without the retired one (pinned, or recorded after a
rotation) then refuse bundles signed by the retired key (KEY_RETIRED) and ignore its
statements. Images that still trust only the retired key lose the rotation statement it
signed: rebuild them with the current DATA/server.pub first. The current key cannot be
retired (rotate first). Retiring twice changes nothing.
${SERVER_HELP}

Examples:
  rear-update admin key retire ed25519:3f9a1c22b07e5d41`)
    .action(async (fp: string, o: AdminFlags) => {
      const r = await api(o).request<{ retired: string; already: boolean; statement: { signer: string } }>('POST', '/api/v1/keys/retire', { body: { fingerprint: fp } });
      if (o.json) return printJson(r.body);
      out(`${r.body.already ? 'already retired' : 'retired'}: ${r.body.retired} (statement signed by ${r.body.statement.signer})`);
    });

  leaf(key, 'list', 'the server\'s signing keys: current, previous, retired; and the statements it serves')
    .action(async (o: AdminFlags) => {
      const r = await api(o).request<{ current: string; keys: KeyInfo[]; served: { kind: string; signer: string; fingerprint?: string; retired?: string }[] }>('GET', '/api/v1/keys');
      if (o.json) return printJson(r.body);
      printTable(['KEY', 'STATUS', 'SINCE', 'RETIRED', 'RETIRED BY'], r.body.keys.map((k) => [k.fingerprint, k.status, time(k.since), time(k.retired), dash(k.retiredBy)]), 'no keys');
      out('');
      out(`served statements: ${r.body.served.length === 0 ? 'none' : ''}`);
      for (const s of r.body.served) out(`  ${s.kind === 'rotate' ? `rotate ${s.signer} -> ${s.fingerprint}` : `retire ${s.retired} (by ${s.signer})`}`);
    });
}
