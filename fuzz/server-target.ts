// The server fuzzer: starts the real server (serve.ts startServer, a temporary data directory,
// 127.0.0.1 only), publishes one host's bundle, enumerates every route from the Fastify app
// itself, then sends malformed requests over raw sockets: path parameters that traverse or are
// not UTF-8, negative and enormous numbers, unknown methods, bad and huge JSON, invalid UTF-8,
// huge headers and bodies, broken framing. Oracle: every answer is 2xx (where the input happens
// to be valid) or 4xx with a JSON body {"error": {"code"}} naming a code of src/core/errors.ts;
// never 5xx, never no answer; and afterwards the server still answers /healthz and serves the
// host's bundle. Traffic goes to 127.0.0.1 only, bounded in count and time.

import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import fc from 'fast-check';
import { ERRORS } from '../src/core/errors.ts';
import { loadConfig } from '../src/server/config.ts';
import { startServer, type Running } from '../src/server/serve.ts';
import { caseSeed } from './bundle-plan.ts';
import { makeSeeds } from './bundle-seeds.ts';
import { scratchBase } from './bundle-target.ts';
import { count, newReport, type RunReport } from './report.ts';

export interface Route {
  readonly path: string;
  readonly methods: readonly string[];
}

/** Every route and its methods, from the app's own route tree (printRoutes). */
export function routesOf(running: Running): Route[] {
  const lines = running.app.printRoutes({ commonPrefix: false }).split('\n');
  const stack: string[] = [];
  const out: Route[] = [];
  for (const line of lines) {
    const m = /^(.*?)(?:├──|└──) (\S+)(?: \(([^)]*)\))?$/.exec(line);
    if (!m) continue;
    const depth = Math.round((m[1] as string).length / 4);
    stack.length = depth;
    const full = `${depth > 0 ? stack[depth - 1] : ''}${m[2] as string}`;
    stack[depth] = full;
    if (m[3]) out.push({ path: full, methods: m[3].split(',').map((s) => s.trim()) });
  }
  return out;
}

interface Request {
  readonly route: number;
  readonly method: string;
  readonly params: readonly string[];
  readonly query: readonly (readonly [string, string])[];
  readonly auth: 'admin' | 'fetch' | 'none' | 'garbage' | 'basic' | 'huge';
  readonly headers: readonly string[];
  readonly body: Body;
}

type Body =
  | { readonly k: 'none' }
  | { readonly k: 'json'; readonly value: unknown }
  | { readonly k: 'text'; readonly text: string; readonly type: string }
  | { readonly k: 'bytes'; readonly bytes: Uint8Array; readonly type: string }
  | { readonly k: 'big'; readonly mib: number; readonly type: string }
  | { readonly k: 'lying-length'; readonly type: string };

const IDS = ['fz1', 'nope', '..', '%2e%2e', '..%2f..%2fetc%2fpasswd', '%2Fetc%2Fpasswd', '%00', 'fz1%00', '%ff%fe', '%c3%28', '%e9', 'é', '-1', '0', '1',
  '99999999999999999999999', '1e309', 'NaN', 'Infinity', '%20', '__proto__', 'constructor', 'fz1.tar.gz', 'fz1.tgz', '52:54:00:12:34:56.tar.gz', '5254-0012-3456.tar.gz',
  'x'.repeat(300), '.', '...', 'a;b', 'a%0d%0aSet-Cookie:x', '%u0041', 'fz1.rear_config.tar.gz', '..%5c..%5cwindows'];
const NUMS = ['-1', '0', '1', '2', '99999999999999999999999', '1e309', '-1e309', 'NaN', '', '0x10', '1.5', ' 1', '%ff', 'true', '[]', '2026-13-45T99:99:99Z', '2026-01-31T12:00:00Z', 'x'.repeat(5000)];
const QUERY_KEYS = ['version', 'from', 'to', 'offset', 'follow', 'all', 'mac', 'uuid', 'serial', 'hostname', 'kind', 'host', 'since', 'until', 'limit', 'class', 'token', 'nonce', 'result'];
const JSON_KEYS = ['id', 'class', 'hostnames', 'macs', 'uuid', 'serial', 'scope', 'label', 'host', 'pending', 'version', 'expires', 'uses', 'key', 'retire', 'mac', '__proto__', 'constructor'];
const METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS', 'TRACE', 'PROPFIND', 'FOO', 'M-SEARCH', 'CONNECT'];

