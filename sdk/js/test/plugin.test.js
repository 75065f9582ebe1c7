import assert from 'node:assert/strict';
import { test } from 'node:test';

import {
  Balancer,
  ConfigError,
  ConfigReader,
  Decision,
  HealthCheck,
  Recovery,
  Verdict,
  isServing,
  isStatus,
} from '@switchyard/sdk';
import { endpoints } from '@switchyard/sdk/testing';

test('a Balancer keeps its endpoints unless setEndpoints is overridden', () => {
  const balancer = new Balancer({});
  assert.deepEqual(balancer.endpoints, []);
  balancer.setEndpoints(endpoints(2));
  assert.equal(balancer.endpoints.length, 2);
});

test('the base methods name the class that forgot to implement them', () => {
  class Lazy extends Balancer {}
  class Blind extends HealthCheck {}
  class Deaf extends Recovery {}
  assert.throws(() => new Lazy({}).pick({ priority: 'p2', attempt: 0, hash: undefined }), /Lazy does not implement pick/);
  assert.throws(() => new Blind({}).check(endpoints(1)[0]), /Blind does not implement check/);
  // @ts-expect-error: a partial failure is enough to reach the throw
  assert.throws(() => new Deaf({}).onFailure({}), /Deaf does not implement onFailure/);
});

test('verdicts and health', () => {
  assert.deepEqual(Verdict.healthy('200'), { health: 'healthy', reason: '200' });
  assert.deepEqual(Verdict.degraded('slow'), { health: 'degraded', reason: 'slow' });
  assert.deepEqual(Verdict.unhealthy('down'), { health: 'unhealthy', reason: 'down' });
  assert.deepEqual(Verdict.unknown('?'), { health: 'unknown', reason: '?' });
  assert.ok(isServing('degraded') && isServing('unknown') && !isServing('unhealthy'));
});

test('decisions fill their defaults', () => {
  assert.deepEqual(Decision.retry(), { action: 'retry', delayMs: 0, sameEndpoint: false });
  assert.deepEqual(Decision.retry({ delayMs: 9, sameEndpoint: true }), { action: 'retry', delayMs: 9, sameEndpoint: true });
  assert.deepEqual(Decision.eject({ durationMs: 100 }), { action: 'eject', durationMs: 100, retry: undefined });
  assert.deepEqual(Decision.eject({ durationMs: 100, retry: { delayMs: 2 } }), {
    action: 'eject',
    durationMs: 100,
    retry: { delayMs: 2, sameEndpoint: false },
  });
  assert.deepEqual(Decision.giveUp(), { action: 'give-up', status: undefined });
  assert.deepEqual(Decision.giveUp(503), { action: 'give-up', status: 503 });
  assert.ok(isStatus({ kind: 'status' }) && isStatus({ kind: 'grpc-status' }) && !isStatus({ kind: 'reset' }));
});

test('ConfigReader reads defaults, values and ranges', () => {
  const read = new ConfigReader({ window: 4, sticky: true, path: '/ready', items: [1] });
  assert.equal(read.integer('window', { default: 8, min: 1, max: 64 }), 4);
  assert.equal(read.integer('absent', { default: 8 }), 8);
  assert.equal(read.boolean('sticky', { default: false }), true);
  assert.equal(read.string('path', { default: '/' }), '/ready');
  assert.deepEqual(read.array('items', { default: [] }), [1]);
  read.finish();
});

test('ConfigReader names the key at fault', () => {
  const cases = [
    [{ window: 0 }, (r) => r.integer('window', { default: 8, min: 1, max: 64 }), 'config key `window`: must be from 1 to 64, got 0'],
    [{ window: 2.5 }, (r) => r.integer('window', { default: 8 }), 'config key `window`: expected an integer, got number 2.5'],
    [{ window: '8' }, (r) => r.integer('window', { default: 8 }), 'config key `window`: expected an integer, got string "8"'],
    [{ sticky: 'yes' }, (r) => r.boolean('sticky', { default: false }), 'config key `sticky`: expected true or false, got string "yes"'],
    [{ path: 3 }, (r) => r.string('path', { default: '/' }), 'config key `path`: expected a string, got number 3'],
    [{ items: {} }, (r) => r.array('items', { default: [] }), 'config key `items`: expected an array, got a table'],
    [{ windw: 2 }, (r) => (r.integer('window', { default: 8 }), r.finish()), 'config key `windw`: unknown key; expected `window`'],
    [{ speed: 1 }, (r) => r.finish(), 'config key `speed`: unknown key; this plugin takes no keys'],
  ];
  for (const [config, use, message] of cases) {
    assert.throws(() => use(new ConfigReader(config)), (error) => error instanceof ConfigError && error.message === message, message);
  }
  assert.throws(() => new ConfigReader([1]), { message: 'config: must be a table (a JSON object), got an array' });
  assert.throws(() => new ConfigReader(null), { message: 'config: must be a table (a JSON object), got null' });
  assert.equal(new ConfigError('a[1]', 'bad').key, 'a[1]');
});

test('inherited keys are not config keys', () => {
  const read = new ConfigReader(JSON.parse('{"__proto__": {"window": 3}}'));
  assert.equal(read.integer('window', { default: 8 }), 8);
});
