// `rear-update self-update`: on an original system, fetch the one-file executable from the
// server this host publishes to (GET /download/rear-update), check it against the server's key
// as pinned on this machine (REAR_UPDATE_PUBKEY, by default /etc/rear-update/keys/server.pub) and
// against the sha256 and size the server announced, and put it in place of the running
// executable atomically: written beside it, fsync'd, made executable with the old file's mode,
// tried once (`--version`), renamed over the old one, and the directory fsync'd. Whatever fails,
// the old executable is untouched and the temporary file is gone.

import { chmodSync, closeSync, createReadStream, existsSync, fsyncSync, openSync, readFileSync, realpathSync, renameSync, rmSync, statSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { basename, dirname, join } from 'node:path';
import type { Command } from 'commander';
import { download } from '../../adapters/http/download.ts';
import { checkDownload } from '../../core/download-statement.ts';
import { RuError } from '../../core/errors.ts';
import { parsePublicKey } from '../../core/signature.ts';
import { note, out, printJson } from '../output.ts';
import { PUBLISH_CONF, PUBLISH_CONF_DEFAULTS } from '../publish-state.ts';
import { addServerOptions, clientFrom, type ServerFlags } from '../server-options.ts';
import { effectiveEnv } from '../settings.ts';
import { VERSION } from '../version.ts';

interface SelfUpdateFlags extends ServerFlags {
  pubkey?: string;
  check?: boolean;
  json?: boolean;
}

interface Listed {
  files: { name: string; size: number; sha256: string }[];
}

const CLIENT = 'rear-update';

async function fileSha256(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const c of createReadStream(path) as AsyncIterable<Buffer>) h.update(c);
  return h.digest('hex');
}

/** The running one-file executable (its real path), or the refusal that says why there is none. */
async function runningExecutable(): Promise<string> {
  const sea = await import('node:sea').catch(() => null);
  if (!sea?.isSea()) {
    throw new RuError('SELF_UPDATE_UNSUPPORTED', `this rear-update runs under node (${process.execPath} ${process.argv[1] ?? ''}), not as the one-file executable: update the npm package, or install the executable or a package from the server (GET /download/)`);
  }
  return realpathSync(process.execPath);
}