const jsonValue: fc.Arbitrary<unknown> = fc.oneof(
  fc.constantFrom(-1, 0, 1, 1e308, -1e308, 2 ** 53 + 1, 1.5, null, true, '', 'fz1', 'admin', 'fetch:fz1', 'publish:../x', 'fetch-class:typeA', '52:54:00:12:34:56', 'x'.repeat(10_000), '\u0000', '\ud800', [], {}),
  fc.string({ maxLength: 50 }),
  fc.array(fc.string({ maxLength: 20 }), { maxLength: 5 }),
);

const bodyArb: fc.Arbitrary<Body> = fc.oneof(
  { weight: 3, arbitrary: fc.constant({ k: 'none' as const }) },
  { weight: 5, arbitrary: fc.dictionary(fc.constantFrom(...JSON_KEYS), jsonValue, { maxKeys: 4 }).map((value) => ({ k: 'json' as const, value })) },
  { weight: 1, arbitrary: fc.constantFrom<unknown>([], null, 1, 'str', [[[[]]]]).map((value) => ({ k: 'json' as const, value })) },
  { weight: 3, arbitrary: fc.record({
    k: fc.constant('text' as const),
    text: fc.constantFrom('{', '{"a":', '{"id":"fz1",}', '[1,2', 'null', '', ' ', '{"id":"\\ud800"}', '{"version":1e999}', '{"__proto__":{"admin":true}}', `{"a":"${'x'.repeat(2000)}"}`, `${'['.repeat(100_000)}${']'.repeat(100_000)}`, `{"id":${'9'.repeat(400)}}`),
    type: fc.constantFrom('application/json', 'application/json; charset=utf-8', 'text/plain', 'application/x-www-form-urlencoded', 'application/gzip', ''),
  }) },
  { weight: 2, arbitrary: fc.record({ k: fc.constant('bytes' as const), bytes: fc.uint8Array({ maxLength: 3000 }), type: fc.constantFrom('application/json', 'application/gzip', 'application/octet-stream', '') }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('big' as const), mib: fc.constantFrom(1, 2), type: fc.constantFrom('application/json', 'application/gzip') }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('lying-length' as const), type: fc.constantFrom('application/json', 'application/gzip') }) },
);

function requestArb(routes: readonly Route[], route: number): fc.Arbitrary<Request> {
  const r = routes[route] as Route;
  const nParams = (r.path.match(/:/g) ?? []).length;
  return fc.record({
    route: fc.constant(route),
    method: fc.oneof({ weight: 4, arbitrary: fc.constantFrom(...r.methods) }, { weight: 1, arbitrary: fc.constantFrom(...METHODS) }),
    params: fc.array(fc.oneof({ weight: 4, arbitrary: fc.constantFrom(...IDS) }, { weight: 1, arbitrary: fc.constantFrom(...NUMS).map(encodeURIComponent) }), { minLength: nParams, maxLength: nParams }),
    query: fc.array(fc.tuple(fc.constantFrom(...QUERY_KEYS), fc.constantFrom(...NUMS, ...IDS)), { maxLength: 3 }),
    auth: fc.constantFrom('admin', 'admin', 'admin', 'fetch', 'none', 'garbage', 'basic', 'huge') as fc.Arbitrary<Request['auth']>,
    headers: fc.array(fc.constantFrom('Range: bytes=-1', 'Range: bytes=99999999999999999999-', 'If-Range: "ru-z1-fz1-1-99999999999-0-0"', 'Content-Encoding: gzip', 'Transfer-Encoding: chunked',
      'X-Big: ' + 'y'.repeat(20_000), 'Accept: */*', 'Expect: 100-continue', 'Content-Length: -1', 'Content-Length: 1, 2', 'X-Utf8: \u00e9'), { maxLength: 2 }),
    body: bodyArb,
  });
}

