// Where recovery logs' bytes live (core/store/log-bytes.ts), on both backends: the data
// directory and PostgreSQL (a private real cluster: test/support/postgres.ts). Then what several
// instances on one database need of the logs and the bus (server/bus.ts, pg-bus.ts): a log
// received by one instance is followed on another to its last byte and the follower ends when
// the upload does; a message reaches the other instances and this one once; the bus comes back
// after PostgreSQL restarts; a pending machine waiting on one instance hears of its assignment
// through another, and even without the message (the once-a-second re-read).

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, describe, test } from 'node:test';
import { DirLogStore } from '../../src/adapters/storage/dir-logs.ts';
import { openPgBus } from '../../src/adapters/storage/pg-bus.ts';
import { openPgLogs } from '../../src/adapters/storage/pg-logs.ts';
import { openPgMetadata } from '../../src/adapters/storage/pg-metadata.ts';
import type { LogBytesStore } from '../../src/core/store/log-bytes.ts';
import { LocalBus, type BusMessage } from '../../src/server/bus.ts';
import { LogService } from '../../src/server/logs.ts';
import { RecoveryService } from '../../src/server/recoveries.ts';
import { usePgCluster } from '../support/postgres.ts';

const pgCluster = usePgCluster();
const dirs: string[] = [];
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

async function all(it: AsyncIterable<Buffer>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of it) parts.push(c);
  return Buffer.concat(parts);
}

function logBytesContract(name: string, open: () => Promise<LogBytesStore>): void {
  describe(`log bytes: ${name}`, () => {
    test('appended pieces read back whole and in any range across piece boundaries; size and list say what is stored', async () => {
      const s = await open();
      try {
        const pieces = [randomBytes(10), randomBytes(1), randomBytes(70_000), randomBytes(333)];
        let at = 0;
        for (const p of pieces) {
          await s.append(7, at, p);
          at += p.length;
        }
        await s.append(9, 0, Buffer.from('other log\n'));
        const whole = Buffer.concat(pieces);
        assert.equal(await s.size(7), whole.length);
        assert.equal(await s.size(8), 0, 'a log with no bytes has size 0');
        assert.deepEqual(await all(s.read(7, 0)), whole);
        for (const [a, b] of [[0, 10], [5, 11], [10, 11], [9, 70_011], [70_010, whole.length], [whole.length - 1, whole.length]] as const) {
          assert.deepEqual(await all(s.read(7, a, b)), whole.subarray(a, b), `[${a}, ${b})`);
        }
        assert.deepEqual(await all(s.read(7, whole.length)), Buffer.alloc(0));
        assert.deepEqual(await all(s.read(8, 0)), Buffer.alloc(0));
        const listed: Record<number, number> = {};
        for await (const l of s.list()) listed[l.id] = l.bytes;
        assert.deepEqual(listed, { 7: whole.length, 9: 10 });
      } finally {
        await s.close();
      }
    });

    test('a reader that asked for [start, end) never gets bytes appended after it started', async () => {
      const s = await open();
      try {
        await s.append(3, 0, Buffer.from('one\n'));
        const it = s.read(3, 0, 4)[Symbol.asyncIterator]();
        await s.append(3, 4, Buffer.from('two\n'));
        const parts: Buffer[] = [];
        for (let r = await it.next(); !r.done; r = await it.next()) parts.push(r.value);
        assert.equal(Buffer.concat(parts).toString(), 'one\n');
      } finally {
        await s.close();
      }
    });
  });
}

logBytesContract('directory', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'ru-logs-'));
  dirs.push(dir);
  mkdirSync(join(dir, 'logs'));
  return new DirLogStore(join(dir, 'logs'));
});
logBytesContract('PostgreSQL', async () => openPgLogs(await pgCluster().createDatabase('logs')));