export function registerSelfUpdate(program: Command): void {
  const cmd = program
    .command('self-update')
    .description('replace this one-file rear-update executable with the server\'s, after checking the server\'s signature over it with the pinned key');
  addServerOptions(cmd)
    .option('--pubkey <file>', `the server's public key to check the signature with (env REAR_UPDATE_PUBKEY; default ${PUBLISH_CONF_DEFAULTS.REAR_UPDATE_PUBKEY})`)
    .option('--check', 'only say whether the server has a different executable; replace nothing')
    .option('--json', 'machine-readable output')
    .addHelpText('after', `
Settings come from flags, the environment, then ${PUBLISH_CONF} (REAR_UPDATE_SERVER,
REAR_UPDATE_TOKEN_FILE, REAR_UPDATE_CACERT, REAR_UPDATE_PUBKEY). Any valid token of the server
may download the executable; a host's publish token is the usual one.

The new executable is refused, and nothing is replaced (error SELF_UPDATE_REFUSED), unless the
server's signature over its name, sha256 and size verifies with the pinned key and it runs.
After a key rotation on the server, pin the new key first (docs/operations.md). Only the
one-file executable can replace itself (error SELF_UPDATE_UNSUPPORTED otherwise); a copy that
install-rear put into /usr/local/sbin for the rescue image is updated by running install-rear
again.

Examples:
  rear-update self-update --check
  rear-update self-update --server https://rear-server:8443 --token-file /etc/rear-update/token`)
    .action(async (o: SelfUpdateFlags) => {
      const target = await runningExecutable();
      const env = effectiveEnv();
      const keyFile = o.pubkey ?? (env.REAR_UPDATE_PUBKEY || PUBLISH_CONF_DEFAULTS.REAR_UPDATE_PUBKEY);
      let pem: string;
      try {
        pem = readFileSync(keyFile, 'utf8');
      } catch (e) {
        throw new RuError('KEY_NOT_FOUND', `${keyFile}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}: the server's public key must be pinned on this machine to check the executable (--pubkey, REAR_UPDATE_PUBKEY)`, { path: keyFile });
      }
      const key = parsePublicKey(pem, keyFile);
      const api = clientFrom(o, env);
      const mine = { sha256: await fileSha256(target), size: statSync(target).size };
      const listed = (await api.request<Listed>('GET', '/download/')).body;
      const offered = listed.files?.find((f) => f.name === CLIENT);
      if (!offered) throw new RuError('SERVER_REFUSED', `${api.base.origin} offers no ${CLIENT} executable (GET /download/ does not list it)`, { server: api.base.origin });
      const current = offered.sha256 === mine.sha256 && offered.size === mine.size;
      if (o.check || current) {
        if (o.json) printJson({ executable: target, version: VERSION, sha256: mine.sha256, offered, current });
        else out(current ? `${target} is the server's executable already (sha256 ${mine.sha256.slice(0, 16)}...)` : `the server offers another executable: sha256 ${offered.sha256.slice(0, 16)}..., ${offered.size} bytes (this one: ${mine.sha256.slice(0, 16)}...); run rear-update self-update`);
        return;
      }
      const sig = await api.request<unknown>('GET', `/download/${CLIENT}.sig`);
      const record = Buffer.from(`${typeof sig.body === 'string' ? sig.body.trim() : JSON.stringify(sig.body)}\n`);

      const tmp = join(dirname(target), `.${basename(target)}.self-update-${process.pid}`);
      try {
        await download(api.url(`/download/${CLIENT}`).href, tmp, {
          headers: api.token ? { authorization: `Bearer ${api.token}` } : {},
          ...(api.cacert ? { cacert: api.cacert } : {}),
        });
        const got = { name: CLIENT, sha256: await fileSha256(tmp), size: statSync(tmp).size };
        if (got.sha256 !== offered.sha256 || got.size !== offered.size) {
          throw new RuError('SELF_UPDATE_REFUSED', `the downloaded executable (sha256 ${got.sha256}, ${got.size} bytes) is not the one the server announced (sha256 ${offered.sha256}, ${offered.size} bytes); nothing was replaced`, { sha256: got.sha256 });
        }
        let verdict;
        try {
          verdict = checkDownload(got, record, [key]);
        } catch (e) {
          throw new RuError('SELF_UPDATE_REFUSED', `the server's signature record is malformed (${(e as Error).message}); nothing was replaced`);
        }
        if (verdict.status !== 'valid') {
          const why = verdict.status === 'invalid' ? `the signature by ${verdict.fingerprint} does not match this executable: it was altered or the signature forged`
            : verdict.status === 'unknown-key' ? `it is signed by ${verdict.fingerprint}, not by the pinned key ${key.fingerprint} (${keyFile})`
              : 'it is not signed';
          throw new RuError('SELF_UPDATE_REFUSED', `${why}; nothing was replaced`, { key: key.fingerprint });
        }
        chmodSync(tmp, statSync(target).mode & 0o7777);
        const fd = openSync(tmp, 'r');
        try {
          fsyncSync(fd);
        } finally {
          closeSync(fd);
        }
        const tried = spawnSync(tmp, ['--version'], { encoding: 'utf8', timeout: 60_000, env: { ...process.env, REAR_UPDATE_DEBUG: '' } });
        if (tried.status !== 0) throw new RuError('SELF_UPDATE_REFUSED', `the downloaded executable does not run here (--version: ${tried.error?.message ?? `exit ${tried.status}`}); nothing was replaced`);
        renameSync(tmp, target);
        const dfd = openSync(dirname(target), 'r');
        try {
          fsyncSync(dfd);
        } finally {
          closeSync(dfd);
        }
        const version = tried.stdout.trim();
        if (o.json) printJson({ executable: target, replaced: true, version, sha256: got.sha256, key: key.fingerprint });
        else out(`replaced ${target}: version ${version} (was ${VERSION}), sha256 ${got.sha256.slice(0, 16)}..., signed by ${key.fingerprint}`);
        if (target !== '/usr/local/sbin/rear-update' && existsSync('/usr/local/sbin/rear-update')) note('the copy install-rear keeps for rescue images (/usr/local/sbin/rear-update) changes with the next rear-update install-rear');
      } finally {
        rmSync(tmp, { force: true });
      }
    });
}
