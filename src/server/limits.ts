// What keeps slow or hostile clients from exhausting the server (docs/server.md, "Timeouts and
// connection limits"): a deadline for the headers (slowloris), an idle timeout while a request
// is received or answered (a stalled upload or download), a deadline for a request's body, a
// keep-alive timeout, and caps on connections in all and per client address. Recovery-log
// uploads are long streamed PUTs by design (ReaR's `tail -f | curl -T-`): once its route calls
// logStream(), a request is exempt from the body deadline and has its own, longer idle timeout
// instead, so it lives as long as data keeps coming and ends once it stalls.

import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { IncomingMessage, ServerOptions, ServerResponse } from 'node:http';
import { Socket } from 'node:net';
import { RuError } from '../core/errors.ts';
import { loadConfig, type ServerConfig } from './config.ts';

/** Timeouts in milliseconds, caps in connections; 0 turns one off (never headersTimeout or keepAliveTimeout). */
export type ServerLimits = Pick<ServerConfig, 'headersTimeout' | 'idleTimeout' | 'requestTimeout' | 'logIdleTimeout' | 'keepAliveTimeout' | 'maxConnections' | 'maxConnectionsPerAddress'>;

/** The defaults of config.ts, for apps built without a configuration (tests). */
export const DEFAULT_LIMITS: ServerLimits = loadConfig({}, {});

/** TCP keepalive probes find peers that vanished (a powered-off rescue machine) on quiet connections. */
const TCP_KEEPALIVE_MS = 60_000;

/** Options for node's http/https server: the header deadline is node's own, checked often enough to matter. */
export function httpServerOptions(l: ServerLimits): ServerOptions {
  return {
    headersTimeout: l.headersTimeout,
    // The body deadline is ours (below), because node's cannot exempt the log uploads.
    requestTimeout: 0,
    connectionsCheckingInterval: Math.min(5000, Math.max(250, Math.floor(l.headersTimeout / 4))),
    keepAlive: true,
    keepAliveInitialDelay: TCP_KEEPALIVE_MS,
  };
}

/** Fastify's own options that carry these limits (its connectionTimeout is the idle timeout). */
export function fastifyTimeouts(l: ServerLimits): { connectionTimeout: number; keepAliveTimeout: number; requestTimeout: number } {
  return { connectionTimeout: l.idleTimeout, keepAliveTimeout: l.keepAliveTimeout, requestTimeout: 0 };
}

const seconds = (ms: number): string => `${Math.round(ms / 100) / 10} s`;

const STATE = Symbol('rear-update request limits');

interface RequestState {
  readonly req: IncomingMessage;
  readonly res: ServerResponse;
  readonly limits: ServerLimits;
  /** Uploads or follows a recovery log (logStream). */
  long: boolean;
  timer: NodeJS.Timeout | null;
}

type Raw = IncomingMessage & { [STATE]?: RequestState };

/**
 * Ends a request that did not arrive in time: a 408 with its code if no answer has started
 * (best effort: the client may still be sending), then the request is destroyed with the error,
 * so that whatever reads its body (the spool, the log writer) fails with REQUEST_TIMEOUT and the
 * audit says so.
 */
function timeOut(st: RequestState, err: RuError): void {
  const socket = st.req.socket;
  if (!st.res.headersSent && socket.writable) {
    const body = JSON.stringify({ error: err.toJSON() });
    socket.write(`HTTP/1.1 408 Request Timeout\r\nconnection: close\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
  }
  st.req.destroy(err);
}

const setIdle = (socket: unknown, ms: number): void => {
  // inject() has a mock socket without timers: nothing to limit there.
  if (socket instanceof Socket && !socket.destroyed) socket.setTimeout(ms);
};

/**
 * This request uploads a recovery log, or follows one (ReaR's `tail -f | curl -T-`, `admin logs
 * --follow`): it may last hours while bytes flow. It is exempt from the body deadline, and its
 * idle timeout is --log-idle-timeout instead of --idle-timeout. Routes call it once the token
 * is accepted, so an unauthenticated client never gets the longer timeout.
 */
export function logStream(req: FastifyRequest): void {
  const st = (req.raw as Raw)[STATE];
  if (!st) return;
  st.long = true;
  if (st.timer) clearTimeout(st.timer);
  st.timer = null;
  if (!st.req.complete) setIdle(st.req.socket, st.limits.logIdleTimeout);
}

/** Installs the connection caps, the idle handling and the body deadline on an app's server. */
export function applyLimits(app: FastifyInstance, l: ServerLimits): void {
  const server = app.server;
  if (l.maxConnections > 0) server.maxConnections = l.maxConnections;

  if (l.maxConnectionsPerAddress > 0) {
    const open = new Map<string, number>();
    server.on('connection', (socket: Socket) => {
      const addr = socket.remoteAddress;
      if (addr === undefined) return;
      const n = (open.get(addr) ?? 0) + 1;
      if (n > l.maxConnectionsPerAddress) {
        socket.destroy();
        return;
      }
      open.set(addr, n);
      socket.once('close', () => {
        const left = (open.get(addr) ?? 1) - 1;
        if (left <= 0) open.delete(addr);
        else open.set(addr, left);
      });
    });
  }

  // The request a connection is receiving or answering, for the idle timeout's 408.
  const current = new WeakMap<object, RequestState>();
  // With a listener here, node leaves timed-out sockets to us (its socketOnTimeout).
  server.on('timeout', (socket: Socket) => {
    const st = current.get(socket);
    if (st && !st.req.complete && !st.req.destroyed) {
      const [setting, ms] = st.long ? ['--log-idle-timeout', l.logIdleTimeout] : ['--idle-timeout', l.idleTimeout];
      timeOut(st, new RuError('REQUEST_TIMEOUT', `nothing arrived for ${seconds(ms)} (${setting}): the upload stalled`, { setting, ms }));
    } else {
      socket.destroy();
    }
  });

  app.addHook('onRequest', async (req: FastifyRequest, reply: FastifyReply) => {
    const raw = req.raw as Raw;
    const st: RequestState = { req: raw, res: reply.raw, limits: l, long: false, timer: null };
    raw[STATE] = st;
    current.set(raw.socket, st);
    // While the server works on a request nothing has to flow; receiving and answering are timed.
    const received = (): void => {
      if (st.timer) clearTimeout(st.timer);
      // A body node reads only after the answer (a GET's empty one) must not undo the keep-alive timeout.
      if (!reply.raw.headersSent) setIdle(raw.socket, 0);
    };
    if (raw.complete) {
      received();
      return;
    }
    raw.once('end', received);
    if (l.requestTimeout > 0) {
      st.timer = setTimeout(() => {
        if (raw.complete || raw.destroyed || st.long) return;
        timeOut(st, new RuError('REQUEST_TIMEOUT', `the request was not complete within ${seconds(l.requestTimeout)} (--request-timeout)`, { setting: '--request-timeout', ms: l.requestTimeout }));
      }, l.requestTimeout);
      st.timer.unref();
      reply.raw.once('close', () => {
        if (st.timer) clearTimeout(st.timer);
      });
    }
  });
  app.addHook('onSend', async (req: FastifyRequest) => {
    const st = (req.raw as Raw)[STATE];
    setIdle(req.raw.socket, st?.long ? l.logIdleTimeout : l.idleTimeout);
  });
  app.addHook('onResponse', async (req: FastifyRequest) => {
    if (current.get(req.raw.socket)?.req === req.raw) current.delete(req.raw.socket);
  });
}
