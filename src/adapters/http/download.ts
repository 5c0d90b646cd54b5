// Fetches a bundle over http(s) into a file. A rescue system's network is the worst case:
// links still negotiating, DHCP just done, proxies that cut long transfers, a private CA.
// So an interrupted transfer resumes instead of starting over, only failures that another
// try can cure are retried, everything else ends at once with a documented code, and the
// user:password of a URL never reaches a message. Only node:http/https: the tool ships as a
// single file onto rescue media and must not grow a dependency tree for this.

import { X509Certificate } from 'node:crypto';
import type { FileHandle } from 'node:fs/promises';
import { open } from 'node:fs/promises';
import http, { type IncomingMessage, type OutgoingHttpHeaders } from 'node:http';
import https from 'node:https';
import { setTimeout as sleep } from 'node:timers/promises';
import { fromSystemError, RuError } from '../../core/errors.ts';

export interface DownloadOptions {
  readonly cacert?: string;            // PEM text of extra CA(s) for https (pass as `ca` to node:https)
  readonly headers?: Record<string, string>; // e.g. Authorization, X-Rear-Update-Nonce: the same on every attempt and resume
  readonly retries?: number;           // default 5 (attempts after the first)
  readonly backoffMs?: number;         // first backoff, default 500, doubling, capped at 8000
  readonly connectTimeoutMs?: number;  // default 15000
  readonly idleTimeoutMs?: number;     // no data for this long => treat as dropped connection, default 30000
  readonly onProgress?: (received: number, total: number | null) => void;
  readonly onRetry?: (attempt: number, reason: string, delayMs: number) => void;
  readonly signal?: AbortSignal;
}

const MAX_REDIRECTS = 5;
const MAX_BACKOFF_MS = 8000;
const ERROR_BODY_LIMIT = 64 * 1024;
// A server's error page can be a whole HTML document; a message needs its gist only.
const ERROR_TEXT_SHOWN = 500;
const MAX_TIMER_MS = 2 ** 31 - 1;
// Credentials must not follow a redirect to another origin (curl behaves the same way).
const ORIGIN_BOUND_HEADERS = ['authorization', 'cookie', 'proxy-authorization'];

/** A failure another attempt may cure: its message is the reason reported to onRetry. */
class Transient extends Error {}

interface Ctx {
  readonly url: URL;
  readonly shown: string;
  readonly dest: string;
  readonly fh: FileHandle;
  readonly headers: Record<string, string>;
  readonly secrets: readonly string[];
  readonly cacert: string | undefined;
  readonly connectTimeoutMs: number;
  readonly idleTimeoutMs: number;
  readonly signal: AbortSignal | undefined;
  readonly onProgress: DownloadOptions['onProgress'];
}

interface Progress {
  written: number;        // bytes in dest, all of them already on disk
  resumed: number;
  total: number | null;
  validator: string | undefined; // for If-Range: never splice two versions of the file
  rangeRestarted: boolean;
}

/** The URL without user:password, for messages and error context. */
const redact = (u: URL): string => {
  const c = new URL(u.href);
  c.username = '';
  c.password = '';
  return c.href;
};

const decode = (s: string): string => {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
};

