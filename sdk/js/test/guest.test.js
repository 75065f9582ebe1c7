// The glue against fake host modules, in both shapes jco may give: QuickJS's
// (`null` for none, u64 as a signed number, an import's error thrown as an
// Error with `payload`) and jco's own (`undefined`, BigInt, the bare error).
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { Balancer, Decision, HealthCheck, Recovery, Verdict, host, probe, store } from '@switchyard/sdk';
import { balancerExports, healthExports, recoveryExports, stateExports } from '@switchyard/sdk/guest';

function fakeHost({ none = null, u64 = (value) => Number(BigInt.asIntN(64, value)) } = {}) {
  const lines = [];
  const load = (id) => (id === 1 ? { inFlight: 4, capacity: 0, ewmaLatencyUs: 9, successPermille: 990, health: 'healthy' } : none);
  return {
    lines,
    module: {
      log: (level, message) => lines.push([level, message]),
      nowNs: () => u64(5_000_000_000n),
      randomU64: () => u64(0xffff_ffff_ffff_fff1n),
      endpointLoad: load,
      endpointLoadPair: (a, b) => [load(a), load(b)],
      requestHeader: (name) => (name === 'x-tenant' ? 'blue' : none),
    },
  };
}

const QUICKJS = { none: null, u64: (value) => Number(BigInt.asIntN(64, value)) };
const JCO = { none: undefined, u64: (value) => value };

for (const [shape, options] of [['QuickJS', QUICKJS], ['jco', JCO]]) {
  test(`${shape}: a balancer sees SDK values and its answers reach the host`, () => {
    const { module } = fakeHost(options);
    /** @type {unknown[]} */
    const seen = [];
    class Probe extends Balancer {
      constructor(config) {
        super(config);
        seen.push(config);
      }
      setEndpoints(endpoints) {
        seen.push(endpoints);
        super.setEndpoints(endpoints);
      }
      pick(request) {
        seen.push(request, host.endpointLoad(1)?.inFlight, host.endpointLoad(2), host.endpointLoadPair(2, 1));
        seen.push(host.requestHeader('x-tenant'), host.requestHeader('cookie'), host.nowNs());
        return this.endpoints[request.attempt]?.id;
      }
    }
    const { PoolBalancer } = balancerExports(Probe, module);
    const pool = PoolBalancer.create('{"window": 2}');
    pool.setEndpoints([
      { id: 7, address: 'a:80', weight: 2, zone: options.none, labels: [['rack', '1']] },
      { id: 9, address: 'b:80', weight: 1, zone: 'z1', labels: [] },
    ]);
    assert.equal(pool.pick({ priority: 'p1', attempt: 1, hash: options.u64(0xffff_ffff_ffff_fff1n) }), 9);
    assert.equal(pool.pick({ priority: 'p0', attempt: 5, hash: options.none }), undefined);
    const hash = seen[2].hash;
    assert.deepEqual(seen.slice(0, 2), [
      { window: 2 },
      [
        { id: 7, address: 'a:80', weight: 2, zone: undefined, labels: [['rack', '1']] },
        { id: 9, address: 'b:80', weight: 1, zone: 'z1', labels: [] },
      ],
    ]);
    assert.equal(typeof hash, 'bigint');
    // QuickJS passes u64 as a double: -15 exactly, so the BigInt is exact here.
    assert.equal(hash, 0xffff_ffff_ffff_fff1n);
    assert.deepEqual(seen.slice(3), [4, undefined, [undefined, { inFlight: 4, capacity: 0, ewmaLatencyUs: 9, successPermille: 990, health: 'healthy' }], 'blue', undefined, 5_000_000_000n, { priority: 'p0', attempt: 5, hash: undefined }, 4, undefined, [undefined, seen[5][1]], 'blue', undefined, 5_000_000_000n]);
    // The generator inside the plugin is seeded from the host's u64.
    assert.equal(typeof host.randomU64(), 'bigint');
  });
}

