// `rear-update doctor` on an original system (a machine whose configuration is published): is
// ReaR there, is local.conf readable and install-rear's block in it current, does the server
// answer over verified TLS, does the token work and may it publish this host, is the server's
// key the pinned one, did the last publish work, does the server hold what this host would
// publish now, and is the rescue image newer than the configuration. Everything is read below
// --root, so the checks run against a test tree as against /. A check that an earlier failure
// keeps from running is a SKIP that says why. Judgements and thresholds: core/doctor.ts.

import { lstatSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { connect as netConnect, isIP } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as tlsConnect, type PeerCertificate } from 'node:tls';
import { ApiClient, parseServerUrl } from '../../adapters/http/api-client.ts';
import { INSTALL_BLOCK, LOCAL_CONF } from '../../adapters/rear/install.ts';
import {
  fail, imageVerdict, ok, publishVerdict, rearVersionVerdict, resultOf, scopeVerdict, skip, TOKEN_EXPIRY_WARN_MS, warn, type CheckResult,
} from '../../core/doctor.ts';
import { isRuError } from '../../core/errors.ts';
import { computeTrust, findTrusted, parseStatement, describeVia, type Sourced as SourcedStatement } from '../../core/key-statements.ts';
import { contentDigest } from '../../core/manifest.ts';
import { hasBlock } from '../../core/marked-block.ts';
import { parsePublicKey } from '../../core/signature.ts';
import type { TokenSelf } from '../../server/routes/self.ts';
import { DEFAULT_PATHS, pack } from '../commands/pack.ts';
import { PUBLISH_STATE, readPublishState } from '../publish-state.ts';
import { parseSettings, SETTINGS_FILE, shellQuote, type SettingKey } from '../settings.ts';
import { resolveConfig, type OriginalConfig, type OriginalFlags } from './config.ts';
import { blockIsCurrent, expectedInstallBlock, missingLines } from './install-block.ts';

const TIMEOUT_MS = 10_000;
const ISO_DIR = 'var/lib/rear/output';

const errText = (e: unknown): string => (e instanceof Error ? e.message : String(e));

/** What the later checks learn from the earlier ones. */
interface Found {
  localConf: string | null;
  url: URL | null;
  reachable: boolean;
  tlsOk: boolean;
  cacert: string | null;
  self: TokenSelf | null;
  /** Why the token check did not give the host's newest version. */
  selfMissing: string;
  tokenRouteMissing: boolean;
}

export async function originalChecks(o: OriginalFlags, now: Date): Promise<CheckResult[]> {
  const cfg = resolveConfig(o);
  const f: Found = { localConf: null, url: null, reachable: false, tlsOk: false, cacert: null, self: null, selfMissing: 'the token check did not pass', tokenRouteMissing: false };
  const rs: CheckResult[] = [];
  rs.push(checkRear(cfg.root, o.rearShare));
  rs.push(checkLocalConf(cfg.root, f));
  rs.push(checkBlock(cfg.root, f));
  rs.push(await checkServer(cfg, f));
  rs.push(await checkTls(cfg, f));
  rs.push(await checkToken(cfg, f, now));
  rs.push(await checkServerKey(cfg, f));
  rs.push(checkLastPublish(cfg, now));
  rs.push(await checkServerConfig(cfg, f));
  rs.push(checkImage(cfg.root));
  return rs;
}

// ---- ReaR on this system ----

