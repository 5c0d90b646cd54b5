// Debian's real ReaR 2.7 reports its recovery through install-rear's init script
// (init/default/015_rear_update.sh): `recover-started` when the recover workflow's init stage
// reaches it, and `finished` from a ReaR exit task with the status rear really ends with. The
// runs use the overlay sandbox of test/support/rear-sandbox.ts and a real server on 127.0.0.1:
//   - an Error abort in the init stage: rear ends with 143 (Error's SIGTERM), although
//     EXIT_CODE and EXIT_FAIL_MESSAGE in the exit task look as after a success;
//   - the harness's own stop (an `exit` from an init script): ended early, not a success;
//   - a run that reaches the end of /usr/sbin/rear: `rear -s recover` (simulation: ReaR's share
//     scripts are only listed, so no disk is touched) with the init script sourced from
//     local.conf, which simulation does not skip: rear ends with 0, and so does the report.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { INIT_SCRIPT, INIT_SCRIPT_NAME } from '../../src/adapters/rear/boot-hook.ts';
import { loadConfig } from '../../src/server/config.ts';
import { startServer, type Running } from '../../src/server/serve.ts';
import { cleanup, CLI, jsonRequest, tempDir } from '../helpers.ts';
import { runRearRecoverInit, STOPPED_STATUS, type RearSandboxOptions, type RearSandboxResult } from '../support/rear-sandbox.ts';

const work = tempDir('ru-rear-recovery-report-');
let srv: Running;
let admin: string;
let token: string;

const show = (r: RearSandboxResult): string => `status ${r.status}\n--- stdout\n${r.stdout}--- stderr\n${r.stderr}--- sandbox\n${r.sandboxLog}--- log\n${r.log}`;

interface Event { kind: string; message: string; detail: Record<string, unknown> }
interface Recovery { phase: string; exitStatus: number | null }

/** The recovery the run opened (its recovery.json, in the sandbox's /), as the server shows it. */
async function recoveryOf(r: RearSandboxResult): Promise<{ recovery: Recovery; events: Event[] }> {
  assert.ok(r.exists('/run/rear-update/recovery.json'), `no recovery was opened\n${show(r)}`);
  const id = (JSON.parse(r.readText('/run/rear-update/recovery.json')) as { id: number }).id;
  const got = await jsonRequest(srv.url, admin, 'GET', `/api/v1/recoveries/${id}`);
  assert.equal(got.status, 200, JSON.stringify(got.json));
  return got.json;
}

/** A rescue system with rear-update (the built CLI) and settings naming the test's server. */
function run(o: Partial<RearSandboxOptions> & { localConf: string }): Promise<RearSandboxResult> {
  return runRearRecoverInit({
    ...o,
    files: {
      [`/usr/share/rear/init/default/${INIT_SCRIPT_NAME}`]: INIT_SCRIPT,
      '/usr/sbin/rear-update': { content: `#!/bin/sh\nexec ${process.execPath} ${CLI} "$@"\n`, mode: 0o755 },
      '/etc/rear-update/settings.conf': { content: `REAR_UPDATE_SERVER=${srv.url}\nREAR_UPDATE_TOKEN=${token}\n`, mode: 0o600 },
      ...o.files,
    },
  });
}

describe('real ReaR 2.7 reports recover-started and finished with the status it ends with', { timeout: 300_000, concurrency: true }, () => {
  before(async () => {
    assert.equal(process.getuid?.(), 0, 'the rear sandbox needs root (mount namespaces, overlayfs)');
    assert.match(execFileSync('rear', ['-V'], { encoding: 'utf8' }), /^Relax-and-Recover 2\.7 /, 'rear 2.7 must be installed (scripts/ensure-system-deps.sh)');
    assert.ok(existsSync(CLI), `${CLI} is missing: run node scripts/build.mjs`);
    srv = await startServer(loadConfig({ data: join(work, 'data'), listen: '127.0.0.1:0' }, {}), { log: false });
    admin = readFileSync(join(work, 'data', 'admin.token'), 'utf8').trim();
    assert.equal((await jsonRequest(srv.url, admin, 'POST', '/api/v1/hosts', { id: 'orig-web3' })).status, 201);
    // What an image carries: a fetch token (for the host its machines recover).
    const t = await jsonRequest(srv.url, admin, 'POST', '/api/v1/tokens', { scope: 'fetch:orig-web3', label: 'rear-recovery-report' });
    assert.equal(t.status, 201, JSON.stringify(t.json));
    token = t.json.token as string;
  });
  after(async () => {
    await srv?.close();
    cleanup(work);
  });

  test('rear aborted by Error in its init stage (status 143): finished with exit status 143, the recovery failed', async () => {
    const r = await run({ localConf: 'OUTPUT=ISO\n', files: { '/usr/share/rear/init/default/020_rear_update_test_error.sh': 'Error "rear-update test: an abort in the init stage"\n' } });
    assert.equal(r.status, 143, show(r));
    assert.match(r.stderr, /ERROR: rear-update test: an abort in the init stage/);
    const { recovery, events } = await recoveryOf(r);
    assert.deepEqual(events.map((e) => e.kind), ['booted', 'recover-started', 'finished'], show(r));
    assert.deepEqual(events[2]!.detail, { exitStatus: 143 });
    assert.match(events[2]!.message, /aborted with an error/);
    assert.deepEqual([recovery.phase, recovery.exitStatus], ['failed', 143]);
  });

  test('rear ended early by an exit in an init script (the harness\'s stop, status 42): finished non-zero, not done', async () => {
    const r = await run({ localConf: 'OUTPUT=ISO\n' });
    assert.equal(r.status, STOPPED_STATUS, show(r));
    const { recovery, events } = await recoveryOf(r);
    assert.deepEqual(events.map((e) => e.kind), ['booted', 'recover-started', 'finished'], show(r));
    assert.match(events[2]!.message, /ended before its end \(in .*SourceStage/);
    assert.equal(recovery.phase, 'failed');
    assert.notEqual(recovery.exitStatus, 0);
  });

  test('rear reaching its end (rear -s recover, status 0): finished with exit status 0, the recovery done', async () => {
    const r = await run({
      // Simulation lists ReaR's share scripts instead of running them, but sources local.conf:
      // the init script runs from there, in the recover workflow, as it would in the init stage.
      localConf: `OUTPUT=ISO\nsource /usr/share/rear/init/default/${INIT_SCRIPT_NAME}\n`,
      rearOptions: ['-s'],
    });
    assert.equal(r.status, 0, show(r));
    assert.match(r.stdout, /Source wrapup\/default\/990_copy_logfile\.sh/);
    const { recovery, events } = await recoveryOf(r);
    assert.deepEqual(events.map((e) => [e.kind, e.message]), [['booted', ''], ['recover-started', 'rear recover began'], ['finished', 'rear recover finished with exit code 0']], show(r));
    assert.deepEqual(events[2]!.detail, { exitStatus: 0 });
    assert.deepEqual([recovery.phase, recovery.exitStatus], ['done', 0]);
  });
});