test('a throwing constructor refuses the config with its message, as a string', () => {
  const { module } = fakeHost();
  class Picky extends Balancer {
    constructor(config) {
      super(config);
      throw new Error('config key `window`: must be from 1 to 64, got 0');
    }
  }
  const { PoolBalancer } = balancerExports(Picky, module);
  assert.throws(() => PoolBalancer.create('{}'), (thrown) => thrown === 'config key `window`: must be from 1 to 64, got 0');
  class Plain extends Balancer {}
  const plain = balancerExports(Plain, module).PoolBalancer;
  assert.throws(() => plain.create('[1]'), (thrown) => typeof thrown === 'string' && thrown.includes('must be a table'));
  assert.throws(() => plain.create('{'), (thrown) => typeof thrown === 'string' && thrown.startsWith('config is not JSON'));
  assert.ok(plain.create(''));
});

test('a default export of the wrong kind is refused at create, naming the base class', () => {
  const { module } = fakeHost();
  class Check extends HealthCheck {}
  // @ts-expect-error: a health check is not a balancer
  const { PoolBalancer } = balancerExports(Check, module);
  assert.throws(() => PoolBalancer.create('{}'), (thrown) => typeof thrown === 'string' && thrown.includes('extends Balancer'));
  // @ts-expect-error: not a class
  const { PoolRecovery } = recoveryExports(undefined, module);
  assert.throws(() => PoolRecovery.create('{}'), (thrown) => typeof thrown === 'string' && thrown.includes('extends Recovery'));
});

test('a throwing or wrong pick declines and is logged', () => {
  const fake = fakeHost();
  let answer = () => 3;
  class Flaky extends Balancer {
    pick() {
      return answer();
    }
  }
  const pool = balancerExports(Flaky, fake.module).PoolBalancer.create('{}');
  assert.equal(pool.pick({ priority: 'p2', attempt: 0, hash: null }), 3);
  answer = () => {
    throw new TypeError('no endpoints');
  };
  assert.equal(pool.pick({ priority: 'p2', attempt: 0, hash: null }), undefined);
  answer = () => -1;
  assert.equal(pool.pick({ priority: 'p2', attempt: 0, hash: null }), undefined);
  answer = () => null;
  assert.equal(pool.pick({ priority: 'p2', attempt: 0, hash: null }), undefined);
  assert.deepEqual(fake.lines, [
    ['error', 'pick threw: no endpoints; the pick is declined'],
    ['error', 'pick returned -1, not an endpoint id; the pick is declined'],
  ]);
});

test('a health check gets probes with errors as ProbeErrors, and a throw is an unknown verdict', () => {
  const fake = fakeHost();
  const requests = [];
  const probeModule = {
    http: (request) => {
      requests.push(request);
      if (request.path === '/refused') {
        throw Object.assign(new Error('[object Object] (see error.payload)'), { payload: { tag: 'not-allowed', val: 'bad path' } });
      }
      if (request.path === '/bare') {
        throw { tag: 'timeout' };
      }
      return { status: 200, headers: [['a', 'b']], body: new Uint8Array([111, 107]), latencyUs: 1500 };
    },
    tcpConnect: (timeoutMs) => {
      if (timeoutMs === 1) {
        throw Object.assign(new Error('x'), { payload: { tag: 'invalid-response', val: 'garbage' } });
      }
      return 42;
    },
  };
  class Http extends HealthCheck {
    constructor(config) {
      super(config);
      this.path = config.path;
    }
    check(target) {
      if (target.id === 13) {
        throw new Error('unlucky');
      }
      if (target.id === 14) {
        return /** @type {any} */ ({ health: 'fine', reason: 'x' });
      }
      try {
        const response = probe.http({ path: this.path });
        return Verdict.healthy(`${response.status} ${response.text()} in ${response.latencyUs} µs, tcp ${probe.tcpConnect(500)} µs, zone ${target.zone}`);
      } catch (error) {
        assert.ok(error instanceof probe.ProbeError);
        return error.kind === 'not-allowed' ? Verdict.unknown(error.message) : Verdict.unhealthy(error.message);
      }
    }
  }
  const { PoolCheck } = healthExports(Http, fake.module, probeModule);
  const target = (id) => ({ id, address: 'a:80', weight: 1, zone: null, labels: [] });
  assert.deepEqual(PoolCheck.create('{"path": "/up"}').check(target(1)), {
    health: 'healthy',
    reason: '200 ok in 1500 µs, tcp 42 µs, zone undefined',
  });
  assert.deepEqual(requests[0], { method: 'GET', path: '/up', headers: [], timeoutMs: 1000 });
  assert.deepEqual(PoolCheck.create('{"path": "/refused"}').check(target(1)), { health: 'unknown', reason: 'not allowed: bad path' });
  assert.deepEqual(PoolCheck.create('{"path": "/bare"}').check(target(1)), { health: 'unhealthy', reason: 'timed out' });
  assert.deepEqual(PoolCheck.create('{"path": "/up"}').check(target(13)), { health: 'unknown', reason: 'check threw: unlucky' });
  assert.deepEqual(PoolCheck.create('{"path": "/up"}').check(target(14)), {
    health: 'unknown',
    reason: 'check returned health fine, not one of healthy, degraded, unhealthy, unknown',
  });
  assert.deepEqual(fake.lines, [
    ['error', 'check threw: unlucky; the verdict is unknown'],
    ['error', 'check returned health fine, not one of healthy, degraded, unhealthy, unknown; the verdict is unknown'],
  ]);
  let tcpError;
  try {
    probe.tcpConnect(1);
  } catch (error) {
    tcpError = error;
  }
  assert.ok(tcpError instanceof probe.ProbeError);
  assert.equal(tcpError.message, 'invalid response: garbage');
});

