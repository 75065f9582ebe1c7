import assert from 'node:assert/strict';
import { test } from 'node:test';

import { Balancer, host, probe, store } from '@switchyard/sdk';
import { TestHost, endpoints, failure, pickCounts } from '@switchyard/sdk/testing';

test('a new TestHost starts from a clean state', () => {
  const first = new TestHost();
  first.setLoad(1, { inFlight: 2 });
  first.setHeader('a', '1');
  host.info('x');
  const second = new TestHost();
  assert.equal(host.endpointLoad(1), undefined);
  assert.equal(host.requestHeader('a'), undefined);
  assert.deepEqual(second.logs(), []);
  assert.equal(host.nowNs(), 1_000_000_000n);
});

test('loads fill missing fields as idle and pairs read both', () => {
  const testHost = new TestHost();
  testHost.setLoad(1, { inFlight: 3 });
  testHost.setLoad(2, { ewmaLatencyUs: 800, health: 'degraded' });
  assert.deepEqual(host.endpointLoad(1), {
    inFlight: 3,
    capacity: 0,
    ewmaLatencyUs: 0,
    successPermille: 1000,
    health: 'unknown',
  });
  const [a, b] = host.endpointLoadPair(1, 2);
  assert.equal(a?.inFlight, 3);
  assert.equal(b?.health, 'degraded');
  assert.equal(host.endpointLoadPair(1, 9)[1], undefined);
  testHost.clearLoad(1);
  assert.equal(host.endpointLoad(1), undefined);
});

test('headers are case-insensitive and cleared together', () => {
  const testHost = new TestHost();
  testHost.setHeader('X-Tenant', 'blue');
  assert.equal(host.requestHeader('x-tenant'), 'blue');
  assert.equal(host.requestHeader('X-TENANT'), 'blue');
  testHost.clearHeaders();
  assert.equal(host.requestHeader('x-tenant'), undefined);
});

test('the clock moves only when told', () => {
  const testHost = new TestHost();
  const start = host.nowNs();
  assert.equal(host.nowNs(), start);
  testHost.advanceMs(5);
  assert.equal(host.nowNs() - start, 5_000_000n);
  testHost.advanceNs(7n);
  assert.equal(host.nowNs() - start, 5_000_007n);
});

test('seeding replays the random numbers; different seeds differ', () => {
  const testHost = new TestHost();
  testHost.seed(7);
  const a = [host.randomU64(), host.randomBelow(1000), host.randomU64()];
  testHost.seed(7);
  assert.deepEqual([host.randomU64(), host.randomBelow(1000), host.randomU64()], a);
  testHost.seed(8);
  assert.notDeepEqual([host.randomU64(), host.randomBelow(1000), host.randomU64()], a);
  assert.equal(typeof a[0], 'bigint');
  assert.ok(a[0] >= 0n && a[0] < 2n ** 64n);
});

test('randomBelow stays in range and is uniform', () => {
  new TestHost();
  assert.equal(host.randomBelow(0), 0);
  assert.equal(host.randomBelow(1), 0);
  const counts = new Array(10).fill(0);
  for (let i = 0; i < 100_000; i++) {
    const n = host.randomBelow(10);
    assert.ok(Number.isInteger(n) && n >= 0 && n < 10, `${n}`);
    counts[n] += 1;
  }
  for (const count of counts) {
    assert.ok(Math.abs(count - 10_000) < 500, `${counts}`);
  }
  for (let i = 0; i < 1000; i++) {
    const n = host.randomBelow(2 ** 32);
    assert.ok(Number.isInteger(n) && n >= 0 && n < 2 ** 32);
  }
});

test('logs are captured with their level; unknown levels are refused', () => {
  const testHost = new TestHost();
  host.log('warn', 'odd');
  host.trace('t');
  host.debug('d');
  host.info('i');
  host.error('e');
  assert.deepEqual(testHost.logs(), [
    ['warn', 'odd'],
    ['trace', 't'],
    ['debug', 'd'],
    ['info', 'i'],
    ['error', 'e'],
  ]);
  // @ts-expect-error: not a level
  assert.throws(() => host.log('fatal', 'x'), /unknown log level `fatal`/);
});