/** One server instance's parts on a shared database. */
async function instance(db: string) {
  const meta = await openPgMetadata(db);
  const bytes = await openPgLogs(db);
  const bus = await openPgBus(db);
  const logs = new LogService(meta, bytes, bus);
  const recoveries = new RecoveryService(meta, { now: () => new Date(), silentAfterMs: 300_000 }, bus);
  return { meta, bytes, bus, logs, recoveries, close: async () => { await bus.close(); await bytes.close(); await meta.close(); } };
}

describe('several instances on one PostgreSQL database', () => {
  test('a live log received by instance A is followed on instance B to its last byte, and B\'s follower ends when the upload completes', async () => {
    const db = await pgCluster().createDatabase('follow');
    const a = await instance(db);
    const b = await instance(db);
    try {
      await a.meta.addHost({ id: 'orig-web1', macs: ['52:54:00:7a:00:01'] });
      const rec = await a.meta.openLog({ host: 'orig-web1', workflow: 'recover', stamp: '20261130-1200' });
      const body = new PassThrough();
      const receiving = a.logs.receive(rec, body, 1 << 30, () => undefined);
      const sent: Buffer[] = [];
      const write = (s: string | Buffer): void => {
        const c = Buffer.isBuffer(s) ? s : Buffer.from(s);
        sent.push(c);
        body.write(c);
      };
      write('Relax-and-Recover 2.7 / Git\n');
      // B follows from the start while A receives.
      const followed = all(b.logs.read(rec.id, 0, true));
      for (let i = 0; i < 20; i++) {
        write(`line ${i} ${'x'.repeat(i * 50)}\n`);
        if (i % 5 === 0) write(randomBytes(80_000)); // beyond one stored piece
        await sleep(60);
      }
      write('Finished running recover workflow\n');
      body.end();
      const done = await receiving;
      assert.equal(done.complete, true);
      const got = await followed;
      assert.equal(got.length, Buffer.concat(sent).length);
      assert.ok(got.equals(Buffer.concat(sent)), 'B followed every byte A received, in order');
    } finally {
      await a.close();
      await b.close();
    }
  });

  test('an upload broken off on A ends B\'s follower at once (the bus says so), not after the quiet period', async () => {
    const db = await pgCluster().createDatabase('broken');
    const a = await instance(db);
    const b = await instance(db);
    try {
      await a.meta.addHost({ id: 'orig-web2', macs: ['52:54:00:7a:00:02'] });
      const rec = await a.meta.openLog({ host: 'orig-web2', workflow: 'recover', stamp: '20261130-1201' });
      const body = new PassThrough();
      const receiving = a.logs.receive(rec, body, 1 << 30, () => undefined);
      body.write('first line\n');
      const followed = all(b.logs.read(rec.id, 0, true));
      await sleep(500);
      body.destroy(new Error('client went away'));
      const done = await receiving;
      assert.equal(done.complete, false);
      const t0 = Date.now();
      assert.equal((await followed).toString(), 'first line\n');
      // The quiet period is 15 s; the ended message makes it far shorter. Generous bound for a loaded machine.
      assert.ok(Date.now() - t0 < 10_000, `the follower ended ${Date.now() - t0} ms after the upload broke off`);
    } finally {
      await a.close();
      await b.close();
    }
  });

  test('a quiet upload on A (rear busy, nothing logged) is touched every 5 s, so B keeps following past its quiet period; it still ends complete', async () => {
    const db = await pgCluster().createDatabase('quiet');
    const a = await instance(db);
    const b = await instance(db);
    try {
      await a.meta.addHost({ id: 'orig-web3', macs: ['52:54:00:7a:00:03'] });
      const rec = await a.meta.openLog({ host: 'orig-web3', workflow: 'recover', stamp: '20261130-1202' });
      const body = new PassThrough();
      const receiving = a.logs.receive(rec, body, 1 << 30, () => undefined);
      body.write('before the quiet spell\n');
      const followed = all(b.logs.read(rec.id, 0, true));
      await sleep(1500);
      const first = (await a.meta.getLog(rec.id))!.updated;
      await sleep(5500);
      const touched = (await a.meta.getLog(rec.id))!.updated;
      assert.ok(touched > first, `the index was touched while quiet (${first} -> ${touched})`);
      body.end('after it\n');
      const done = await receiving;
      assert.equal(done.complete, true);
      await sleep(300);
      assert.equal((await b.meta.getLog(rec.id))!.complete, true, 'no touch landed after the end');
      assert.equal((await followed).toString(), 'before the quiet spell\nafter it\n');
    } finally {
      await a.close();
      await b.close();
    }
  });

  test('a bus message reaches the other instance once and this one once (not again through PostgreSQL); after a PostgreSQL restart the bus works again by itself', async () => {
    const db = await pgCluster().createDatabase('bus');
    const a = await openPgBus(db);
    const b = await openPgBus(db);
    const heardA: string[] = [];
    const heardB: string[] = [];
    const key = (m: BusMessage, local: boolean): string => `${m.kind}:${'id' in m ? m.id : '-'}:${local ? 'local' : 'remote'}`;
    a.subscribe((m, l) => heardA.push(key(m, l)));
    b.subscribe((m, l) => heardB.push(key(m, l)));
    const until = async (cond: () => boolean, what: string): Promise<void> => {
      for (let i = 0; i < 300 && !cond(); i++) await sleep(100);
      assert.ok(cond(), what);
    };
    try {
      a.publish({ kind: 'pending', id: 5, change: 'assigned' });
      await until(() => heardB.includes('pending:5:remote'), 'B heard A\'s message');
      await sleep(300);
      assert.deepEqual(heardA, ['pending:5:local']);
      assert.deepEqual(heardB, ['pending:5:remote']);
      pgCluster().stop();
      pgCluster().start();
      // Reconnection takes a few tries; messages sent meanwhile may be lost (the readers re-read), so send until heard.
      for (let i = 0; i < 60 && !heardA.includes('recovery:9:remote'); i++) {
        b.publish({ kind: 'recovery', id: 9, seq: 1 });
        await sleep(250);
      }
      assert.ok(heardA.includes('recovery:9:remote'), 'A hears B again after PostgreSQL restarted');
    } finally {
      await a.close();
      await b.close();
    }
  });

  test('a pending machine waiting on A hears of its assignment through B; and within about a second when the message is lost', async () => {
    const db = await pgCluster().createDatabase('assign');
    const a = await instance(db);
    const b = await instance(db);
    // An instance whose bus reaches nobody: its assignment arrives only by A's re-reading.
    const mute = { meta: await openPgMetadata(db) };
    const muteRecoveries = new RecoveryService(mute.meta, { now: () => new Date(), silentAfterMs: 300_000 }, new LocalBus());
    try {
      await a.meta.addHost({ id: 'orig-db9', macs: ['52:54:00:7a:00:09'] });
      for (const [through, label] of [[b.recoveries, 'bus'], [muteRecoveries, 're-read']] as const) {
        const p = await a.meta.recordPending({ macs: [label === 'bus' ? '52:54:00:7a:01:01' : '52:54:00:7a:01:02'], uuid: null, serial: null, hostname: null }, '127.0.0.1');
        const waiting = a.recoveries.waitAssigned(p.id, 20_000);
        await sleep(300);
        const t0 = Date.now();
        await through.assign({ token: null, address: null }, p.id, 'orig-db9');
        assert.equal(await waiting, true, `${label}: assigned`);
        const ms = Date.now() - t0;
        console.log(`# assignment through another instance heard after ${ms} ms (${label})`);
        assert.ok(ms < 5000, `${label}: heard after ${ms} ms`);
      }
      const never = await a.meta.recordPending({ macs: ['52:54:00:7a:01:03'], uuid: null, serial: null, hostname: null }, '127.0.0.1');
      assert.equal(await a.recoveries.waitAssigned(never.id, 1500), false, 'an unassigned machine waits out its time');
    } finally {
      await mute.meta.close();
      await a.close();
      await b.close();
    }
  });
});
