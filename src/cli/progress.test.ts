import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Progress, progressStyle, type ProgressContext } from './progress.ts';

const pty: ProgressContext = { isTTY: true, target: '/dev/pts/0', consoleActive: null, term: 'xterm-256color', override: undefined };

test('a bar on a pseudo terminal or a local virtual console', () => {
  assert.equal(progressStyle(pty), 'bar');
  assert.equal(progressStyle({ ...pty, target: '/dev/tty1', term: 'linux' }), 'bar');
  assert.equal(progressStyle({ ...pty, target: null }), 'bar', 'no /proc: isatty is all there is');
});

test('plain lines when stderr is no terminal (a pipe, a log file)', () => {
  assert.equal(progressStyle({ ...pty, isTTY: false, target: 'pipe:[4242]' }), 'plain');
  assert.equal(progressStyle({ ...pty, isTTY: false, target: '/var/log/rear-update.log' }), 'plain');
});

test('serial console hazard: plain lines on serial, USB-serial, ARM, hypervisor and s390 consoles, which garble escape codes', () => {
  for (const target of ['/dev/ttyS0', '/dev/ttyS12', '/dev/ttyAMA0', '/dev/ttyUSB1', '/dev/hvc0', '/dev/ttysclp0']) {
    assert.equal(progressStyle({ ...pty, target, term: 'vt220' }), 'plain', target);
  }
  assert.equal(progressStyle({ ...pty, target: '/dev/ttySX' }), 'bar', 'only real device names count');
});

test('/dev/console is serial when the last active console is (the rescue system\'s console=ttyS0)', () => {
  const console = { ...pty, target: '/dev/console', term: 'linux' };
  assert.equal(progressStyle({ ...console, consoleActive: 'ttyS0\n' }), 'plain');
  assert.equal(progressStyle({ ...console, consoleActive: 'tty0 ttyS0\n' }), 'plain');
  assert.equal(progressStyle({ ...console, consoleActive: 'ttyS0 tty0\n' }), 'bar', 'the last entry is /dev/console: here the screen');
  assert.equal(progressStyle({ ...console, consoleActive: 'hvc0\n' }), 'plain');
  assert.equal(progressStyle({ ...console, consoleActive: null }), 'bar');
});

test('TERM=dumb gets plain lines', () => {
  assert.equal(progressStyle({ ...pty, term: 'dumb' }), 'plain');
});

test('REAR_UPDATE_PROGRESS=bar|plain|none wins; anything else is ignored', () => {
  assert.equal(progressStyle({ ...pty, target: '/dev/ttyS0', override: 'bar' }), 'bar');
  assert.equal(progressStyle({ ...pty, isTTY: false, override: 'bar' }), 'bar');
  assert.equal(progressStyle({ ...pty, override: 'plain' }), 'plain');
  assert.equal(progressStyle({ ...pty, override: ' None ' }), 'none');
  assert.equal(progressStyle({ ...pty, override: 'fancy' }), 'bar');
  assert.equal(progressStyle({ ...pty, target: '/dev/ttyS0', override: '' }), 'plain');
});

const capture = (t: import('node:test').TestContext): string[] => {
  const lines: string[] = [];
  t.mock.method(process.stderr, 'write', (s: string | Uint8Array) => {
    lines.push(String(s));
    return true;
  });
  return lines;
};

test('plain style: one line at the start, none within the interval, a done line at the end; no escape codes', (t) => {
  const lines = capture(t);
  const p = new Progress('downloading x', false, 'plain');
  p.update(1024, 4096);
  p.update(2048, 4096);
  p.stop();
  t.mock.restoreAll();
  assert.deepEqual(lines, ['rear-update: downloading x: 1.0 KiB of 4.0 KiB (25%)\n', 'rear-update: downloading x: done, 2.0 KiB\n']);
});

test('style none: no progress, but retries are still reported; quiet: nothing at all', (t) => {
  const lines = capture(t);
  const p = new Progress('downloading x', false, 'none');
  p.update(1024, 4096);
  p.message('retry 1 in 1s: ECONNRESET');
  p.stop();
  const q = new Progress('downloading y', true, 'plain');
  q.update(1, 2);
  q.message('retry 1 in 1s: ECONNRESET');
  q.stop();
  t.mock.restoreAll();
  assert.deepEqual(lines, ['rear-update: downloading x: retry 1 in 1s: ECONNRESET\n']);
});
