import assert from 'node:assert/strict';
import { test } from 'node:test';
import { effectiveEnv, encodeSettings, factSettings, parseSettings, shellQuote } from './settings.ts';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';

test('settings round-trip through our encoder and parser, quotes included', () => {
  const values = { REAR_UPDATE_SERVER: 'https://rear:8443', REAR_UPDATE_TOKEN: "ru_it's $HOME `x`", REAR_UPDATE_KEEP: 'etc/rear/rescue.conf etc/rear/x*' };
  const text = encodeSettings(values, 'header');
  assert.deepEqual(parseSettings(text), values);
});

test('bash sourcing the file sees exactly the same values (no expansion)', () => {
  const values = { REAR_UPDATE_SERVER: 'http://a:1/b c', REAR_UPDATE_TOKEN: "x'y\"z$(id)" };
  const file = join(mkdtempSync(join(tmpdir(), 'ru-settings-')), 'settings.conf');
  writeFileSync(file, encodeSettings(values, 'h'));
  const r = spawnSync('bash', ['-c', `source "$1"; printf '%s\\n%s' "$REAR_UPDATE_SERVER" "$REAR_UPDATE_TOKEN"`, 'bash', file], { encoding: 'utf8' });
  rmSync(dirname(file), { recursive: true });
  assert.equal(r.stdout, `${values.REAR_UPDATE_SERVER}\n${values.REAR_UPDATE_TOKEN}`);
  assert.equal(shellQuote("a'b"), `'a'\\''b'`);
});

test('unknown keys and comments are ignored; plain unquoted values are read', () => {
  assert.deepEqual(parseSettings('# c\nFOO=1\nREAR_UPDATE_WAIT=90s\n  REAR_UPDATE_ID_FROM=mac # how\n'), { REAR_UPDATE_WAIT: '90s', REAR_UPDATE_ID_FROM: 'mac' });
});

test('template hostname: REAR_UPDATE_HOSTNAME describes one machine: never written into an image, ignored when an image\'s settings.conf has it', () => {
  assert.throws(() => encodeSettings({ REAR_UPDATE_HOSTNAME: 'e229' }, 'h'), /must not be written into an image/);
  const file = join(mkdtempSync(join(tmpdir(), 'ru-settings-')), 'settings.conf');
  writeFileSync(file, "REAR_UPDATE_HOSTNAME='e229'\nREAR_UPDATE_IMAGE_HOSTNAME='e229'\nREAR_UPDATE_IMAGE_UUID='4c4c4544-0033-3010-8044-b2c04f4e3232'\n");
  try {
    const env = effectiveEnv({ REAR_UPDATE_SETTINGS: file });
    assert.equal(env.REAR_UPDATE_HOSTNAME, undefined);
    assert.deepEqual(factSettings({}, env), { hostname: null, imageHostname: 'e229', imageUuid: '4c4c4544-0033-3010-8044-b2c04f4e3232', imageSerial: null });
    // From the environment or a flag (flag first) it counts.
    assert.equal(factSettings({}, { ...env, REAR_UPDATE_HOSTNAME: 'e230' }).hostname, 'e230');
    assert.equal(factSettings({ hostname: 'e231' }, { ...env, REAR_UPDATE_HOSTNAME: 'e230' }).hostname, 'e231');
  } finally {
    rmSync(dirname(file), { recursive: true });
  }
});