test('outside a health check, probes are not allowed', () => {
  const { module } = fakeHost();
  class Nosy extends Recovery {}
  recoveryExports(Nosy, module);
  assert.throws(() => probe.http({ path: '/' }), { message: 'not allowed: probes are for health checks' });
});

test('a recovery policy sees failures in SDK shape and its decisions become variants', () => {
  const fake = fakeHost();
  const seen = [];
  class Policy extends Recovery {
    onFailure(failure) {
      seen.push(failure);
      switch (failure.endpoint) {
        case 0:
          return Decision.retry({ delayMs: 7, sameEndpoint: true });
        case 1:
          return Decision.eject({ durationMs: 30_000, retry: { delayMs: 1 } });
        case 2:
          return Decision.eject({ durationMs: 10 });
        case 3:
          return Decision.giveUp(503);
        case 4:
          return Decision.giveUp();
        case 5:
          throw new Error('oops');
        case 6:
          return /** @type {any} */ ({ action: 'retry', delayMs: -1 });
        default:
          return /** @type {any} */ ('retry');
      }
    }
  }
  const pool = recoveryExports(Policy, fake.module).PoolRecovery.create('{}');
  const raw = (endpoint, kind) => ({
    endpoint,
    kind,
    request: { priority: 'p3', attempt: 1, hash: 12 },
    method: 'GET',
    replayable: true,
    elapsedMs: 40,
  });
  assert.deepEqual(pool.onFailure(raw(0, { tag: 'status', val: 503 })), { tag: 'retry', val: { delayMs: 7, sameEndpoint: true } });
  assert.deepEqual(pool.onFailure(raw(1, { tag: 'grpc-status', val: 14 })), {
    tag: 'eject',
    val: { durationMs: 30_000, retry: { delayMs: 1, sameEndpoint: false } },
  });
  assert.deepEqual(pool.onFailure(raw(2, { tag: 'reset' })), { tag: 'eject', val: { durationMs: 10, retry: undefined } });
  assert.deepEqual(pool.onFailure(raw(3, { tag: 'connect-refused' })), { tag: 'give-up', val: 503 });
  assert.deepEqual(pool.onFailure(raw(4, { tag: 'response-timeout' })), { tag: 'give-up', val: undefined });
  for (const endpoint of [5, 6, 7]) {
    assert.deepEqual(pool.onFailure(raw(endpoint, { tag: 'connect-timeout' })), { tag: 'give-up', val: undefined });
  }
  assert.deepEqual(seen[0], {
    endpoint: 0,
    kind: 'status',
    status: 503,
    request: { priority: 'p3', attempt: 1, hash: 12n },
    method: 'GET',
    replayable: true,
    elapsedMs: 40,
  });
  assert.equal(seen[1].kind, 'grpc-status');
  assert.equal(seen[1].grpcStatus, 14);
  assert.equal(seen[1].status, undefined);
  assert.equal(seen[2].kind, 'reset');
  assert.deepEqual(
    fake.lines.map(([level, line]) => [level, line.split(';')[0]]),
    [
      ['error', 'onFailure threw: oops'],
      ['error', 'onFailure returned a retry whose delayMs is -1, not a whole number of ms'],
      ['error', 'onFailure returned retry, not a Decision'],
    ],
  );
});

