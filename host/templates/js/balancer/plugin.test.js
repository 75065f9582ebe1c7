import assert from 'node:assert/strict';
import { test } from 'node:test';

import { TestHost, endpoints, pickCounts } from '@switchyard/sdk/testing';

import LeastInFlight from '../src/plugin.js';

const REQUEST = { priority: 'p2', attempt: 0, hash: undefined };

function balancer(config, count) {
  const lif = new LeastInFlight(config);
  lif.setEndpoints(endpoints(count));
  return lif;
}

test('an idle pool is served round robin', () => {
  new TestHost();
  const lif = balancer({}, 3);
  const picks = Array.from({ length: 6 }, () => lif.pick(REQUEST));
  assert.deepEqual(picks, [0, 1, 2, 0, 1, 2]);
});

test('the endpoint with fewest in flight wins', () => {
  const host = new TestHost();
  host.setLoad(0, { inFlight: 5 });
  host.setLoad(1, { inFlight: 1 });
  host.setLoad(2, { inFlight: 3 });
  assert.deepEqual(pickCounts(balancer({}, 3), 9, REQUEST), [0, 9]);
});

test('a window of one is plain round robin', () => {
  const host = new TestHost();
  host.setLoad(0, { inFlight: 100 });
  assert.deepEqual(pickCounts(balancer({ window: 1 }, 2), 10, REQUEST), [5, 5]);
});

test('an empty pool declines', () => {
  new TestHost();
  assert.equal(balancer({}, 0).pick(REQUEST), undefined);
});

test('bad config is refused with its key', () => {
  assert.throws(() => new LeastInFlight({ window: 0 }), /`window`/);
  assert.throws(() => new LeastInFlight({ windw: 2 }), /windw/);
});
