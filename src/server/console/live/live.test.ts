// The live pages' pure pieces: ANSI to escaped class-based HTML, the ReaR error finder, line
// splitting that keeps byte offsets exact across chunks, and SSE framing that cannot be
// broken out of by the data it carries.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ansiLineHtml, plainText } from './ansi.ts';
import { firstErrorIndex, LineSplitter, renderLine } from './log-lines.ts';
import { parseSse, sseFrame } from './sse.ts';

test('ANSI colours become spans with classes; all text is escaped; no style attribute survives', () => {
  assert.equal(ansiLineHtml('\x1b[31mred <b>&"\'\x1b[0m plain'), '<span class="ansi-fg1">red &lt;b&gt;&amp;&quot;&apos;</span> plain');
  assert.equal(ansiLineHtml('\x1b[1;32mok'), '<b><span class="ansi-fg2">ok</span></b>');
  assert.equal(ansiLineHtml('\x1b[38;5;200mx\x1b[39my'), '<span class="ansi-fg200">x<span>y</span></span>');
  assert.equal(ansiLineHtml('\x1b[41;97mwarn'), '<span class="ansi-bg1"><span class="ansi-fg15">warn</span></span>');
  for (const s of ['\x1b[38;2;1;2;3mrgb', '\x1b[8mhidden', '\x1b[5;9mx', '\x1b[22mn', '\x1b[53mo']) {
    const out = ansiLineHtml(s);
    assert.doesNotMatch(out, /style=/, out);
    assert.doesNotMatch(out, /<(?!\/?(span|b|i|u|s)\b)/, out);
  }
  const hostile = '<script>alert(1)</script><img src=x onerror=alert(2)>';
  assert.equal(ansiLineHtml(hostile), '&lt;script&gt;alert(1)&lt;/script&gt;&lt;img src=x onerror=alert(2)&gt;');
  assert.doesNotMatch(ansiLineHtml(`\x1b[31m${hostile}`), /<script|<img/);
});

test('escape sequences that are not colours and control characters leave no debris; a carriage return keeps what the terminal would show', () => {
  assert.equal(ansiLineHtml('\x1b]0;title\x07a\x1b[2Kb\x1b[Gc\x00d'), 'abcd');
  assert.equal(ansiLineHtml('progress 10%\rprogress 100%\r'), 'progress 100%');
  assert.equal(plainText('\x1b[1;31mERROR:\x1b[0m disk\r'), 'ERROR: disk');
  assert.equal(ansiLineHtml('tab\there'), 'tab\there');
});

test('the first error: ReaR\'s ERROR:, Aborting due to an error, Error exit, BUG; plain lines mentioning errors are not', () => {
  const log = [
    'Relax-and-Recover 2.7 / 2022-07-13',
    'Running rear recover (PID 644 date 2026-11-30 10:00:00)',
    'Comparing disks: no error found',
    '2026-11-30 10:00:05.123 \x1b[31mERROR: No filesystem mounted on /mnt/local\x1b[0m',
    'Some latest log messages since the last called script 500_mount.sh:',
    'Aborting due to an error, check /var/log/rear/rear-orig-db1.log for details',
    'Error exit of rear recover (PID 644) and its descendant processes',
  ];
  assert.equal(firstErrorIndex(log), 3);
  assert.equal(firstErrorIndex(log.slice(4)), 1);
  assert.equal(firstErrorIndex(log.slice(0, 3)), -1);
  assert.equal(firstErrorIndex(['BUG BUG BUG!  Filesystem layout unknown']), 0);
  assert.equal(renderLine(log[3]!).error, true);
  assert.equal(renderLine(log[2]!).error, false);
});

test('line splitting: whole lines only, offsets exact across arbitrary chunks and split UTF-8 characters', () => {
  const text = 'α line one\nzwei ü\n\nlast without newline';
  const bytes = Buffer.from(text, 'utf8');
  for (let cut1 = 1; cut1 < bytes.length - 1; cut1 += 3) {
    const s = new LineSplitter(100);
    const lines = [...s.push(bytes.subarray(0, cut1)), ...s.push(bytes.subarray(cut1, cut1 + 2)), ...s.push(bytes.subarray(cut1 + 2))];
    assert.deepEqual(lines, ['α line one', 'zwei ü', '']);
    assert.equal(s.offset, 100 + Buffer.byteLength('α line one\nzwei ü\n\n'));
    assert.deepEqual(s.end(), ['last without newline']);
    assert.equal(s.offset, 100 + bytes.length);
  }
  // Resuming at the reported offset gives exactly the rest: nothing lost, nothing twice.
  const s1 = new LineSplitter(0);
  const first = s1.push(bytes.subarray(0, 14));
  const s2 = new LineSplitter(s1.offset);
  const rest = [...s2.push(bytes.subarray(s1.offset)), ...s2.end()];
  assert.deepEqual([...first, ...rest], ['α line one', 'zwei ü', '', 'last without newline']);
});

test('SSE frames: one data line per line, fields cannot be injected, round trip through a parser', () => {
  const data = 'a\nevent: evil\n\ndata: x\r\nid: 9';
  const frame = sseFrame({ event: 'log', id: '3-1-120', data });
  const parsed = parseSse(frame + sseFrame({ event: 'status', data: '{}' }));
  assert.deepEqual(parsed, [
    { event: 'log', id: '3-1-120', data: 'a\nevent: evil\n\ndata: x\nid: 9' },
    { event: 'status', id: null, data: '{}' },
  ]);
  assert.equal(frame.split('\n\n').length, 2, 'the data cannot end the event early');
  assert.throws(() => sseFrame({ event: 'a\nb', data: '' }));
  assert.throws(() => sseFrame({ id: '1\r', data: '' }));
});