/** A raw HTTP/1.1 request, so that anything a client could send can be sent. */
function encode(req: Request, routes: readonly Route[], port: number, tokens: { admin: string; fetch: string }): Buffer {
  const r = routes[req.route] as Route;
  let i = 0;
  const path = r.path.replace(/:[a-z]+/g, () => req.params[i++] ?? 'x');
  const qs = req.query.map(([k, v]) => `${k}=${encodeURIComponent(v).replace(/%25([0-9a-fA-F]{2})/g, '%$1')}`).join('&');
  const target = `${path}${qs ? `?${qs}` : ''}`;
  const headers = [`Host: 127.0.0.1:${port}`, 'Connection: close', ...req.headers];
  const auth = { admin: `Bearer ${tokens.admin}`, fetch: `Bearer ${tokens.fetch}`, none: null, garbage: 'Bearer ru_zz_\u00ff\u00fe', basic: `Basic ${Buffer.from(`rear:${tokens.fetch}`).toString('base64')}`, huge: `Bearer ${'ru_'.padEnd(70_000, 'a')}` }[req.auth];
  if (auth) headers.push(`Authorization: ${auth}`);
  let body: Buffer = Buffer.alloc(0);
  let type: string | null = null;
  let lie = false;
  switch (req.body.k) {
    case 'none': break;
    case 'json': body = Buffer.from(JSON.stringify(req.body.value) ?? 'null'); type = 'application/json'; break;
    case 'text': body = Buffer.from(req.body.text); type = req.body.type; break;
    case 'bytes': body = Buffer.from(req.body.bytes); type = req.body.type; break;
    case 'big': body = Buffer.alloc(req.body.mib * (1 << 20) + 17, 0x61); type = req.body.type; break;
    case 'lying-length': body = Buffer.from('{"id":"fz1"}'); type = req.body.type; lie = true; break;
  }
  const chunked = req.headers.some((h) => h.startsWith('Transfer-Encoding'));
  if (type) headers.push(`Content-Type: ${type}`);
  if (!req.headers.some((h) => h.startsWith('Content-Length')) && !chunked && (body.length > 0 || req.method === 'POST' || req.method === 'PUT' || req.method === 'PATCH')) {
    headers.push(`Content-Length: ${body.length + (lie ? 1000 : 0)}`);
  }
  const payload: Buffer = !chunked ? body : body.length === 0 ? Buffer.from('0\r\n\r\n') : Buffer.concat([Buffer.from(`${body.length.toString(16)}\r\n`), body, Buffer.from('\r\n0\r\n\r\n')]);
  return Buffer.concat([Buffer.from(`${req.method} ${target} HTTP/1.1\r\n${headers.join('\r\n')}\r\n\r\n`, 'latin1'), payload]);
}

/** Malformed at the HTTP level: what a parser must refuse before any route runs. */
export const RAW = [
  'GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n',
  'GET /healthz HTTP/1.1\r\nHost: x\r\nBad Header\r\nConnection: close\r\n\r\n',
  'GET /healthz HTTP/9.9\r\nHost: x\r\nConnection: close\r\n\r\n',
  'GET  /healthz  HTTP/1.1\r\nConnection: close\r\n\r\n',
  'GET /\u00ff\u00fe HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n',
  'GET /api/v1/hosts/%ff/bundle HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n',
  'POST /api/v1/hosts HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\nConnection: close\r\n\r\nhello',
  'POST /api/v1/hosts HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\nzz\r\n',
  'POST /api/v1/hosts HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\nConnection: close\r\n\r\n0\r\n\r\n',
  `GET /healthz HTTP/1.1\r\nHost: x\r\nX-Huge: ${'h'.repeat(100_000)}\r\nConnection: close\r\n\r\n`,
  `GET /${'p'.repeat(100_000)} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`,
  `GET /healthz HTTP/1.1\r\nHost: x\r\n${Array.from({ length: 3000 }, (_, i) => `X-${i}: v`).join('\r\n')}\r\nConnection: close\r\n\r\n`,
  'GET /healthz HTTP/1.1\r\nHost: x\r\nX-Null: a\u0000b\r\nConnection: close\r\n\r\n',
  '\r\n\r\n\r\n',
  'NOT HTTP AT ALL\r\n\r\n',
];

interface Answer {
  readonly status: number | null;
  readonly headers: string;
  readonly body: Buffer;
}

/**
 * Sends one request and reads until the server closes (every request says Connection: close).
 * `cut`: the client goes away after sending (half-close), as a cut-off upload does; node's
 * server then may close without an answer, which is fine for such a request.
 */
