import assert from 'node:assert/strict';
import { test } from 'node:test';
import { hasBlock, withBlock, withoutBlock } from './marked-block.ts';

const original = 'OUTPUT=ISO\nBACKUP=NETFS\n';

test('a block is appended once, replaced in place of the old one, and removing it restores the file', () => {
  const once = withBlock(original, 'install', 'managed', ['A=1']);
  assert.equal(once, `${original}# BEGIN rear-update install (managed)\nA=1\n# END rear-update install\n`);
  const twice = withBlock(once, 'install', 'managed', ['A=2']);
  assert.equal(twice, `${original}# BEGIN rear-update install (managed)\nA=2\n# END rear-update install\n`);
  assert.equal(withoutBlock(twice, 'install'), original);
  assert.ok(hasBlock(twice, 'install'));
  assert.ok(!hasBlock(original, 'install'));
});

test('lines after the block and other blocks are kept; a file without a final newline gets one before the block', () => {
  const text = `${withBlock('X=1', 'a', 'n', ['A=1'])}Y=2\n`;
  const both = withBlock(text, 'b', 'n', ['B=1']);
  assert.equal(withoutBlock(withoutBlock(both, 'b'), 'a'), 'X=1\nY=2\n');
  assert.ok(both.startsWith('X=1\n# BEGIN rear-update a'));
});
