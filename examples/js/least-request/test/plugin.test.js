import assert from 'node:assert/strict';
import { test } from 'node:test';

import { endpoint } from '@switchyard/sdk';
import { TestHost, endpoints, pickCounts } from '@switchyard/sdk/testing';

import LeastRequest from '../src/plugin.js';

const REQUEST = { priority: 'p2', attempt: 0, hash: undefined };

function balancer(config, pool) {
  const lr = new LeastRequest(config);
  lr.setEndpoints(pool);
  return lr;
}

const inFlight = (host, id, count) => host.setLoad(id, { inFlight: count });

test('config defaults to two choices', () => {
  assert.equal(new LeastRequest({}).choiceCount, 2);
  assert.equal(new LeastRequest({ choice_count: 5 }).choiceCount, 5);
  assert.equal(new LeastRequest({ choice_count: 32 }).choiceCount, 32);
});

test('bad config is refused naming the key', () => {
  for (const [config, key] of [
    [{ choices: 3 }, 'choices'],
    [{ choice_count: 'two' }, 'choice_count'],
    [{ choice_count: -1 }, 'choice_count'],
    [{ choice_count: 1 }, 'choice_count'],
    [{ choice_count: 0 }, 'choice_count'],
    [{ choice_count: 33 }, 'choice_count'],
    [{ choice_count: 2.5 }, 'choice_count'],
  ]) {
    assert.throws(() => new LeastRequest(config), { message: new RegExp(`\`${key}\``) }, JSON.stringify(config));
  }
  assert.throws(() => new LeastRequest([]), /table/);
});

test('an empty pool declines', () => {
  new TestHost();
  assert.equal(balancer({}, []).pick(REQUEST), undefined);
});

test('a single endpoint is picked however loaded', () => {
  const host = new TestHost();
  inFlight(host, 7, 1000);
  const lr = balancer({}, [endpoint(7, 'a:80')]);
  assert.equal(pickCounts(lr, 50, REQUEST)[7], 50);
});

test('of two the less loaded always wins', () => {
  const host = new TestHost();
  inFlight(host, 0, 5);
  inFlight(host, 1, 1);
  const lr = balancer({}, endpoints(2));
  assert.deepEqual(pickCounts(lr, 1000, REQUEST), [0, 1000]);
  // Load changes are seen on the very next pick.
  inFlight(host, 0, 0);
  assert.deepEqual(pickCounts(lr, 1000, REQUEST), [1000]);
});

test('unknown load counts as idle', () => {
  const host = new TestHost();
  inFlight(host, 0, 3);
  // Endpoint 1 has no load at the host.
  const lr = balancer({}, endpoints(2));
  assert.deepEqual(pickCounts(lr, 500, REQUEST), [0, 500]);
});

test('load is divided by weight', () => {
  const host = new TestHost();
  const pool = [endpoint(0, 'a:80', { weight: 3 }), endpoint(1, 'b:80')];
  // (5 + 1) / 3 = 2 beats (2 + 1) / 1 = 3.
  inFlight(host, 0, 5);
  inFlight(host, 1, 2);
  const lr = balancer({}, pool);
  assert.deepEqual(pickCounts(lr, 500, REQUEST), [500]);
  // (9 + 1) / 3 = 3.33 loses to (2 + 1) / 1 = 3.
  inFlight(host, 0, 9);
  assert.deepEqual(pickCounts(lr, 500, REQUEST), [0, 500]);
});

test('huge loads and weights compare exactly', () => {
  const host = new TestHost();
  const max = 2 ** 32 - 1;
  const pool = [endpoint(0, 'a:80', { weight: max }), endpoint(1, 'b:80', { weight: max - 1 })];
  inFlight(host, 0, max);
  inFlight(host, 1, max);
  // Same load, endpoint 0 is heavier; the products differ only past 2^53.
  assert.deepEqual(pickCounts(balancer({}, pool), 100, REQUEST), [100]);
});

test('two choices follow the p2c distribution', () => {
  // Endpoint i has i requests in flight. With two distinct samples of ten,
  // i wins when it is sampled with a busier endpoint: P(i) = 2 (9 - i) / 90.
  const host = new TestHost();
  for (let id = 0; id < 10; id++) {
    inFlight(host, id, id);
  }
  const picks = 90_000;
  const counts = pickCounts(balancer({}, endpoints(10)), picks, REQUEST);
  assert.equal(counts.length, 9, `the busiest endpoint must never win: ${counts}`);
  counts.forEach((count, id) => {
    const expected = (2 * (9 - id) * picks) / 90;
    const slack = expected / 10 + 100;
    assert.ok(Math.abs(count - expected) <= slack, `endpoint ${id}: ${count} vs ${expected}`);
  });
});

test('samples are distinct', () => {
  // With three of four sampled, at most one endpoint is left out, so the two
  // busiest can never win; with repeated samples they could.
  const host = new TestHost();
  for (const [id, load] of [[0, 3], [1, 1], [2, 2], [3, 4]]) {
    inFlight(host, id, load);
  }
  const counts = pickCounts(balancer({ choice_count: 3 }, endpoints(4)), 4000, REQUEST);
  assert.equal(counts[0] ?? 0, 0, `${counts}`);
  assert.equal(counts[3] ?? 0, 0, `${counts}`);
  // The least loaded wins unless left out (1 in 4).
  assert.ok(Math.abs(counts[1] - 3000) < 200, `${counts}`);
});

test('a choice count beyond the pool scans it whole', () => {
  const host = new TestHost();
  for (const [id, load] of [[0, 4], [1, 2], [2, 0], [3, 7]]) {
    inFlight(host, id, load);
  }
  const lr = balancer({ choice_count: 8 }, endpoints(4));
  assert.deepEqual(pickCounts(lr, 200, REQUEST), [0, 0, 200]);
});

test('an idle pool spreads evenly', () => {
  // Ties go to the first sample, which is random.
  new TestHost();
  const counts = pickCounts(balancer({}, endpoints(5)), 50_000, REQUEST);
  assert.equal(counts.length, 5);
  counts.forEach((count, id) => assert.ok(Math.abs(count - 10_000) < 500, `endpoint ${id}: ${counts}`));
});

test('weights count on an idle pool', () => {
  // Endpoint 0 weighs 2 and wins every sample it is in: P = 2/10.
  new TestHost();
  const pool = endpoints(10);
  pool[0].weight = 2;
  const counts = pickCounts(balancer({}, pool), 50_000, REQUEST);
  assert.ok(Math.abs(counts[0] - 10_000) < 600, `${counts}`);
});

test('a new set replaces the old', () => {
  new TestHost();
  const lr = balancer({}, endpoints(5));
  lr.setEndpoints([endpoint(10, 'x:80'), endpoint(11, 'y:80')]);
  const counts = pickCounts(lr, 1000, REQUEST);
  assert.equal(counts.slice(0, 10).reduce((a, b) => a + b, 0), 0);
  assert.equal(counts[10] + counts[11], 1000);
  lr.setEndpoints([]);
  assert.equal(lr.pick(REQUEST), undefined);
});
