// The one place where an error becomes an HTTP answer: a status from the table below and a
// JSON body `{"error": {"code", "message", "context"}}` with the stable code of
// src/core/errors.ts. Unknown failures are 500 INTERNAL and their details stay in the log.

import { STATUS_CODES } from 'node:http';
import type { Duplex } from 'node:stream';
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import { isRuError, RuError, type ErrorCode } from '../core/errors.ts';

const STATUS: Partial<Record<ErrorCode, number>> = {
  USAGE: 400,
  REQUEST_INVALID: 400,
  STORE_INVALID: 400,
  BLOB_INPUT_FAILED: 400,
  AUTH_REQUIRED: 401,
  AUTH_INVALID: 401,
  AUTH_EXPIRED: 401,
  AUTH_USED_UP: 401,
  FORBIDDEN: 403,
  CSRF_INVALID: 403,
  SESSION_INVALID: 401,
  RECOVERY_UNKNOWN: 404,
  ROUTE_UNKNOWN: 404,
  HOST_UNKNOWN: 404,
  VERSION_UNKNOWN: 404,
  TOKEN_UNKNOWN: 404,
  KEY_UNKNOWN: 404,
  PENDING_UNKNOWN: 404,
  LOG_UNKNOWN: 404,
  LAYER_UNKNOWN: 404,
  NO_BUNDLE: 404,
  REQUEST_TIMEOUT: 408,
  STORE_CONFLICT: 409,
  LAYER_CONFLICT: 409,
  UPLOAD_TOO_LARGE: 413,
  LIMIT_BYTES: 413,
  PENDING_LIMIT: 429,
  STORE_BUSY: 503,
  // The data directory's file system is full (a publish or log upload, or SQLite's own writes).
  NO_SPACE: 507,
};

/** Every bundle and member refusal of a publish is the client's data being wrong: 422. */
export function statusOf(code: ErrorCode): number {
  const s = STATUS[code];
  if (s !== undefined) return s;
  if (/^(BUNDLE_|ENTRY_|LIMIT_)/.test(code) || code === 'LAYER_PATH_RESERVED') return 422;
  return 500;
}

export function toRuError(e: unknown): RuError {
  if (isRuError(e)) return e;
  const fe = e as FastifyError;
  // Fastify's own refusals (malformed JSON, body too large, bad content type) are 4xx.
  if (typeof fe?.statusCode === 'number' && fe.statusCode >= 400 && fe.statusCode < 500) {
    if (fe.statusCode === 413) return new RuError('UPLOAD_TOO_LARGE', fe.message);
    return new RuError('REQUEST_INVALID', fe.message, { fastify: fe.code ?? null });
  }
  return new RuError('INTERNAL', 'internal server error');
}

export function sendError(e: unknown, req: FastifyRequest, reply: FastifyReply): FastifyReply {
  const err = toRuError(e);
  const status = statusOf(err.code);
  // 503 (STORE_BUSY while PostgreSQL restarts) is a condition, not a bug: one line each, no stack.
  if (status === 503) req.log.warn({ code: err.code, reason: err.message }, 'request refused (503)');
  else if (status >= 500) req.log.error({ err: e }, 'request failed');
  else req.log.info({ code: err.code, reason: err.message }, 'request refused');
  if (status === 401) reply.header('www-authenticate', 'Basic realm="rear-update", charset="UTF-8"');
  if ((status === 429 || status === 503) && typeof err.context.retryAfter === 'number') reply.header('retry-after', String(err.context.retryAfter));
  return reply.code(status).type('application/json').send({ error: err.toJSON() });
}

/**
 * The same JSON answer written straight to a socket, for requests refused before any route
 * runs: node's parser refusing a malformed request line or header, headers over its size limit
 * or its header deadline (Fastify's clientErrorHandler), and CONNECT, which node hands to no
 * route at all. Without this they got Fastify's own body without a code, or no answer (found by
 * the fuzz harness).
 */
export function sendRawError(socket: Duplex, status: number, err: RuError): void {
  if (socket.destroyed) return;
  const body = JSON.stringify({ error: err.toJSON() });
  if (socket.writable) {
    socket.write(`HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Error'}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
  }
  socket.destroy();
}

export function sendClientError(e: Error & { code?: string }, socket: Duplex): void {
  if (e.code === 'ECONNRESET' || socket.destroyed) return;
  if (e.code === 'ERR_HTTP_REQUEST_TIMEOUT') sendRawError(socket, 408, new RuError('REQUEST_TIMEOUT', 'the request was not received in time'));
  else if (e.code === 'HPE_HEADER_OVERFLOW') sendRawError(socket, 431, new RuError('REQUEST_INVALID', 'the request headers exceed the size limit', { param: 'headers' }));
  else sendRawError(socket, 400, new RuError('REQUEST_INVALID', `malformed HTTP request (${e.code ?? 'parse error'})`, { param: 'http' }));
}