export async function download(url: string, dest: string, opts: DownloadOptions = {}): Promise<{ bytes: number; resumed: number }> {
  const origin = parseUrl(url);
  const shown = redact(origin);
  const retries = opts.retries !== undefined && Number.isFinite(opts.retries) ? Math.max(0, Math.floor(opts.retries)) : 5;
  const backoffMs = positive(opts.backoffMs, 500);
  const signal = opts.signal;
  signal?.throwIfAborted();
  if (opts.cacert !== undefined) checkCaCerts(opts.cacert);

  const headers: Record<string, string> = { 'user-agent': 'rear-update' };
  for (const [k, v] of Object.entries(opts.headers ?? {})) headers[k.toLowerCase()] = v;
  // A server may echo what it was sent; its text still must not show the password.
  const secrets: string[] = [];
  if (origin.password) {
    secrets.push(decode(origin.password), origin.password);
    secrets.push(Buffer.from(`${decode(origin.username)}:${decode(origin.password)}`).toString('base64'));
  }

  let fh: FileHandle;
  try {
    fh = await open(dest, 'w');
  } catch (e) {
    throw fromSystemError(e, `creating ${dest}`);
  }
  const ctx: Ctx = {
    url: origin, shown, dest, fh, headers, secrets,
    cacert: opts.cacert,
    connectTimeoutMs: positive(opts.connectTimeoutMs, 15000),
    idleTimeoutMs: positive(opts.idleTimeoutMs, 30000),
    signal,
    onProgress: opts.onProgress,
  };
  const st: Progress = { written: 0, resumed: 0, total: null, validator: undefined, rangeRestarted: false };
  try {
    let reason = '';
    for (let attempt = 0; attempt <= retries; attempt++) {
      try {
        if (attempt > 0) {
          const delay = Math.min(backoffMs * 2 ** (attempt - 1), MAX_BACKOFF_MS);
          opts.onRetry?.(attempt, reason, delay);
          await sleep(delay, undefined, signal ? { signal } : {});
        }
        await attemptOnce(ctx, st);
        return { bytes: st.written, resumed: st.resumed };
      } catch (e) {
        // The caller's cancellation wins over whatever error the torn socket produced.
        if (signal?.aborted) throw signal.reason;
        if (!(e instanceof Transient)) throw e;
        reason = e.message;
      }
    }
    const attempts = retries + 1;
    throw new RuError('DOWNLOAD_FAILED', `could not download ${shown} (${attempts} attempt${attempts === 1 ? '' : 's'}): ${reason}`, { url: shown, reason, attempts });
  } finally {
    await fh.close().catch(() => undefined);
  }
}

function parseUrl(url: string): URL {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new RuError('USAGE', `not a valid URL: ${url.replace(/\/\/[^/?#]*@/, '//')}`);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') {
    throw new RuError('USAGE', `${redact(u)}: only http: and https: URLs can be downloaded`);
  }
  return u;
}

function positive(v: number | undefined, fallback: number): number {
  return v !== undefined && Number.isFinite(v) && v > 0 ? Math.min(v, MAX_TIMER_MS) : fallback;
}

/** One attempt: request (resuming if dest already holds a prefix), follow redirects, stream. */
async function attemptOnce(ctx: Ctx, st: Progress): Promise<void> {
  for (;;) {
    const from = st.written;
    const headers: Record<string, string> = { ...ctx.headers };
    if (from > 0) {
      headers.range = `bytes=${from}-`;
      if (st.validator !== undefined) headers['if-range'] = st.validator;
    }
    const { ex, url } = await follow(ctx, headers);
    const res = ex.res;
    const status = res.statusCode ?? 0;
    const where = url.href === ctx.url.href ? ctx.shown : `${ctx.shown} (redirected to ${url.origin}${url.pathname})`;

    if (status === 416 && from > 0) {
      const total = contentRange(res.headers['content-range'])?.total;
      res.destroy();
      // The earlier connection died after the last byte but before the response ended.
      if (total !== undefined && total === from && (st.total === null || st.total === from)) return;
      if (!st.rangeRestarted) {
        st.rangeRestarted = true;
        await restartFromZero(ctx, st);
        continue;
      }
    }
    if (status >= 400 && status < 500) {
      const { text, code } = serverMessage(await readSome(res), res.statusMessage ?? '', ctx.secrets);
      throw new RuError('DOWNLOAD_REFUSED', `${where}: HTTP ${status} ${text}`.trimEnd(), { url: ctx.shown, status, serverCode: code });
    }
    if (status >= 500) {
      const { text } = serverMessage(await readSome(res), res.statusMessage ?? '', ctx.secrets);
      throw new Transient(`HTTP ${status} ${text}`.trimEnd());
    }
    if (status < 200 || status >= 300) {
      res.destroy();
      throw new RuError('DOWNLOAD_REFUSED', `${where}: unexpected HTTP ${status}`, { url: ctx.shown, status });
    }

    const length = intHeader(res.headers['content-length']);
    if (status === 206) {
      const range = contentRange(res.headers['content-range']);
      const start = range?.start ?? -1;
      const total = range?.total ?? (length === null ? null : start + length);
      if (start !== from || (st.total !== null && total !== null && total !== st.total)) {
        // The server resumed somewhere else, or the file changed size: a splice would corrupt it.
        res.destroy();
        await restartFromZero(ctx, st);
        throw new Transient(`server answered a resume at byte ${from} with range ${String(res.headers['content-range'])}`);
      }
      await truncate(ctx, from);
      st.resumed += from;
      st.total = total;
    } else {
      // A plain 200 to a Range request means the server ignores ranges or the file changed.
      if (from > 0) await restartFromZero(ctx, st);
      st.total = length;
      st.validator = validatorOf(res);
    }
    await receive(ctx, st, ex);
    return;
  }
}

