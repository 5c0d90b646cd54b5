// Server-sent events as the console's live pages use them: framing (a field per line, so a
// message can never inject a field or end an event early), comment pings, and a stream object
// that ends cleanly when the client goes, the session ends or the server closes.

import type { FastifyReply, FastifyRequest } from 'fastify';

export interface SseMessage {
  readonly event?: string;
  /** What a reconnecting EventSource sends back as Last-Event-ID. */
  readonly id?: string;
  readonly data: string;
  /** Milliseconds the browser waits before reconnecting. */
  readonly retry?: number;
}

// A field value must not hold a line break: it would start a new field (or end the event).
const oneLine = (v: string, what: string): string => {
  if (/[\r\n\0]/.test(v)) throw new Error(`SSE ${what} must be one line`);
  return v;
};

/** One event in the text/event-stream format; data split into one `data:` line per line. */
export function sseFrame(m: SseMessage): string {
  let out = '';
  if (m.event !== undefined) out += `event: ${oneLine(m.event, 'event')}\n`;
  if (m.id !== undefined) out += `id: ${oneLine(m.id, 'id')}\n`;
  if (m.retry !== undefined) out += `retry: ${Math.max(0, Math.floor(m.retry))}\n`;
  for (const line of m.data.split(/\r\n|\r|\n/)) out += `data: ${line}\n`;
  return `${out}\n`;
}

/** A comment line: keeps proxies and idle timeouts from closing a quiet stream; browsers ignore it. */
export const sseComment = (text: string): string => `: ${text.replace(/[\r\n]/g, ' ')}\n\n`;

/** Parses an SSE text (tests, and the resume logic's own checks): events with their fields. */
export function parseSse(text: string): { event: string; id: string | null; data: string }[] {
  const out: { event: string; id: string | null; data: string }[] = [];
  for (const block of text.split(/\n\n/)) {
    if (!block.trim()) continue;
    let event = 'message';
    let id: string | null = null;
    const data: string[] = [];
    let any = false;
    for (const line of block.split('\n')) {
      if (line.startsWith(':')) continue;
      const i = line.indexOf(':');
      const field = i < 0 ? line : line.slice(0, i);
      const value = i < 0 ? '' : line.slice(i + 1).replace(/^ /, '');
      if (field === 'event') event = value;
      else if (field === 'id') id = value;
      else if (field === 'data') data.push(value);
      else continue;
      any = true;
    }
    if (any) out.push({ event, id, data: data.join('\n') });
  }
  return out;
}

export const PING_MS = 15_000;

/**
 * An open event stream on a reply. `onTick` runs with every ping (the session check); a
 * stream closes when the client disconnects, when close() is called (session over, server
 * closing, nothing more to say), and tells `onClose` listeners once.
 */
export class SseStream {
  readonly #reply: FastifyReply;
  #closed = false;
  readonly #closers: (() => void)[] = [];
  readonly #timer: NodeJS.Timeout;
  readonly signal: AbortSignal;
  readonly #abort = new AbortController();

  constructor(req: FastifyRequest, reply: FastifyReply, onTick: () => void | Promise<void>, pingMs = PING_MS) {
    this.#reply = reply;
    this.signal = this.#abort.signal;
    reply.hijack();
    reply.raw.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-store',
      'x-content-type-options': 'nosniff',
      // Proxies (nginx) must pass events through as they come.
      'x-accel-buffering': 'no',
      connection: 'keep-alive',
    });
    reply.raw.flushHeaders();
    req.raw.once('close', () => this.close());
    reply.raw.once('close', () => this.close());
    reply.raw.on('error', () => this.close());
    this.#timer = setInterval(() => {
      this.#write(sseComment('ping'));
      Promise.resolve()
        .then(onTick)
        .catch(() => this.close());
    }, pingMs);
  }

  get closed(): boolean {
    return this.#closed;
  }

  #write(text: string): void {
    if (this.#closed) return;
    this.#reply.raw.write(text);
  }

  send(m: SseMessage): void {
    this.#write(sseFrame(m));
  }

  onClose(f: () => void): void {
    if (this.#closed) f();
    else this.#closers.push(f);
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#timer);
    this.#abort.abort();
    for (const f of this.#closers.splice(0)) {
      try {
        f();
      } catch {
        // A listener's failure must not keep the others (or the socket) open.
      }
    }
    if (!this.#reply.raw.writableEnded) this.#reply.raw.end();
  }
}
