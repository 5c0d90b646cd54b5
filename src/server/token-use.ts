// What the server writes about a token as it is used: when and from where it was last used
// (for `admin token list`), and the spending of a limited token's downloads (`--uses N`).
// The last use must not cost a write per request on the download path, the server's hot
// path: it is written at most once a minute per token, at once when the address changes
// (at most once a second then). The audit log keeps every fetch; this is the quick view.

import type { FastifyRequest } from 'fastify';
import { usedUp, usesLeft } from '../core/access.ts';
import type { TokenRecord, TokenStore } from '../core/store/metadata.ts';
import type { ServerContext } from './context.ts';

export const LAST_USE_EVERY_MS = 60_000;
const LAST_USE_MIN_GAP_MS = 1000;

export class TokenUseRecorder {
  readonly #store: Pick<TokenStore, 'noteTokenUse'>;
  readonly #everyMs: number;
  readonly #onError: (err: unknown) => void;
  readonly #max: number;
  /** Token id → the last use written: insertion order is age order (re-set on each write). */
  readonly #written = new Map<string, { at: number; address: string | null }>();

  constructor(store: Pick<TokenStore, 'noteTokenUse'>, opts: { everyMs?: number; max?: number; onError?: (err: unknown) => void } = {}) {
    this.#store = store;
    this.#everyMs = opts.everyMs ?? LAST_USE_EVERY_MS;
    this.#max = opts.max ?? 10_000;
    this.#onError = opts.onError ?? (() => undefined);
  }

  /** A request presented token `id` from `address`; never waits for the store. */
  note(id: string, address: string | null): void {
    const now = Date.now();
    const last = this.#written.get(id);
    if (last) {
      const age = now - last.at;
      if (age < LAST_USE_MIN_GAP_MS || (age < this.#everyMs && last.address === address)) return;
      this.#written.delete(id);
    }
    this.#written.set(id, { at: now, address });
    if (this.#written.size > this.#max) this.#written.delete(this.#written.keys().next().value!);
    // A revoked token may race its last request here; the store then says TOKEN_UNKNOWN or
    // updates a revoked row: harmless either way.
    this.#store.noteTokenUse(id, address).catch(this.#onError);
  }
}

/**
 * Spends one use of a limited token on a bundle download that is about to be sent (never
 * after: two concurrent downloads must not both get the bundle for one use). The download is
 * named by its sealing (the ETag, which names the nonce too) and the client's address, so a
 * resume (`resume`: an If-Range that names this sealing) of a download spent on costs nothing,
 * while someone else presenting that ETag starts a new download. AUTH_USED_UP.
 */
export async function spendDownload(ctx: Pick<ServerContext, 'meta' | 'cache'>, req: FastifyRequest, token: TokenRecord, etag: string, resume: boolean): Promise<void> {
  if (token.uses === null) return;
  if (req.method === 'HEAD') {
    // A HEAD sends no bundle and spends nothing, but a used-up token learns nothing new either.
    if (!resume && usesLeft(token) === 0) throw usedUp(token);
    return;
  }
  try {
    await ctx.meta.spendTokenUse(token.id, `${etag} ${req.ip}`, { resume });
  } finally {
    // The memo must not keep showing uses that are gone.
    ctx.cache.tokens.delete(token.id);
  }
}
