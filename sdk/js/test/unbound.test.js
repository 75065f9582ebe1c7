// Outside a component and before any TestHost, host functions say why they
// cannot answer. Its own file: node --test runs each file in its own process.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { host, probe } from '@switchyard/sdk';

test('host functions throw a clear error when nothing is bound', () => {
  for (const call of [() => host.nowNs(), () => host.randomBelow(3), () => host.info('x'), () => probe.tcpConnect()]) {
    assert.throws(call, /only inside a built plugin, from its constructor and methods \(not at the top level of a module\), or in tests after `new TestHost\(\)`/);
  }
});
