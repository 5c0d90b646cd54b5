// Regression tests for what the server fuzzer (fuzz/server-target.ts) found: requests refused
// before any route runs got an answer without a documented code, or no answer at all. Each is
// now a JSON {"error": {"code"}} like every other refusal. Raw sockets to the real server on
// 127.0.0.1, so the malformed bytes reach node's parser exactly as sent.

import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { loadConfig } from '../../src/server/config.ts';
import { startServer, type Running } from '../../src/server/serve.ts';
import { send } from '../../fuzz/server-target.ts';
import { cleanup, tempDir } from '../helpers.ts';

const work = tempDir('ru-fz-srv-');
let srv: Running;
let port = 0;

before(async () => {
  srv = await startServer(loadConfig({ data: join(work, 'data'), listen: '127.0.0.1:0' }, {}), { log: false });
  port = Number(new URL(srv.url).port);
});
after(async () => {
  await srv?.close();
  cleanup(work);
});

async function answer(raw: string): Promise<{ status: number | null; code: unknown }> {
  const a = await send(port, Buffer.from(raw, 'latin1'), 10_000);
  assert.notEqual(a, 'timeout');
  if (a === 'timeout') return { status: null, code: null };
  let code: unknown = null;
  try {
    code = (JSON.parse(a.body.toString('utf8')) as { error?: { code?: unknown } }).error?.code;
  } catch {
    code = `not JSON: ${JSON.stringify(a.body.toString('utf8').slice(0, 100))}`;
  }
  return { status: a.status, code };
}

describe('found by fuzzing: refusals before any route runs name a code', () => {
  it('a malformed header line (node\'s parser refuses it; was Fastify\'s body without a code) answers 400 REQUEST_INVALID', async () => {
    assert.deepEqual(await answer('GET /healthz HTTP/1.1\r\nHost: x\r\nBad Header\r\nConnection: close\r\n\r\n'), { status: 400, code: 'REQUEST_INVALID' });
  });

  it('headers over node\'s size limit (was 431 without a code) answer 431 REQUEST_INVALID', async () => {
    assert.deepEqual(await answer(`GET /healthz HTTP/1.1\r\nHost: x\r\nX-Huge: ${'h'.repeat(100_000)}\r\nConnection: close\r\n\r\n`), { status: 431, code: 'REQUEST_INVALID' });
  });

  it('a path parameter that is not valid percent-encoded UTF-8 (was FST_ERR_BAD_URL without a code) answers 400 REQUEST_INVALID', async () => {
    assert.deepEqual(await answer('GET /api/v1/hosts/%c3%28/bundle HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'), { status: 400, code: 'REQUEST_INVALID' });
  });

  it('an over-long path parameter (was 414 FST_ERR_MAX_PARAM_LENGTH without a code) answers 400 REQUEST_INVALID', async () => {
    assert.deepEqual(await answer(`GET /api/v1/hosts/${'x'.repeat(300)} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`), { status: 400, code: 'REQUEST_INVALID' });
  });

  it('the CONNECT method (node closed the connection without any answer) answers 404 ROUTE_UNKNOWN', async () => {
    assert.deepEqual(await answer('CONNECT /api/v1/hosts HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'), { status: 404, code: 'ROUTE_UNKNOWN' });
  });

  it('an HTTP/1.1 request without Host (node answered an empty 400 itself) answers 400 REQUEST_INVALID', async () => {
    assert.deepEqual(await answer('GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n'), { status: 400, code: 'REQUEST_INVALID' });
  });

  it('and the server goes on serving', async () => {
    assert.deepEqual((await answer('GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')).status, 200);
  });
});