export function send(port: number, bytes: Buffer, timeoutMs: number, cut = false): Promise<Answer | 'timeout'> {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port });
    const parts: Buffer[] = [];
    const timer = setTimeout(() => {
      s.destroy();
      resolve('timeout');
    }, timeoutMs);
    s.on('data', (c: Buffer) => parts.push(c));
    s.on('error', () => undefined); // a reset after the answer (the server closing a refused upload) is fine
    s.on('close', () => {
      clearTimeout(timer);
      let all = Buffer.concat(parts);
      // Interim answers (100 Continue) come before the real one.
      while (/^HTTP\/1\.[01] 1\d\d /.test(all.subarray(0, 16).toString('latin1')) && all.indexOf('\r\n\r\n') !== -1) all = all.subarray(all.indexOf('\r\n\r\n') + 4);
      const end = all.indexOf('\r\n\r\n');
      const head = (end === -1 ? all : all.subarray(0, end)).toString('latin1');
      const status = /^HTTP\/1\.[01] (\d{3})/.exec(head)?.[1];
      let body: Buffer = end === -1 ? Buffer.alloc(0) : all.subarray(end + 4);
      if (/\r\ntransfer-encoding: chunked/i.test(head)) body = unchunk(body);
      resolve({ status: status ? Number(status) : null, headers: head, body });
    });
    s.write(bytes, () => {
      if (cut) s.end();
    });
  });
}

function unchunk(b: Buffer): Buffer {
  const out: Buffer[] = [];
  let pos = 0;
  while (pos < b.length) {
    const eol = b.indexOf('\r\n', pos);
    if (eol === -1) break;
    const n = parseInt(b.subarray(pos, eol).toString('latin1'), 16);
    if (!n) break;
    out.push(b.subarray(eol + 2, eol + 2 + n));
    pos = eol + 2 + n + 2;
  }
  return Buffer.concat(out);
}

/** The oracle for one answer: null if acceptable, else what is wrong. */
export function judge(a: Answer | 'timeout', method: string): { outcome: string; problem: string | null } {
  if (a === 'timeout') return { outcome: 'timeout', problem: 'no answer within the timeout' };
  if (a.status === null) return { outcome: 'no-answer', problem: `the connection closed without an HTTP answer (${a.headers.slice(0, 80)})` };
  if (a.status >= 500) return { outcome: String(a.status), problem: `${a.status}: ${a.body.toString('utf8').slice(0, 300)}` };
  if (a.status < 400) return { outcome: `${a.status}`, problem: null };
  if (method === 'HEAD') return { outcome: `${a.status} (HEAD: no body)`, problem: null };
  let code: unknown;
  try {
    code = (JSON.parse(a.body.toString('utf8')) as { error?: { code?: unknown } }).error?.code;
  } catch {
    return { outcome: `${a.status} non-JSON`, problem: `${a.status} without a JSON body: ${a.body.toString('utf8').slice(0, 200)}` };
  }
  if (typeof code !== 'string' || !(code in ERRORS)) return { outcome: `${a.status} no-code`, problem: `${a.status} whose body names no documented code: ${a.body.toString('utf8').slice(0, 200)}` };
  return { outcome: `${a.status} ${code}`, problem: null };
}

export interface ServerRunOptions {
  readonly seed: number;
  readonly cases: number;
  readonly seconds: number;
  readonly timeoutMs?: number;
  /** Instead of `cases`: the malformed-HTTP cases, then this many requests per route. */
  readonly passes?: number;
}