interface Exchange {
  readonly res: IncomingMessage;
  /** The first error seen on this exchange (a socket error explains better than 'aborted'). */
  failure(): Error | undefined;
}

async function follow(ctx: Ctx, headers: Record<string, string>): Promise<{ ex: Exchange; url: URL }> {
  let url = ctx.url;
  for (let hop = 0; ; hop++) {
    const sameOrigin = url.origin === ctx.url.origin;
    const sent: OutgoingHttpHeaders = { ...headers };
    if (!sameOrigin) for (const h of ORIGIN_BOUND_HEADERS) delete sent[h];
    const ex = await exchange(ctx, url, sent);
    const status = ex.res.statusCode ?? 0;
    const location = ex.res.headers.location;
    if (status < 300 || status >= 400 || status === 304 || !location) return { ex, url };
    ex.res.destroy();
    if (hop === MAX_REDIRECTS) {
      throw new RuError('DOWNLOAD_FAILED', `could not download ${ctx.shown}: more than ${MAX_REDIRECTS} redirects`, { url: ctx.shown, reason: 'too many redirects' });
    }
    let next: URL;
    try {
      next = new URL(location, url);
    } catch {
      throw new RuError('DOWNLOAD_REFUSED', `${ctx.shown}: HTTP ${status} with an invalid Location`, { url: ctx.shown, status });
    }
    if (next.protocol !== 'http:' && next.protocol !== 'https:') {
      throw new RuError('DOWNLOAD_REFUSED', `${ctx.shown}: HTTP ${status} redirects to a ${next.protocol} URL`, { url: ctx.shown, status });
    }
    if (next.origin === ctx.url.origin && !next.username && !next.password) {
      next.username = ctx.url.username;
      next.password = ctx.url.password;
    }
    url = next;
  }
}