/** A store import keeping entries in a Map, its errors thrown as QuickJS does. */
function fakeStore(maxEntries = 2) {
  const entries = new Map();
  const refuse = (code) => Object.assign(new Error(code), { payload: code });
  const entry = (endpoint, name) => {
    if (name.length === 0) throw refuse('bad-name');
    const key = `${endpoint}/${name}`;
    if (!entries.has(key) && entries.size >= maxEntries) throw refuse('full');
    return key;
  };
  return {
    entries,
    module: {
      get: (endpoint, name) => entries.get(`${endpoint}/${name}`) ?? 0n,
      add: (endpoint, name, delta) => {
        const key = entry(endpoint, name);
        entries.set(key, (entries.get(key) ?? 0n) + delta);
        return entries.get(key);
      },
      compareAndSwap: (endpoint, name, expected, value) => {
        const key = entry(endpoint, name);
        const held = entries.get(key) ?? 0n;
        if (held === expected) entries.set(key, value);
        return held;
      },
    },
  };
}

test('store calls reach the import, and its refusals become StoreErrors', () => {
  const { module } = fakeHost();
  const { module: storeModule, entries } = fakeStore();
  balancerExports(class extends Balancer {}, module, storeModule);
  assert.equal(store.add(3, 'run', 2), 2n);
  assert.equal(store.compareAndSwap(3, 'run', 2n, 7), 2n);
  assert.equal(store.get(3, 'run'), 7n);
  assert.deepEqual([...entries], [['3/run', 7n]]);
  store.add(undefined, 'b', 1);
  assert.throws(() => store.add(undefined, 'c', 1), (error) => error instanceof store.StoreError && error.code === 'full');
  assert.throws(() => store.add(undefined, '', 1), (error) => error.code === 'bad-name');
  assert.deepEqual(store.update(3, 'run', (v) => v + 1n), [7n, 8n]);
});

test('QuickJS: 64-bit store values go to the import as numbers and come back as BigInts', () => {
  const { module } = fakeHost();
  const seen = [];
  const quickjs = {
    get: () => 0,
    add: (endpoint, name, delta) => {
      seen.push(delta);
      return 5;
    },
    compareAndSwap: (endpoint, name, expected, value) => {
      seen.push(expected, value);
      return 0;
    },
  };
  balancerExports(class extends Balancer {}, module, quickjs);
  assert.equal(store.add(1, 'run', 5n), 5n);
  assert.equal(store.compareAndSwap(1, 'run', 0n, 9n), 0n);
  assert.deepEqual(seen, [5, 0, 9]);
});

test('a health check has no store', () => {
  const { module } = fakeHost();
  healthExports(class extends HealthCheck {}, module, {});
  assert.equal(store.get(undefined, 'x'), 0n);
  assert.throws(() => store.add(undefined, 'x', 1), (error) => error.code === 'no-pool');
});

test("a pool's state is carried to the next version's object, and a refusal is the err", () => {
  const { module, lines } = fakeHost();
  class Turns extends Balancer {
    turn = 0;
    snapshot() {
      return new Uint8Array([this.turn]);
    }
    restore(state) {
      if (state.length !== 1) throw new Error(`expected 1 byte, got ${state.length}`);
      this.turn = state[0];
    }
  }
  const { PoolBalancer } = balancerExports(Turns, module, fakeStore().module);
  const state = stateExports(module);
  const old = PoolBalancer.create('{}');
  old.plugin.turn = 5;
  const next = PoolBalancer.create('{}');
  state.restore(next, state.snapshot(old));
  assert.equal(next.plugin.turn, 5);
  assert.throws(() => state.restore(next, new Uint8Array([1, 2])), (thrown) => thrown === 'expected 1 byte, got 2');

  class Wrong extends Turns {
    snapshot() {
      return 'five';
    }
  }
  const wrong = balancerExports(Wrong, module, fakeStore().module).PoolBalancer.create('{}');
  assert.deepEqual(state.snapshot(wrong), new Uint8Array(0));
  assert.match(lines.at(-1)[1], /snapshot returned five, not a Uint8Array/);
});

test('a plugin that keeps no state carries nothing', () => {
  const { module } = fakeHost();
  const { PoolRecovery } = recoveryExports(class extends Recovery {}, module, fakeStore().module);
  const state = stateExports(module);
  const pool = PoolRecovery.create('{}');
  assert.equal(state.snapshot(pool).length, 0);
  state.restore(pool, new Uint8Array([1]));
});