function checkRear(root: string, share: string): CheckResult {
  const name = 'rear';
  const exe = join(root, 'usr/sbin/rear');
  const shareDir = join(root, share.replace(/^\/+/, ''));
  let text: string;
  try {
    text = readFileSync(exe, 'utf8');
  } catch (e) {
    return fail(name, `ReaR is not installed: ${exe}: ${(e as NodeJS.ErrnoException).code ?? errText(e)}`, 'apt-get install rear   (or dnf install rear / zypper install rear)');
  }
  try {
    statSync(join(shareDir, 'conf/default.conf'));
  } catch {
    return fail(name, `${exe} is there but ReaR's share directory ${shareDir} is not (no conf/default.conf)`, 'apt-get install --reinstall rear');
  }
  const version = /^\s*(?:readonly\s+)?VERSION=["']?([0-9][^"'\s]*)/m.exec(text)?.[1] ?? null;
  return resultOf(name, rearVersionVerdict(version, exe), 'apt-get install rear   (a current release; rear -V shows the version)');
}

function checkLocalConf(root: string, f: Found): CheckResult {
  const name = 'local.conf';
  const path = join(root, LOCAL_CONF);
  try {
    f.localConf = readFileSync(path, 'utf8');
    return ok(name, `${path} readable (${f.localConf.split('\n').length - 1} lines)`);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return fail(name, `${path} does not exist`, `touch ${path}; then rear-update install-rear ... (or apt-get install --reinstall rear)`);
    return fail(name, `${path} is not readable: ${code ?? errText(e)}`, `make ${path} a readable regular file (chmod 0644 ${path}), or restore it from the rear package: apt-get install --reinstall rear`);
  }
}

/** The install-rear command line that would write the block again with this system's settings (the image's settings.conf says them). */
function installRearAgain(root: string): string {
  const parts = ['rear-update install-rear'];
  let v: Partial<Record<SettingKey, string>>;
  try {
    v = parseSettings(readFileSync(join(root, SETTINGS_FILE), 'utf8'));
  } catch {
    return 'rear-update install-rear --server URL --token FETCH_TOKEN [--class CLASS] && rear mkrescue';
  }
  parts.push(`--server ${v.REAR_UPDATE_SERVER ? shellQuote(v.REAR_UPDATE_SERVER) : 'URL'}`);
  if (v.REAR_UPDATE_TOKEN) parts.push(`--token "$(. ${SETTINGS_FILE}; echo "$REAR_UPDATE_TOKEN")"`);
  if (v.REAR_UPDATE_CLASS) parts.push(`--class ${shellQuote(v.REAR_UPDATE_CLASS)}`);
  if (v.REAR_UPDATE_ID_FROM) parts.push(`--id-from ${shellQuote(v.REAR_UPDATE_ID_FROM)}`);
  if (v.REAR_UPDATE_WAIT) parts.push(`--wait ${shellQuote(v.REAR_UPDATE_WAIT)}`);
  for (const k of (v.REAR_UPDATE_KEEP ?? '').split(' ').filter((x) => x !== '')) parts.push(`--keep ${shellQuote(k)}`);
  if (v.REAR_UPDATE_CACERT) parts.push(`--cacert ${shellQuote(v.REAR_UPDATE_CACERT)}`);
  return `${parts.join(' ')} && rear mkrescue`;
}

function checkBlock(root: string, f: Found): CheckResult {
  const name = 'install-block';
  if (f.localConf === null) return skip(name, 'local.conf is not readable');
  const path = join(root, LOCAL_CONF);
  if (!hasBlock(f.localConf, INSTALL_BLOCK)) {
    return fail(name, `${path} has no "# BEGIN rear-update ${INSTALL_BLOCK}" block: rescue images made here do not carry rear-update`, installRearAgain(root));
  }
  let expected: string;
  try {
    expected = expectedInstallBlock(root);
  } catch (e) {
    return warn(name, `present; cannot tell whether it is current: ${errText(e)}`, installRearAgain(root));
  }
  if (blockIsCurrent(f.localConf, expected)) return ok(name, `present in ${path} and current`);
  const missing = missingLines(f.localConf, expected);
  return fail(name, `present in ${path} but not what install-rear writes now: ${missing.length ? `lacks ${missing.map((l) => JSON.stringify(l)).join(', ')}` : 'it holds lines install-rear no longer writes'}`, installRearAgain(root));
}

// ---- the server ----

const confFix = (cfg: OriginalConfig, line: string): string => `set ${line} in ${cfg.confFile.replace(/^\/\//, '/')}`;

function hostPort(u: URL): { host: string; port: number } {
  const host = u.hostname.replace(/^\[|\]$/g, '');
  return { host, port: u.port ? Number(u.port) : u.protocol === 'https:' ? 443 : 80 };
}

async function checkServer(cfg: OriginalConfig, f: Found): Promise<CheckResult> {
  const name = 'server';
  if (cfg.server === null) {
    return fail(name, `no server configured (--server, REAR_UPDATE_SERVER, or ${cfg.confFile})${cfg.confProblem ? `; ${cfg.confProblem}` : ''}`, confFix(cfg, 'REAR_UPDATE_SERVER=https://rear-server:8443'));
  }
  try {
    f.url = parseServerUrl(cfg.server.value);
  } catch (e) {
    return fail(name, `${cfg.server.value} (${cfg.server.from}): ${errText(e)}`, confFix(cfg, 'REAR_UPDATE_SERVER=https://rear-server:8443'));
  }
  const { host, port } = hostPort(f.url);
  try {
    await new Promise<void>((resolve, reject) => {
      const s = netConnect({ host, port, timeout: TIMEOUT_MS });
      s.once('connect', () => {
        s.destroy();
        resolve();
      });
      s.once('timeout', () => s.destroy(Object.assign(new Error(`no answer within ${TIMEOUT_MS / 1000} s`), { code: 'ETIMEDOUT' })));
      s.once('error', reject);
    });
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    return fail(name, `${f.url.origin} (${cfg.server.from}) is not reachable: ${code ?? errText(e)}`,
      `check the URL, the network, and on the server: systemctl status rear-update-server   (try: curl -v ${f.url.origin}/healthz)`);
  }
  f.reachable = true;
  return ok(name, `${f.url.origin} accepts connections (${cfg.server.from})`);
}

async function checkTls(cfg: OriginalConfig, f: Found): Promise<CheckResult> {
  const name = 'tls';
  if (!f.url || !f.reachable) return skip(name, 'the server is not reachable');
  if (f.url.protocol === 'http:') {
    f.tlsOk = true;
    return warn(name, `${f.url.origin} is plain http: tokens and configurations cross the network unencrypted`,
      `serve with --tls-cert/--tls-key, then ${confFix(cfg, `REAR_UPDATE_SERVER=https://${f.url.host}`)} and REAR_UPDATE_CACERT=/etc/rear-update/ca.pem`);
  }
  if (cfg.cacert) {
    try {
      f.cacert = readFileSync(cfg.cacert.value, 'utf8');
    } catch (e) {
      return fail(name, `CA certificate ${cfg.cacert.value} (${cfg.cacert.from}) is not readable: ${errText(e)}`, `copy the CA that signed the server's certificate to ${cfg.cacert.value}`);
    }
  }
  const { host, port } = hostPort(f.url);
  const trusting = cfg.cacert ? `CA ${cfg.cacert.value}` : 'the system\'s CAs';
  try {
    const cert = await new Promise<PeerCertificate>((resolve, reject) => {
      const s = tlsConnect({ host, port, ...(isIP(host) ? {} : { servername: host }), ...(f.cacert ? { ca: f.cacert } : {}), timeout: TIMEOUT_MS });
      s.once('secureConnect', () => {
        const c = s.getPeerCertificate();
        s.destroy();
        resolve(c);
      });
      s.once('timeout', () => s.destroy(Object.assign(new Error(`no TLS handshake within ${TIMEOUT_MS / 1000} s`), { code: 'ETIMEDOUT' })));
      s.once('error', reject);
    });
    f.tlsOk = true;
    const left = Date.parse(cert.valid_to) - Date.now();
    const subject = cert.subject?.CN ?? host;
    if (left < TOKEN_EXPIRY_WARN_MS) {
      return warn(name, `certificate of ${subject} verified with ${trusting}, but it expires ${cert.valid_to}`, 'renew the server\'s certificate (serve --tls-cert) and restart: systemctl restart rear-update-server');
    }
    return ok(name, `certificate of ${subject} verified with ${trusting} (valid until ${cert.valid_to})`);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    return fail(name, `${f.url.origin}: the certificate is not trusted with ${trusting}: ${code ?? ''} ${errText(e)}`.trim(),
      `${confFix(cfg, 'REAR_UPDATE_CACERT=/etc/rear-update/ca.pem')} (the CA that signed the server's certificate); see: openssl s_client -connect ${f.url.host} -showcerts`);
  }
}

function client(f: Found, token: string | null): ApiClient {
  return new ApiClient({ server: f.url!.href, token, cacert: f.cacert, retries: 0, timeoutMs: TIMEOUT_MS });
}

async function checkToken(cfg: OriginalConfig, f: Found, now: Date): Promise<CheckResult> {
  const name = 'token';
  const host = cfg.host.value;
  const newToken = `rear-update admin token create --publish ${host}   (on the admin machine; put it in /etc/rear-update/token, 0600)`;
  if (cfg.token === null) return fail(name, `no token configured (--token, REAR_UPDATE_TOKEN, REAR_UPDATE_TOKEN_FILE, or /etc/rear-update/token below ${cfg.root})`, newToken);
  if ('problem' in cfg.token) return fail(name, `the token cannot be read (${cfg.token.from}): ${cfg.token.problem}`, newToken);
  if (!f.tlsOk) return skip(name, f.reachable ? 'TLS is not verified' : 'the server is not reachable');
  let self: TokenSelf;
  try {
    self = (await client(f, cfg.token.value).request<TokenSelf>('GET', '/api/v1/token', { query: { host } })).body;
  } catch (e) {
    if (isRuError(e) && e.code === 'SERVER_REFUSED' && e.context.status === 404) {
      f.tokenRouteMissing = true;
      f.selfMissing = 'the server has no GET /api/v1/token';
      return warn(name, 'the server has no GET /api/v1/token (older than this client): cannot tell the token\'s scope', 'upgrade the server: apt-get install --only-upgrade rear-update (on the server)');
    }
    const code = isRuError(e) ? e.code : 'ERROR';
    return fail(name, `refused (${cfg.token.from}): ${code}: ${errText(e)}`, newToken);
  }
  const t = self.token;
  const v = scopeVerdict(t.scope, host);
  if (v.status !== 'OK') {
    f.selfMissing = 'the token may not publish this host';
    return fail(name, `token ${t.id} (${cfg.token.from}): ${v.detail}`, newToken);
  }
  if (self.host?.known === false && t.scope !== 'admin') {
    // A publish would be refused (HOST_UNKNOWN): there is nothing to compare the configuration with.
    f.selfMissing = 'the server does not know this host';
    return fail(name, `token ${t.id} is for host ${host}, which the server does not know`, `rear-update admin host add ${host} --class CLASS   (on the admin machine)`);
  }
  f.self = self;
  const expires = t.expires === null ? 'never expires' : `expires ${t.expires}`;
  if (t.expires !== null && Date.parse(t.expires) - now.getTime() < TOKEN_EXPIRY_WARN_MS) {
    return warn(name, `token ${t.id}, ${v.detail}, ${expires}`, newToken);
  }
  return ok(name, `token ${t.id}, ${v.detail}, ${expires} (${cfg.token.from})`);
}

async function checkServerKey(cfg: OriginalConfig, f: Found): Promise<CheckResult> {
  const name = 'server-key';
  if (!f.tlsOk) return skip(name, f.reachable ? 'TLS is not verified' : 'the server is not reachable');
  const api = client(f, null);
  const repin = `curl -fsS ${f.url!.origin}/api/v1/server-key -o /etc/rear-update/keys/server.pub   (after comparing its fingerprint with the one \`rear-update serve\` printed), then run install-rear again and rear mkrescue`;
  let served;
  try {
    served = parsePublicKey(String((await api.request<string>('GET', '/api/v1/server-key')).body), `${f.url!.origin}/api/v1/server-key`);
  } catch (e) {
    return fail(name, `the server's key could not be read: ${errText(e)}`, `curl -v ${f.url!.origin}/api/v1/server-key`);
  }
  if (cfg.pubkey === null) {
    return warn(name, `no pinned key (REAR_UPDATE_PUBKEY, or /etc/rear-update/keys/server.pub below ${cfg.root}); the server's key is ${served.fingerprint}`, repin);
  }
  let pinned;
  try {
    pinned = parsePublicKey(readFileSync(cfg.pubkey.value, 'utf8'), cfg.pubkey.value);
  } catch (e) {
    return fail(name, `the pinned key ${cfg.pubkey.value} (${cfg.pubkey.from}) is not readable: ${errText(e)}`, repin);
  }
  if (pinned.fingerprint === served.fingerprint) return ok(name, `${served.fingerprint}, as pinned in ${cfg.pubkey.value}`);
  // A rotation the pinned key signed keeps images working: a WARN, with the chain.
  let chain: string | null = null;
  try {
    const body = (await api.request<{ statements?: unknown }>('GET', '/api/v1/key-statements')).body;
    const list = Array.isArray(body.statements) ? body.statements.slice(0, 64) : [];
    const sourced: SourcedStatement[] = [];
    list.forEach((s, i) => {
      try {
        sourced.push({ statement: parseStatement(s, `key-statements #${i + 1}`), source: `key-statements #${i + 1}` });
      } catch {
        // a malformed statement counts for nothing
      }
    });
    const k = findTrusted(computeTrust([pinned], sourced), served.fingerprint);
    if (k?.via) chain = describeVia(k.via);
  } catch {
    // no statements: the keys simply differ
  }
  if (chain) return warn(name, `the server's key ${served.fingerprint} is not the pinned ${pinned.fingerprint}, but ${chain}`, repin);
  return fail(name, `the server's key ${served.fingerprint} is not the pinned ${pinned.fingerprint} (${cfg.pubkey.value}), and no rotation statement the pinned key signed leads to it`, repin);
}

// ---- publishes ----

function checkLastPublish(cfg: OriginalConfig, now: Date): CheckResult {
  const s = readPublishState(cfg.root);
  return resultOf('last-publish', publishVerdict(s, now), `rear-update publish   (its outcome is kept in ${join(cfg.root, PUBLISH_STATE)})`);
}

/** The content digest of what `publish` would send now (the server's version digest of the same content). */
async function currentDigest(root: string, host: string): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), 'rear-update-doctor-'));
  try {
    const r = await pack({ root, host, output: join(dir, 'bundle.tar.gz') });
    return contentDigest(r.manifest);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

async function checkServerConfig(cfg: OriginalConfig, f: Found): Promise<CheckResult> {
  const name = 'server-config';
  const host = cfg.host.value;
  const publish = 'rear-update publish';
  // An older server cannot say its digest to a publish token: the last successful publish's note can.
  const state = f.self === null && f.tokenRouteMissing ? readPublishState(cfg.root) : null;
  if (f.self === null && !(state?.ok && state.digest)) return skip(name, f.selfMissing);
  let digest: string;
  try {
    digest = await currentDigest(cfg.root, host);
  } catch (e) {
    return fail(name, `this host's configuration cannot be packed, so publish fails too: ${isRuError(e) ? `${e.code}: ` : ''}${errText(e)}`, `fix what the message names, then ${publish}`);
  }
  const short = (d: string): string => d.slice(0, 12);
  if (f.self === null) {
    const sent = state!.digest!;
    return sent === digest
      ? ok(name, `the last publish sent this configuration (digest ${short(digest)}; from ${PUBLISH_STATE}: the server was not asked)`)
      : fail(name, `this host's configuration changed since the last publish (digest ${short(digest)}, published ${short(sent)})`, publish);
  }
  const latest = f.self.host?.latest ?? null;
  if (latest === null) return fail(name, `the server holds no configuration of host ${host}`, publish);
  if (latest.digest === digest) return ok(name, `the server's version ${latest.version} (${latest.created}) is this host's configuration now (digest ${short(digest)})`);
  return fail(name, `the server's newest version of ${host} (${latest.version}, ${latest.created}, digest ${short(latest.digest)}) is not this host's configuration now (digest ${short(digest)})`, publish);
}

// ---- the rescue image ----

/** The newest modification below `dir` (files and directories, symlinks not followed), at most `depth` levels down. */
function newest(dir: string, rel: string, depth: number, filesOnly: boolean): { path: string; mtime: number } | null {
  let best: { path: string; mtime: number } | null = null;
  const visit = (abs: string, r: string, d: number): void => {
    let st;
    try {
      st = lstatSync(abs);
    } catch {
      return;
    }
    if (!(filesOnly && st.isDirectory()) && (best === null || st.mtimeMs > best.mtime)) best = { path: r, mtime: st.mtimeMs };
    if (!st.isDirectory() || d <= 0) return;
    let names: string[] = [];
    try {
      names = readdirSync(abs);
    } catch {
      return;
    }
    for (const n of names) visit(join(abs, n), `${r}/${n}`, d - 1);
  };
  visit(join(dir, rel), `/${rel}`, depth);
  return best;
}

/** OUTPUT_URL=file:///path in local.conf or site.conf: ReaR copies its output there too. */
function outputDirs(root: string): string[] {
  const dirs = [ISO_DIR];
  for (const f of ['etc/rear/site.conf', LOCAL_CONF]) {
    try {
      const m = /^\s*OUTPUT_URL=["']?file:\/\/(\/[^"'\s]*)/m.exec(readFileSync(join(root, f), 'utf8'));
      if (m) dirs.push(m[1]!.replace(/^\/+/, ''));
    } catch {
      // not there: ReaR's default only
    }
  }
  return dirs;
}

function checkImage(root: string): CheckResult {
  const images = outputDirs(root).map((d) => newest(root, d, 2, true)).filter((x) => x !== null);
  const image = images.sort((a, b) => b.mtime - a.mtime)[0] ?? null;
  const configs = DEFAULT_PATHS.map((p) => newest(root, p, 64, false)).filter((x) => x !== null);
  const config = configs.sort((a, b) => b.mtime - a.mtime)[0] ?? null;
  return resultOf('rescue-image', imageVerdict(image, config), 'rear mkrescue   (or rear mkbackup)');
}