test('probes answer with their handler, and are refused without one', () => {
  const testHost = new TestHost();
  assert.throws(() => probe.http({ path: '/' }), (error) => error instanceof probe.ProbeError && error.kind === 'refused');
  assert.throws(() => probe.tcpConnect(100), { name: 'ProbeError', message: 'connection refused' });
  /** @type {unknown[]} */
  const seen = [];
  testHost.onHttp((request) => {
    seen.push(request);
    return { status: request.path === '/up' ? 200 : 404, body: 'up ✓', headers: [['Content-Type', 'text/plain']] };
  });
  const response = probe.http({ path: '/up', headers: [['x-probe', '1']] });
  assert.equal(response.status, 200);
  assert.equal(response.text(), 'up ✓');
  assert.equal(response.header('content-type'), 'text/plain');
  assert.equal(probe.http({ path: '/down', method: 'HEAD', timeoutMs: 5 }).status, 404);
  assert.deepEqual(seen, [
    { method: 'GET', path: '/up', headers: [['x-probe', '1']], timeoutMs: 1000 },
    { method: 'HEAD', path: '/down', headers: [], timeoutMs: 5 },
  ]);
  testHost.onTcpConnect((timeoutMs) => {
    if (timeoutMs < 10) {
      throw new probe.ProbeError('timeout');
    }
    return 120;
  });
  assert.equal(probe.tcpConnect(500), 120);
  assert.equal(probe.tcpConnect(), 120);
  assert.throws(() => probe.tcpConnect(1), { message: 'timed out' });
});

test('probe errors read as the Rust SDK words them', () => {
  assert.equal(new probe.ProbeError('refused').message, 'connection refused');
  assert.equal(new probe.ProbeError('reset').message, 'connection reset');
  assert.equal(new probe.ProbeError('invalid-response', 'no status line').message, 'invalid response: no status line');
  assert.equal(new probe.ProbeError('not-allowed', 'path').message, 'not allowed: path');
  // @ts-expect-error: not a kind
  assert.throws(() => new probe.ProbeError('gone'), /unknown probe error kind/);
});

test('a body that is not UTF-8 is decoded with replacements', () => {
  const response = new probe.HttpResponse({ status: 200, body: new Uint8Array([0x6f, 0x6b, 0xff, 0xe2, 0x82, 0xac, 0xc3]) });
  assert.equal(response.text(), 'ok\ufffd€\ufffd');
});

test('endpoints, pickCounts and failure build what the host would', () => {
  const pool = endpoints(3);
  assert.deepEqual(pool[2], { id: 2, address: '10.0.0.2:80', weight: 1, zone: undefined, labels: [] });
  class Second extends Balancer {
    pick() {
      return 1;
    }
  }
  class Never extends Balancer {
    pick() {
      return undefined;
    }
  }
  assert.deepEqual(pickCounts(new Second({}), 10), [0, 10]);
  assert.deepEqual(pickCounts(new Never({}), 10), []);
  assert.equal(failure({ kind: 'status', status: 503 }).status, 503);
  assert.equal(failure().request.attempt, 0);
});

test("the store is shared by every object under one TestHost, and bounded", () => {
  const testHost = new TestHost();
  testHost.setStoreEntries(2);
  assert.equal(store.add(1, 'run', 1), 1n);
  assert.equal(store.add(1, 'run', 2n ** 63n - 1n), -(2n ** 63n), 'wraps at 64 bits');
  assert.equal(store.compareAndSwap(undefined, 'open', 5, 6), 0n, 'a missing entry holds 0');
  assert.equal(testHost.storeSize(), 1);
  assert.equal(store.compareAndSwap(undefined, 'open', 0, 6), 0n);
  assert.throws(() => store.add(2, 'run', 1), (error) => error instanceof store.StoreError && error.code === 'full');
  assert.throws(() => store.add(undefined, 'x'.repeat(65), 1), (error) => error.code === 'bad-name');
  assert.throws(() => store.add(undefined, 'run', 2n ** 63n), TypeError);
  new TestHost();
  assert.equal(store.get(1, 'run'), 0n, 'a new TestHost starts empty');
});
