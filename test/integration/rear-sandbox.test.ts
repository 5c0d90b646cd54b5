// The ReaR sandbox harness (test/support/rear-sandbox.ts) against Debian's real rear 2.7 and
// real servers on 127.0.0.1: it isolates, it stops where it says, and ReaR's own
// RECOVERY_UPDATE_URL and DRLM code talk to our servers exactly as documented in its header.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { drlmLocalConf, runRearRecoverInit, STOP_SCRIPT, STOPPED_STATUS, type RearSandboxResult } from '../support/rear-sandbox.ts';
import { testCa } from '../helpers.ts';

/** One request as a test server saw it, including the raw request head as sent on the wire. */
interface Seen {
  readonly method: string;
  readonly url: string;
  readonly headers: IncomingMessage['headers'];
  body: string;
  ended: boolean;
}

interface TestServer {
  readonly base: string;
  readonly port: number;
  readonly seen: Seen[];
  /** Every byte received, one string per connection (TLS: after decryption). */
  raw(): string[];
  close(): Promise<void>;
}

type Handler = (req: IncomingMessage, res: ServerResponse, seen: Seen) => void;

async function startServer(handler: Handler, tls?: { key: Buffer; cert: Buffer }): Promise<TestServer> {
  const seen: Seen[] = [];
  const rawConns: Buffer[][] = [];
  const onRequest = (req: IncomingMessage, res: ServerResponse): void => {
    const s: Seen = { method: req.method ?? '', url: req.url ?? '', headers: req.headers, body: '', ended: false };
    seen.push(s);
    req.on('data', (d: Buffer) => (s.body += d.toString('utf8')));
    req.on('end', () => (s.ended = true));
    req.on('error', () => {});
    handler(req, res, s);
  };
  const server: Server = tls ? createHttpsServer(tls, onRequest) : createServer(onRequest);
  // A second 'data' listener on the (decrypted) socket sees exactly what curl sent.
  server.on(tls ? 'secureConnection' : 'connection', (sock: import('node:net').Socket) => {
    const chunks: Buffer[] = [];
    rawConns.push(chunks);
    sock.on('data', (d: Buffer) => chunks.push(Buffer.from(d)));
    sock.on('error', () => {});
  });
  await new Promise<void>((res) => server.listen(0, '127.0.0.1', res));
  const port = (server.address() as AddressInfo).port;
  return {
    base: `${tls ? 'https' : 'http'}://127.0.0.1:${port}`,
    port,
    seen,
    raw: () => rawConns.map((c) => Buffer.concat(c).toString('latin1')),
    close: () => {
      server.closeAllConnections();
      return new Promise((res) => server.close(() => res()));
    },
  };
}

const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

/** The request-head lines of every request (in raw captures) that starts with `method urlPrefix`. */
function rawHeads(raw: readonly string[], method: string, urlPrefix: string): string[][] {
  return raw
    .flatMap((conn) => conn.split(/(?=^(?:GET|PUT|POST|HEAD) \/)/m))
    .filter((r) => r.startsWith(`${method} ${urlPrefix}`))
    .map((r) => r.split('\r\n\r\n')[0]!.split('\r\n'));
}