/** One request/response, with the connect and idle timeouts armed for its whole life. */
function exchange(ctx: Ctx, url: URL, headers: OutgoingHttpHeaders): Promise<Exchange> {
  return new Promise((resolve, reject) => {
    const tls = url.protocol === 'https:';
    const options: https.RequestOptions = {
      protocol: url.protocol,
      hostname: url.hostname.replace(/^\[(.*)\]$/, '$1'),
      path: `${url.pathname}${url.search}`,
      method: 'GET',
      headers,
      // A fresh socket per request: a kept-alive one could be half dead after a reset.
      agent: false,
      ...(url.port ? { port: Number(url.port) } : {}),
      ...(url.username || url.password ? { auth: `${decode(url.username)}:${decode(url.password)}` } : {}),
      ...(tls && ctx.cacert !== undefined ? { ca: ctx.cacert } : {}),
      ...(ctx.signal ? { signal: ctx.signal } : {}),
    };
    let res: IncomingMessage | undefined;
    let cause: Error | undefined;
    let req: http.ClientRequest;
    try {
      req = (tls ? https : http).request(options);
    } catch (e) {
      // A malformed cacert or header is thrown here, synchronously.
      reject(classify(ctx, e));
      return;
    }
    const fail = (err: Error): void => {
      cause ??= err;
      (res ?? req).destroy(err);
    };
    const connectTimer = setTimeout(() => fail(new Transient(`no connection within ${ctx.connectTimeoutMs} ms`)), ctx.connectTimeoutMs);
    req.on('socket', (socket) => {
      const connected = (): void => {
        clearTimeout(connectTimer);
        socket.setTimeout(ctx.idleTimeoutMs, () => fail(new Transient(`no data for ${ctx.idleTimeoutMs} ms`)));
      };
      if (socket.connecting) socket.once(tls ? 'secureConnect' : 'connect', connected);
      else connected();
    });
    req.on('error', (err) => {
      clearTimeout(connectTimer);
      cause ??= err;
      // After the response, the same failure reaches the body reader as 'aborted'.
      if (!res) reject(classify(ctx, cause));
    });
    req.on('close', () => clearTimeout(connectTimer));
    req.on('response', (r) => {
      res = r;
      resolve({ res: r, failure: () => cause });
    });
    req.end();
  });
}

/** TLS failures (untrusted certificate, a plain-http port) will not heal by retrying; the rest might. */
function classify(ctx: Ctx, e: unknown): Error {
  if (e instanceof Transient || e instanceof RuError) return e;
  const err = e as NodeJS.ErrnoException;
  if (err?.name === 'AbortError') return err;
  const code = typeof err?.code === 'string' ? err.code : '';
  const untrusted = /CERT|SELF_SIGNED|UNABLE_TO_VERIFY/.test(code);
  if (untrusted || /^(EPROTO|ERR_OSSL_|ERR_SSL_|ERR_TLS_)/.test(code)) {
    const reason = describe(err);
    const hint = untrusted ? ' (is the server\'s CA given with --cacert?)' : '';
    return new RuError('DOWNLOAD_FAILED', `could not download ${ctx.shown}: TLS: ${reason}${hint}`, { url: ctx.shown, reason });
  }
  return new Transient(describe(err));
}

function describe(e: unknown): string {
  const err = e as NodeJS.ErrnoException;
  let message = (err?.message ?? String(e)).replace(/\s+/g, ' ').trim();
  // OpenSSL's "write EPROTO 80..:error:0A00010B:SSL routines:fn:wrong version number:file:line:"
  const ssl = /:SSL routines:[^:]*:([^:]+):/.exec(message);
  if (ssl?.[1] !== undefined) message = ssl[1];
  return typeof err?.code === 'string' && !message.includes(err.code) ? `${message} (${err.code})` : message;
}

/**
 * node:tls silently ignores a CA that is not PEM, which would surface later as a baffling
 * "self-signed certificate"; a wrong --cacert file should be named as such.
 */
function checkCaCerts(pem: string): void {
  const blocks = pem.match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g) ?? [];
  if (blocks.length === 0) throw new RuError('USAGE', 'the CA certificate text (cacert) contains no PEM certificate');
  for (const b of blocks) {
    try {
      new X509Certificate(b);
    } catch (e) {
      throw new RuError('USAGE', `the CA certificate text (cacert) holds an unreadable certificate: ${describe(e)}`);
    }
  }
}

async function receive(ctx: Ctx, st: Progress, ex: Exchange): Promise<void> {
  try {
    for await (const chunk of ex.res as AsyncIterable<Buffer>) {
      await writeAt(ctx, chunk, st.written);
      st.written += chunk.length;
      ctx.onProgress?.(st.written, st.total);
    }
  } catch (e) {
    if (e instanceof RuError) throw e;
    const of = st.total === null ? '' : ` of ${st.total}`;
    throw new Transient(`${describe(ex.failure() ?? e)} after ${st.written}${of} bytes`);
  }
  // Node flags a body cut short against Content-Length itself; this is the backstop.
  if (st.total !== null && st.written < st.total) {
    throw new Transient(`connection closed after ${st.written} of ${st.total} bytes`);
  }
}