export async function runServer(o: ServerRunOptions): Promise<RunReport> {
  const report = newReport('server', o.seed);
  const start = Date.now();
  const work = mkdtempSync(join(scratchBase(), 'ru-fuzz-srv-'));
  const timeoutMs = o.timeoutMs ?? 20_000;
  let srv: Running | null = null;
  try {
    srv = await startServer(loadConfig({ data: join(work, 'data'), listen: '127.0.0.1:0' }, {}), { log: false });
    const port = Number(new URL(srv.url).port);
    const admin = readFileSync(join(work, 'data', 'admin.token'), 'utf8').trim();
    // One host with a published bundle, and a fetch token for it: the requests reach real data.
    const seeds = await makeSeeds(join(work, 'seeds'));
    const bundle = seeds.seeds.find((s) => s.name === 'unsigned')?.bytes as Buffer;
    const pub = await send(port, Buffer.concat([Buffer.from(`POST /api/v1/hosts/fz1/versions HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer ${admin}\r\nContent-Type: application/gzip\r\nContent-Length: ${bundle.length}\r\n\r\n`), bundle]), timeoutMs);
    if (pub === 'timeout' || (pub.status !== 201 && pub.status !== 200)) throw new Error(`fuzz setup: publishing failed: ${pub === 'timeout' ? 'timeout' : `${pub.status} ${pub.body.toString()}`}`);
    const tok = await send(port, Buffer.from(`POST /api/v1/tokens HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer ${admin}\r\nContent-Type: application/json\r\nContent-Length: 21\r\n\r\n{"scope":"fetch:fz1"}`), timeoutMs);
    const fetchToken = tok === 'timeout' ? '' : String((JSON.parse(tok.body.toString()) as { token?: string }).token ?? '');
    if (!fetchToken) throw new Error(`fuzz setup: no fetch token: ${tok === 'timeout' ? 'timeout' : tok.body.toString()}`);
    const routes = routesOf(srv);
    const finding = (i: number, kind: string, detail: string, input: string): void => {
      report.findings.push({ target: 'server', seed: o.seed, case: i, kind, detail, input, reproduce: `npm run fuzz -- --target server --seed ${o.seed} --cases ${i + 1}` });
    };
    report.routes = routes.length;
    const cases = o.passes !== undefined ? RAW.length + routes.length * o.passes : o.cases;
    const deadline = start + o.seconds * 1000;
    // Cases 0..RAW-1: HTTP-level garbage; then requests, round-robin over the routes.
    for (let i = 0; i < cases && Date.now() < deadline; i++) {
      let bytes: Buffer;
      let method: string;
      let input: string;
      let cut = false;
      if (i < RAW.length) {
        bytes = Buffer.from(RAW[i] as string, 'latin1');
        method = (RAW[i] as string).split(' ')[0] ?? '';
        input = JSON.stringify((RAW[i] as string).slice(0, 200));
        cut = (RAW[i] as string).trim() === ''; // no request at all: node waits for one, then the client goes
      } else {
        const routeIndex = (i - RAW.length) % routes.length;
        const [req] = fc.sample(requestArb(routes, routeIndex), { seed: caseSeed(o.seed, i), numRuns: 1 }) as [Request];
        bytes = encode(req, routes, port, { admin, fetch: fetchToken });
        cut = req.body.k === 'lying-length';
        method = req.method;
        input = `${(routes[routeIndex] as Route).path}: ${bytes.subarray(0, 400).toString('latin1').replace(/\r\n/g, '\\r\\n')}`;
      }
      const j = judge(await send(port, bytes, timeoutMs, cut), method);
      if (cut && j.outcome === 'no-answer') {
        count(report, 'cut off: closed');
        continue;
      }
      count(report, j.outcome);
      if (j.problem) finding(i, j.outcome.startsWith('5') ? '5xx' : j.outcome.replace(/^\d+ /, ''), j.problem, input);
    }
    // Still serving: health, and the host's bundle with its fetch token.
    const health = judge(await send(port, Buffer.from('GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'), timeoutMs), 'GET');
    if (health.outcome !== '200') finding(-1, 'not-serving', `/healthz answered ${health.outcome} after the run`, 'GET /healthz');
    const got = await send(port, Buffer.from(`GET /api/v1/hosts/fz1/bundle HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer ${fetchToken}\r\n\r\n`), timeoutMs);
    if (got === 'timeout' || got.status !== 200 || got.body[0] !== 0x1f || got.body[1] !== 0x8b) {
      finding(-1, 'not-serving', `the bundle fetch answered ${got === 'timeout' ? 'nothing' : `${got.status} ${got.body.subarray(0, 200).toString()}`} after the run`, 'GET /api/v1/hosts/fz1/bundle');
    }
  } finally {
    await srv?.close();
    rmSync(work, { recursive: true, force: true });
  }
  report.seconds = (Date.now() - start) / 1000;
  return report;
}
