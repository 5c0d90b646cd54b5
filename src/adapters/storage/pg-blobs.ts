// Bundle bytes in PostgreSQL (`serve --blobs postgres`), in the same database as the metadata,
// so that several stateless `serve` instances share one store and no machine's disk holds the
// only copy. A blob is rows of blob_chunks (1 MiB each) plus one `blobs` row, committed in one
// transaction: until the commit nobody sees any of it, and a failed or cut-off put (or a killed
// process: the connection goes, the transaction rolls back) leaves nothing. Bytes stream both
// ways, one chunk at a time, never the whole blob in memory. Schema: pg-schema.ts (0005_blobs);
// errors: pg-errors.ts.

import { createHash, randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import pg from 'pg';
import { RuError } from '../../core/errors.ts';
import { checkAnnounced, checkBlobName, inputFailed, type BlobInfo, type BlobPutOptions, type BlobStore, type PartialBlob } from '../../core/store/blobs.ts';
import { fromPgError } from './pg-errors.ts';
import { connectPg } from './pg-metadata.ts';

/** Rows of this many bytes (the last one shorter): large enough for few round trips, small enough to hold two in memory. */
export const CHUNK_BYTES = 1 << 20;

export interface PgBlobOptions {
  /** Connections this store keeps at most (a pool apart from the metadata store's). */
  readonly poolSize?: number;
  /** How long to wait for a connection before STORE_BUSY. */
  readonly connectTimeoutMs?: number;
  /** How long a statement waits for another session's lock before STORE_BUSY. */
  readonly busyTimeoutMs?: number;
  /** Bytes per chunk row (tests use small chunks to make many). */
  readonly chunkBytes?: number;
}


/**
 * The per-blob advisory lock key (one bigint: a key space apart from the metadata store's
 * two-int4 locks): the first 16 hex digits of the name. Puts and deletes of one blob take turns.
 */
const lockKey = (sha256: string): string => BigInt.asIntN(64, BigInt(`0x${sha256.slice(0, 16)}`)).toString();

/**
 * Connects to `url`, brings the schema up to date (the metadata store's migrations, which
 * include the blob tables) and returns the store. Unreachable or refused: STORE_UNREACHABLE,
 * naming the URL without its password.
 */
export async function openPgBlobs(url: string, opts: PgBlobOptions = {}): Promise<PgBlobStore> {
  const { pool, db } = await connectPg<unknown>(url, 'blob', opts, 'rear-update blobs');
  return new PgBlobStore(pool, () => db.destroy(), opts.chunkBytes ?? CHUNK_BYTES);
}

export class PgBlobStore implements BlobStore {
  readonly #pool: pg.Pool;
  readonly #end: () => Promise<void>;
  readonly #chunk: number;

  constructor(pool: pg.Pool, end: () => Promise<void>, chunkBytes = CHUNK_BYTES) {
    this.#pool = pool;
    this.#end = end;
    this.#chunk = chunkBytes;
  }

  async #query<R extends pg.QueryResultRow>(what: string, text: string, values: unknown[]): Promise<pg.QueryResult<R>> {
    try {
      return await this.#pool.query<R>(text, values);
    } catch (e) {
      throw fromPgError(e, what, 'blob');
    }
  }

  /**
   * One transaction on a connection of its own: the chunks go in under a temporary name as they
   * arrive (at most one chunk being filled and one being sent), then, once the bytes are known
   * to hash to what was announced, they are renamed to the sha256 and the `blobs` row written,
   * under the blob's advisory lock. A put that finds the blob present rolls back and says
   * created: false.
   */
  async put(source: AsyncIterable<Uint8Array>, opts: BlobPutOptions = {}): Promise<BlobInfo> {
    const it = source[Symbol.asyncIterator]();
    const temp = `upload:${randomBytes(12).toString('hex')}`;
    let client: pg.PoolClient | undefined;
    let broken: Error | undefined;
    try {
      try {
        client = await this.#pool.connect();
        await client.query('begin');
      } catch (e) {
        throw fromPgError(e, 'storing a blob', 'blob');
      }
      const c = client;
      const hash = createHash('sha256');
      let size = 0;
      let n = 0;
      let fill = Buffer.allocUnsafe(this.#chunk);
      let filled = 0;
      // The chunk being sent while the next one fills; its failure is looked at before the next send.
      let sending: Promise<unknown> | null = null;
      const send = async (data: Buffer): Promise<void> => {
        const failed = await sending;
        if (failed) throw failed;
        const row = n++;
        sending = c.query('insert into blob_chunks (sha256, n, data) values ($1, $2, $3)', [temp, row, data]).then(() => null, (e: unknown) => e);
      };
      for (;;) {
        let r: IteratorResult<Uint8Array>;
        try {
          r = await it.next();
        } catch (e) {
          throw inputFailed(e);
        }
        if (r.done) break;
        const bytes = r.value;
        hash.update(bytes);
        size += bytes.length;
        let off = 0;
        while (off < bytes.length) {
          const take = Math.min(bytes.length - off, this.#chunk - filled);
          fill.set(bytes.subarray(off, off + take), filled);
          filled += take;
          off += take;
          if (filled === this.#chunk) {
            await send(fill);
            // The sent buffer belongs to the query until it is written out: a fresh one fills.
            fill = Buffer.allocUnsafe(this.#chunk);
            filled = 0;
          }
        }
      }
      if (filled > 0) await send(fill.subarray(0, filled));
      const failed = await sending;
      if (failed) throw failed;
      const info = { sha256: hash.digest('hex'), size };
      checkAnnounced(info, opts);
      await c.query('select pg_advisory_xact_lock($1::bigint)', [lockKey(info.sha256)]);
      const present = await c.query('select 1 from blobs where sha256 = $1', [info.sha256]);
      if (present.rowCount) {
        await c.query('rollback');
        return { ...info, created: false };
      }
      // Chunks without a blobs row cannot be left by this store (one transaction); if a hand left some, they go.
      await c.query('delete from blob_chunks where sha256 = $1', [info.sha256]);
      await c.query('update blob_chunks set sha256 = $1 where sha256 = $2', [info.sha256, temp]);
      await c.query('insert into blobs (sha256, size) values ($1, $2)', [info.sha256, size]);
      await c.query('commit');
      return { ...info, created: true };
    } catch (e) {
      await it.return?.().catch(() => undefined);
      // A rollback that fails means the connection is gone: the pool must not hand it out again.
      if (client) await client.query('rollback').catch((err: Error) => (broken = err));
      throw fromPgError(e, 'storing a blob', 'blob');
    } finally {
      client?.release(broken);
    }
  }

  async get(sha256: string): Promise<{ size: number; stream: Readable } | null> {
    checkBlobName(sha256);
    const found = await this.#query<{ size: number }>(`reading blob ${sha256}`, 'select size from blobs where sha256 = $1', [sha256]);
    const row = found.rows[0];
    if (!row) return null;
    return { size: row.size, stream: this.#reader(sha256, row.size) };
  }

  /**
   * Fetches chunk n only when the consumer wants more (Readable calls read() again after a
   * push), each a query of its own on any pooled connection: a reader that stops early holds
   * no connection. A chunk missing before `size` bytes came (the blob deleted meanwhile) ends
   * the stream with BLOB_MISSING.
   */
  #reader(sha256: string, size: number): Readable {
    let n = 0;
    let sent = 0;
    const query = (text: string, values: unknown[]): Promise<pg.QueryResult<{ data: Buffer }>> => this.#query(`reading blob ${sha256}`, text, values);
    return new Readable({
      highWaterMark: CHUNK_BYTES,
      read() {
        if (sent >= size) {
          this.push(null);
          return;
        }
        query('select data from blob_chunks where sha256 = $1 and n = $2', [sha256, n]).then((r) => {
          if (this.destroyed) return;
          const data = r.rows[0]?.data;
          if (!data || data.length === 0 || sent + data.length > size) {
            this.destroy(new RuError('BLOB_MISSING', `blob ${sha256} ends after ${sent} of its ${size} bytes (removed while being read?)`, { blob: sha256 }));
            return;
          }
          n++;
          sent += data.length;
          this.push(data);
        }, (e: unknown) => this.destroy(e as Error));
      },
    });
  }

  async has(sha256: string): Promise<boolean> {
    checkBlobName(sha256);
    return ((await this.#query(`looking up blob ${sha256}`, 'select 1 from blobs where sha256 = $1', [sha256])).rowCount ?? 0) > 0;
  }

  /** In pages by name (keyset), so a large store is never one result in memory. */
  async *list(): AsyncGenerator<BlobInfo> {
    let after = '';
    for (;;) {
      const page = await this.#query<{ sha256: string; size: number }>('listing blobs', 'select sha256, size from blobs where sha256 > $1 order by sha256 limit 1000', [after]);
      for (const r of page.rows) yield { sha256: r.sha256, size: r.size };
      if (page.rows.length < 1000) return;
      after = page.rows[page.rows.length - 1]!.sha256;
    }
  }

  async delete(sha256: string): Promise<boolean> {
    checkBlobName(sha256);
    const client = await this.#pool.connect().catch((e: unknown) => {
      throw fromPgError(e, `removing blob ${sha256}`, 'blob');
    });
    let broken: Error | undefined;
    try {
      await client.query('begin');
      await client.query('select pg_advisory_xact_lock($1::bigint)', [lockKey(sha256)]);
      const gone = await client.query('delete from blobs where sha256 = $1', [sha256]);
      await client.query('delete from blob_chunks where sha256 = $1', [sha256]);
      await client.query('commit');
      return (gone.rowCount ?? 0) > 0;
    } catch (e) {
      await client.query('rollback').catch((err: Error) => (broken = err));
      throw fromPgError(e, `removing blob ${sha256}`, 'blob');
    } finally {
      client.release(broken);
    }
  }

  /** Milliseconds since the blob was stored, by the database's clock (store-check.ts: blob ages); null when absent. */
  async ageOf(sha256: string): Promise<number | null> {
    checkBlobName(sha256);
    const r = await this.#query<{ age: number }>(`reading blob ${sha256}`,
      'select greatest(0, floor(extract(epoch from clock_timestamp() - created) * 1000))::int8 as age from blobs where sha256 = $1', [sha256]);
    return r.rows[0]?.age ?? null;
  }

  /** None: an upload in progress is an uncommitted transaction, invisible, and gone with its connection. */
  async partials(): Promise<PartialBlob[]> {
    return [];
  }

  async sweepPartials(): Promise<number> {
    return 0;
  }

  async close(): Promise<void> {
    await this.#end();
  }
}