async function writeAt(ctx: Ctx, chunk: Buffer, position: number): Promise<void> {
  try {
    let done = 0;
    while (done < chunk.length) {
      const { bytesWritten } = await ctx.fh.write(chunk, done, chunk.length - done, position + done);
      done += bytesWritten;
    }
  } catch (e) {
    throw fromSystemError(e, `writing ${ctx.dest}`);
  }
}

async function truncate(ctx: Ctx, length: number): Promise<void> {
  try {
    await ctx.fh.truncate(length);
  } catch (e) {
    throw fromSystemError(e, `truncating ${ctx.dest}`);
  }
}

async function restartFromZero(ctx: Ctx, st: Progress): Promise<void> {
  await truncate(ctx, 0);
  st.written = 0;
  st.resumed = 0;
  st.total = null;
  st.validator = undefined;
}

/** Up to 64 KiB of an error body; a torn one still says something. */
async function readSome(res: IncomingMessage): Promise<string> {
  const parts: Buffer[] = [];
  let n = 0;
  try {
    for await (const chunk of res as AsyncIterable<Buffer>) {
      parts.push(chunk);
      n += chunk.length;
      if (n >= ERROR_BODY_LIMIT) break;
    }
  } catch {
    // keep what arrived
  }
  res.destroy();
  return Buffer.concat(parts).subarray(0, ERROR_BODY_LIMIT).toString('utf8');
}

/** The server's own words: `message` or `error.message` of a JSON body, else its text. */
function serverMessage(body: string, fallback: string, secrets: readonly string[]): { text: string; code: string | undefined } {
  let text = body;
  let code: string | undefined;
  try {
    const j: unknown = JSON.parse(body);
    if (j !== null && typeof j === 'object') {
      const o = j as { message?: unknown; error?: unknown; code?: unknown };
      const inner = o.error !== null && typeof o.error === 'object' ? (o.error as { message?: unknown; code?: unknown }) : undefined;
      if (typeof o.message === 'string') text = o.message;
      else if (typeof inner?.message === 'string') text = inner.message;
      else if (typeof o.error === 'string') text = o.error;
      if (typeof inner?.code === 'string') code = inner.code;
      else if (typeof o.code === 'string') code = o.code;
    }
  } catch {
    // not JSON: the text it is
  }
  // Control characters from a server must not reach a terminal.
  text = text.replace(/\p{Cc}+/gu, ' ').replace(/\s+/g, ' ').trim();
  for (const s of secrets) if (s) text = text.split(s).join('***');
  if (text.length > ERROR_TEXT_SHOWN) text = `${text.slice(0, ERROR_TEXT_SHOWN)}…`;
  return { text: text || fallback, code };
}

function validatorOf(res: IncomingMessage): string | undefined {
  const etag = res.headers.etag;
  // If-Range takes only a strong ETag; a weak one would make every resume a full restart.
  if (etag && !etag.startsWith('W/')) return etag;
  return res.headers['last-modified'] ?? undefined;
}

function intHeader(v: string | undefined): number | null {
  return v !== undefined && /^\d+$/.test(v.trim()) ? Number(v.trim()) : null;
}

function contentRange(v: string | undefined): { start: number | undefined; total: number | undefined } | undefined {
  const m = v === undefined ? null : /^bytes\s+(?:(\d+)-\d+|\*)\/(\d+|\*)$/i.exec(v.trim());
  if (!m) return undefined;
  return {
    start: m[1] === undefined ? undefined : Number(m[1]),
    total: m[2] === undefined || m[2] === '*' ? undefined : Number(m[2]),
  };
}