describe('rear sandbox: Debian rear 2.7 up to its update step', { timeout: 300_000, concurrency: true }, () => {
  let dir = '';

  before(() => {
    assert.equal(process.getuid?.(), 0, 'the rear sandbox needs root (mount namespaces, overlayfs)');
    const version = execFileSync('rear', ['-V'], { encoding: 'utf8' });
    assert.match(version, /^Relax-and-Recover 2\.7 /, `rear 2.7 must be installed (scripts/ensure-system-deps.sh): ${version}`);
    execFileSync('curl', ['--version'], { stdio: 'pipe' });
    assert.ok(existsSync('/usr/share/rear/init/default/030_update_recovery_system.sh'));
    dir = mkdtempSync(join(tmpdir(), 'ru-rear-sandbox-test-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  test('writes stay in the sandbox, the stop script ends the init stage after 030, variables come back', async () => {
    const tag = randomBytes(6).toString('hex');
    // Host files the sandbox changes and deletes: both must be untouched afterwards.
    const victimChanged = `/var/tmp/rear-sandbox-victim-changed-${tag}`;
    const victimDeleted = `/var/tmp/rear-sandbox-victim-deleted-${tag}`;
    const victimDir = `/var/tmp/rear-sandbox-victim-dir-${tag}`;
    writeFileSync(victimChanged, 'host\n');
    writeFileSync(victimDeleted, 'host\n');
    mkdirSync(victimDir);
    writeFileSync(join(victimDir, 'a'), 'host\n');
    const probe = `/rear-sandbox-probe-${tag}`;
    const hostRearConf = readFileSync('/etc/rear/local.conf');
    const hostLogs = existsSync('/var/log/rear') ? readdirSync('/var/log/rear').sort() : [];
    let r: RearSandboxResult;
    try {
      r = await runRearRecoverInit({
        // local.conf is a bash script ReaR sources: a convenient way to act inside the sandbox.
        localConf: [
          `echo "written in the sandbox" > ${probe}`,
          `echo changed >> ${victimChanged}`,
          `rm -f ${victimDeleted}`,
          // A replaced directory (opaque in the overlay) and an absolute symlink into the sandbox.
          `rm -rf ${victimDir} && mkdir ${victimDir} && echo sandbox > ${victimDir}/b`,
          `ln -s /etc/rear/extra/file.txt ${probe}.link`,
          'BLOCK_DEVICES=$( find /dev -type b | wc -l )',
          'PID1=$( cat /proc/1/comm )',
          'TEST_SCALAR=$\'two\\nlines\'',
          'TEST_ARRAY=( one "two words" )',
          // declare in a config file would make a local of ReaR's Source function: -g is needed.
          'declare -gA TEST_ASSOC=( [k 1]=v1 [k2]="" )',
          '',
        ].join('\n'),
        files: { '/etc/rear/extra/file.txt': { content: 'extra\n', mode: 0o600 } },
        vars: ['TEST_SCALAR', 'TEST_ARRAY', 'TEST_ASSOC', 'NOT_SET_ANYWHERE', 'WORKFLOW', 'RECOVERY_MODE', 'BLOCK_DEVICES', 'PID1'],
      });
    } finally {
      // The host's view, checked even when the run threw.
      assert.equal(readFileSync(victimChanged, 'utf8'), 'host\n');
      assert.equal(readFileSync(victimDeleted, 'utf8'), 'host\n');
      assert.deepEqual(readdirSync(victimDir), ['a']);
      rmSync(victimChanged, { force: true });
      rmSync(victimDeleted, { force: true });
      rmSync(victimDir, { recursive: true, force: true });
    }
    assert.equal(existsSync(probe), false, 'a file written in the sandbox reached the real /');
    assert.equal(existsSync(STOP_SCRIPT), false, 'the stop script reached the real /');
    assert.ok(readFileSync('/etc/rear/local.conf').equals(hostRearConf), "the host's local.conf changed");
    assert.deepEqual(existsSync('/var/log/rear') ? readdirSync('/var/log/rear').sort() : [], hostLogs, "a log reached the host's /var/log/rear");

    assert.equal(r.status, STOPPED_STATUS, `${r.stdout}${r.stderr}${r.sandboxLog}\n${r.log}`);
    assert.ok(r.stopped);
    assert.equal(r.timedOut, false);
    assert.doesNotMatch(r.stderr, /failed/, 'the stop is not reported as a failure');
    assert.match(r.stdout, /rear-sandbox: stopping after the update step \(exit 42\)/);
    // The init stage, in order, up to our script and nothing after it.
    const included = [...r.log.matchAll(/Including (init\/default\/\S+)/g)].map((m) => m[1]);
    assert.deepEqual(included, [
      'init/default/005_verify_os_conf.sh',
      'init/default/010_EFISTUB_check.sh',
      'init/default/010_set_drlm_env.sh',
      'init/default/030_update_recovery_system.sh',
      'init/default/031_rear_update_test_stop.sh',
    ]);
    assert.doesNotMatch(r.log, /Running recover workflow|Including (layout|setup|verify)\//);

    // The sandbox saw its own writes and deletions; readFile answers with that view.
    assert.equal(r.readText(probe), 'written in the sandbox\n');
    assert.equal(r.readText(victimChanged), 'host\nchanged\n');
    assert.equal(r.exists(victimDeleted), false);
    assert.throws(() => r.readFile(victimDeleted), { code: 'ENOENT' });
    assert.ok(r.written.includes(probe) && r.written.includes(victimChanged), r.written.join('\n'));
    assert.ok(r.deleted.includes(victimDeleted), r.deleted.join('\n'));
    assert.equal(r.readText('/etc/rear/extra/file.txt'), 'extra\n');
    assert.equal(r.readText(`${probe}.link`), 'extra\n', 'an absolute symlink resolves inside the sandbox');
    assert.equal(existsSync(`${probe}.link`), false);
    assert.equal(r.readText(`${victimDir}/b`), 'sandbox\n');
    assert.equal(r.exists(`${victimDir}/a`), false, 'the host file shows through a directory the sandbox replaced');
    assert.match(r.readText('/etc/rear-release'), /^Relax-and-Recover release 2\.7/);
    // /etc/rear holds only what the test gave, plus the os.conf ReaR's 005 script writes.
    assert.equal(r.exists('/etc/rear/cert'), false);
    assert.match(r.readText('/etc/rear/os.conf'), /^OS_VENDOR=/);
    // Unchanged files come from the host, through symlinks resolved inside the sandbox.
    assert.equal(r.readText('/etc/os-release'), readFileSync('/etc/os-release', 'utf8'));

    assert.deepEqual(r.vars, {
      TEST_SCALAR: 'two\nlines',
      TEST_ARRAY: ['one', 'two words'],
      TEST_ASSOC: { 'k 1': 'v1', k2: '' },
      WORKFLOW: 'recover',
      RECOVERY_MODE: 'y',
      BLOCK_DEVICES: '0',
      PID1: 'bash',
    });
    assert.match(r.declared, /^declare -r WORKFLOW="recover"$/m);
  });

  test('a hung rear is stopped at timeoutMs, and nothing it started survives the sandbox', async () => {
    const tag = randomBytes(6).toString('hex');
    const r = await runRearRecoverInit({ localConf: `sh -c 'sleep 120; : ${tag}' &\nsleep 120\n`, timeoutMs: 2000 });
    // timeout(1): 124 after SIGTERM, 137 when rear's exit tasks outlived the 5 s grace period.
    assert.ok(r.status === 124 || r.status === 137, `${r.status}: ${r.stdout}${r.stderr}${r.sandboxLog}`);
    assert.ok(r.timedOut);
    assert.equal(r.stopped, false);
    assert.ok(r.durationMs < 60_000, String(r.durationMs));
    // The kernel kills every process of a PID namespace when its first process (the wrapper) exits.
    const leftovers = readdirSync('/proc').filter((p) => {
      if (!/^\d+$/.test(p)) return false;
      try {
        return readFileSync(`/proc/${p}/cmdline`, 'latin1').includes(tag);
      } catch {
        return false;
      }
    });
    assert.deepEqual(leftovers, []);
  });

  // Each test has its own URL path (update) or DRLM client ID, so that the runs, each in its own
  // sandbox and PID namespace, go in parallel: ReaR's exit path alone sleeps 3 to 9 s per run.
  describe('RECOVERY_UPDATE_URL (init/default/030_update_recovery_system.sh)', { concurrency: true }, () => {
    let srv: TestServer;
    let archive: Buffer;
    const tag = randomBytes(6).toString('hex');
    const payload = `/root/rear-sandbox-update-${tag}/payload.txt`;
    const requests = (path: string): string[] => srv.seen.filter((s) => s.url === path).map((s) => `${s.method} ${s.url}`);

    before(async () => {
      // The update archive, made with GNU tar: a new file, and a replaced local.conf.
      const src = join(dir, 'update-src');
      mkdirSync(join(src, 'root', `rear-sandbox-update-${tag}`), { recursive: true });
      mkdirSync(join(src, 'etc', 'rear'), { recursive: true });
      writeFileSync(join(src, payload.slice(1)), `payload ${tag}\n`);
      writeFileSync(join(src, 'etc/rear/local.conf'), 'TEST_VAR=from_update\n');
      execFileSync('tar', ['-C', src, '-czf', join(dir, 'update.tar.gz'), payload.slice(1), 'etc/rear/local.conf']);
      archive = readFileSync(join(dir, 'update.tar.gz'));
      srv = await startServer((req, res) => {
        if (req.url === '/x.tar.gz') res.writeHead(200, { 'content-type': 'application/gzip' }).end(archive);
        else if (req.url === '/moved.tar.gz') res.writeHead(302, { location: '/x.tar.gz' }).end();
        else res.writeHead(404).end('no such bundle');
      });
    });
    after(() => srv.close());

    test("ReaR's own 030 script downloads the archive and extracts it into the sandbox's / only", async () => {
      const url = `${srv.base}/x.tar.gz`;
      const r = await runRearRecoverInit({ localConf: `RECOVERY_UPDATE_URL=${url}\nTEST_VAR=from_local\n`, vars: ['TEST_VAR', 'RECOVERY_UPDATE_URL'] });
      assert.equal(r.status, STOPPED_STATUS, `${r.stdout}${r.stderr}\n${r.log}`);
      assert.deepEqual(requests('/x.tar.gz'), ['GET /x.tar.gz']);
      assert.match(String(srv.seen.find((s) => s.url === '/x.tar.gz')!.headers['user-agent']), /^curl\//);
      assert.ok(r.stdout.includes(`Updating recovery system with the content from '${url}'`), r.stdout);
      assert.match(r.stdout, /Updated recovery system\./);
      // Extracted at the sandbox's /, kept as /recovery-update.tar.gz, and nowhere on the host.
      assert.equal(r.readText(payload), `payload ${tag}\n`);
      assert.equal(sha256(r.readFile('/recovery-update.tar.gz')), sha256(archive));
      assert.ok(r.written.includes(payload) && r.written.includes('/recovery-update.tar.gz'), r.written.join('\n'));
      assert.equal(existsSync(payload), false, 'the update reached the real /');
      assert.equal(existsSync('/recovery-update.tar.gz'), false);
      // The replaced local.conf is in place but was sourced before 030: this run keeps the old values.
      assert.equal(r.readText('/etc/rear/local.conf'), 'TEST_VAR=from_update\n');
      assert.deepEqual(r.vars, { TEST_VAR: 'from_local', RECOVERY_UPDATE_URL: url });
    });

    test('a 404 makes rear fail with its own error; the stop is never reached', async () => {
      const url = `${srv.base}/missing.tar.gz`;
      const r = await runRearRecoverInit({ localConf: `RECOVERY_UPDATE_URL=${url}\n`, vars: ['WORKFLOW'] });
      // Error() signals rear's main process: SIGTERM, 128 + 15.
      assert.equal(r.status, 143, `${r.stdout}${r.stderr}`);
      assert.equal(r.stopped, false);
      assert.deepEqual(requests('/missing.tar.gz'), ['GET /missing.tar.gz']);
      const msg = `ERROR: curl '${url}' failed with HTTP response code '404'.`;
      assert.ok(r.log.includes(msg), r.log);
      assert.ok(r.stderr.includes(msg), r.stderr);
      assert.match(r.stderr, /Aborting due to an error/);
      assert.doesNotMatch(r.log, /031_rear_update_test_stop/);
      assert.deepEqual(r.vars, {});
    });

    test('a redirect is a failure too: curl runs without -L and only 200 is accepted', async () => {
      const r = await runRearRecoverInit({ localConf: `RECOVERY_UPDATE_URL=${srv.base}/moved.tar.gz\n` });
      assert.equal(r.stopped, false);
      assert.notEqual(r.status, 0);
      assert.deepEqual(requests('/moved.tar.gz'), ['GET /moved.tar.gz']);
      assert.match(r.log, /ERROR: curl '[^']+\/moved\.tar\.gz' failed with HTTP response code '302'\./);
    });
  });

  describe('DRLM_MANAGED=y (lib/drlm-functions.sh) over https with a CA the test made', { concurrency: true }, () => {
    let srv: TestServer;
    const caFile = '/etc/rear/cert/drlm-ca.pem';
    let caPem = '';
    // Like DRLM, the fake server compares the Authorization header's value with the client's token.
    const tokens: Record<string, string> = {
      e229: 'tok-e229-0123456789abcdef',
      e230: 'secret token with spaces *?[x]',
      e231: 'tok-e231-0123456789abcdef',
    };

    before(async () => {
      const ca = testCa(join(dir, 'tls'), 'rear-sandbox test CA');
      caPem = ca.caPem;
      srv = await startServer(
        (req, res) => {
          const m = /^\/clients\/([^/]+)\/(config|log\/recover\/\d{14})$/.exec(req.url ?? '');
          const id = m?.[1] ?? '';
          if (!m || !(id in tokens)) res.writeHead(404).end();
          else if (req.headers.authorization !== tokens[id]) res.writeHead(403).end('forbidden\n');
          else if (req.method === 'GET' && m[2] === 'config') {
            res.writeHead(200, { 'content-type': 'text/plain' }).end(`TEST_VAR=from_drlm\nDRLM_TEST_ARRAY=( ${id} "b c" )\n`);
          } else if (req.method === 'PUT' && m[2] !== 'config') req.on('end', () => res.writeHead(200).end());
          else res.writeHead(405).end();
        },
        { key: readFileSync(ca.key), cert: readFileSync(ca.cert) },
      );
    });
    after(() => srv.close());

    const DRLM_VARS = ['TEST_VAR', 'DRLM_TEST_ARRAY', 'DRLM_MANAGED', 'DRLM_SERVER', 'DRLM_ID', 'DRLM_REST_OPTS'];
    const seenBy = (id: string) => srv.seen.filter((s) => s.url.startsWith(`/clients/${id}/`));

    /** The config GET and the log PUT of client `id`, each with exactly `authLine` in its raw request head. */
    function assertDrlmTraffic(r: RearSandboxResult, id: string, authLine: string): void {
      const seen = seenBy(id);
      assert.deepEqual(seen.map((s) => s.method + ' ' + s.url.replace(/\d{14}$/, '<YYYYmmddHHMMSS>')), [
        `GET /clients/${id}/config`,
        `PUT /clients/${id}/log/recover/<YYYYmmddHHMMSS>`,
      ]);
      for (const [method, url] of [['GET', `/clients/${id}/config `], ['PUT', `/clients/${id}/log/recover/`]] as const) {
        const heads = rawHeads(srv.raw(), method, url);
        assert.equal(heads.length, 1, `${method} ${url}: ${srv.raw().join('\n----\n')}`);
        assert.deepEqual(heads[0]!.filter((l) => /^authorization\s*:/i.test(l)), [authLine], heads[0]!.join('\n'));
      }
      assert.equal(seen[0]!.headers.authorization, tokens[id]);
      // The log upload: one streamed (chunked) PUT of ReaR's log, started in 010. ReaR's exit
      // path terminates `tail -f` first, so curl ends the upload cleanly with what was logged
      // up to "Exiting rear recover ...".
      const put = seen[1]!;
      assert.equal(put.headers['transfer-encoding'], 'chunked');
      assert.equal(put.headers.authorization, tokens[id]);
      assert.match(put.body, /^\S+ \S+ Relax-and-Recover 2\.7 /);
      assert.match(put.body, /DRLM_MANAGED: Loading configuration from DRLM \.\.\./);
      assert.match(put.body, /DRLM_MANAGED: Sending Logfile: '\/var\/log\/rear\/rear-[^']+\.log' to DRLM in real time/);
      assert.match(put.body, /Including init\/default\/031_rear_update_test_stop\.sh\n/);
      assert.equal(put.ended, true);
      // What the server got is the beginning of the log ReaR kept in the sandbox.
      assert.ok(r.log.startsWith(put.body), `${put.body}\n----\n${r.log}`);
    }

    test('SERVER/ID/REST_OPTS arguments: config sourced from https://SERVER/clients/ID/config, log PUT, -H Authorization:TOKEN', async () => {
      const restOpts = `--cacert ${caFile} -H Authorization:${tokens.e229}`;
      const r = await runRearRecoverInit({
        // local.conf's own options are overridden by the REST_OPTS argument.
        localConf: 'DRLM_MANAGED=y\nDRLM_REST_OPTS="-k"\nTEST_VAR=from_local\n',
        files: { [caFile]: caPem },
        args: [`SERVER=127.0.0.1:${srv.port}`, 'ID=e229', `REST_OPTS=${restOpts}`],
        vars: DRLM_VARS,
      });
      assert.equal(r.status, STOPPED_STATUS, `${r.stdout}${r.stderr}\n${r.log}`);
      assert.deepEqual(r.vars, {
        TEST_VAR: 'from_drlm',
        DRLM_TEST_ARRAY: ['e229', 'b c'],
        DRLM_MANAGED: 'y',
        DRLM_SERVER: `127.0.0.1:${srv.port}`,
        DRLM_ID: 'e229',
        DRLM_REST_OPTS: restOpts,
      });
      assert.match(r.stdout, /DRLM_MANAGED: Loading configuration from DRLM \.\.\./);
      // curl sends the header word as given: no space after the colon; the value parses as the token.
      assertDrlmTraffic(r, 'e229', `Authorization:${tokens.e229}`);
      // ReaR logs each argument it turns into a DRLM_ variable: the token is in the log (and its upload).
      assert.ok(r.log.includes(`Setting DRLM_REST_OPTS=${restOpts}`));
    });

    test('DRLM_REST_OPTS in local.conf with -H @file: a header line with spaces and glob characters arrives intact', async () => {
      const r = await runRearRecoverInit({
        localConf: drlmLocalConf(srv.port, 'e230', `"--cacert ${caFile} -H @/etc/rear/drlm.headers"`),
        files: { [caFile]: caPem, '/etc/rear/drlm.headers': { content: `Authorization: ${tokens.e230}\n`, mode: 0o600 } },
        vars: DRLM_VARS,
      });
      assert.equal(r.status, STOPPED_STATUS, `${r.stdout}${r.stderr}\n${r.log}`);
      assert.equal(r.vars.TEST_VAR, 'from_drlm');
      assert.deepEqual(r.vars.DRLM_TEST_ARRAY, ['e230', 'b c']);
      assertDrlmTraffic(r, 'e230', `Authorization: ${tokens.e230}`);
    });

    test('-H "Authorization: TOKEN" does not survive ReaR\'s unquoted $DRLM_REST_OPTS: no header is sent and rear fails', async () => {
      const r = await runRearRecoverInit({
        localConf: drlmLocalConf(srv.port, 'e231', `'--cacert ${caFile} -H "Authorization: ${tokens.e231}"'`),
        files: { [caFile]: caPem },
      });
      assert.equal(r.stopped, false);
      assert.notEqual(r.status, 0);
      // curl got the words '"Authorization:' (a header without value: sent as nothing) and
      // 'TOKEN"' (a second, malformed URL, which takes the -o): the config GET carries no token.
      assert.deepEqual(seenBy('e231').map((s) => `${s.method} ${s.url}`), ['GET /clients/e231/config']);
      assert.equal(seenBy('e231')[0]!.headers.authorization, undefined);
      assert.match(r.log, /DRLM_MANAGED: curl failed with HTTP response code '000403' trying to load configuration from DRLM\./);
    });
  });
});
