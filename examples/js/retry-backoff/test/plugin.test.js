import assert from 'node:assert/strict';
import { test } from 'node:test';

import { Decision, host } from '@switchyard/sdk';
import { TestHost, failure as baseFailure } from '@switchyard/sdk/testing';

import RetryBackoff from '../src/plugin.js';

/** A replayable GET that failed on endpoint 4 with `kind` at `attempt`. */
function failure(kind, attempt, fields = {}) {
  const status = typeof kind === 'number' ? { kind: 'status', status: kind } : { kind };
  return baseFailure({
    endpoint: 4,
    ...status,
    request: { priority: 'p2', attempt, hash: undefined },
    elapsedMs: 12,
    ...fields,
  });
}

const retried = (decision) => decision.action === 'retry';

function delay(decision) {
  assert.equal(decision.action, 'retry', `expected a retry, got ${JSON.stringify(decision)}`);
  return decision.delayMs;
}

test('config defaults', () => {
  const policy = new RetryBackoff({});
  assert.equal(policy.attempts, 3);
  assert.equal(policy.baseDelayMs, 5);
  assert.equal(policy.maxDelayMs, 250);
  assert.deepEqual(policy.retryOn, ['connect-refused', 'connect-timeout', 'reset', '5xx']);
  assert.equal(policy.sameEndpoint, false);
});

test('retry_on items parse', () => {
  const policy = new RetryBackoff({
    retry_on: ['connect-refused', 'connect-timeout', 'reset', 'response-timeout', '5xx', '4xx', 503, 429],
  });
  assert.deepEqual(policy.retryOn, ['connect-refused', 'connect-timeout', 'reset', 'response-timeout', '5xx', '4xx', 503, 429]);
});

test('bad config is refused naming the key', () => {
  for (const [config, key] of [
    ['{"retries": 3}', 'retries'],
    ['{"attempts": 0}', 'attempts'],
    ['{"attempts": 11}', 'attempts'],
    ['{"attempts": -1}', 'attempts'],
    ['{"attempts": "3"}', 'attempts'],
    ['{"base_delay_ms": -5}', 'base_delay_ms'],
    ['{"base_delay_ms": 300}', 'base_delay_ms'],
    ['{"base_delay_ms": 10, "max_delay_ms": 9}', 'base_delay_ms'],
    ['{"max_delay_ms": 60001}', 'max_delay_ms'],
    ['{"max_delay_ms": 2.5}', 'max_delay_ms'],
    ['{"retry_on": []}', 'retry_on'],
    ['{"retry_on": "5xx"}', 'retry_on'],
    ['{"retry_on": ["5xx", "timeout"]}', 'retry_on[1]'],
    ['{"retry_on": ["5XX"]}', 'retry_on[0]'],
    ['{"retry_on": ["503"]}', 'retry_on[0]'],
    ['{"retry_on": [99]}', 'retry_on[0]'],
    ['{"retry_on": ["reset", 600]}', 'retry_on[1]'],
    ['{"retry_on": [-503]}', 'retry_on[0]'],
    ['{"retry_on": [true]}', 'retry_on[0]'],
    ['{"same_endpoint": "yes"}', 'same_endpoint'],
  ]) {
    assert.throws(() => new RetryBackoff(JSON.parse(config)), { message: new RegExp(`\`${key.replace(/[[\]]/g, '\\$&')}\``) }, config);
  }
  assert.throws(() => new RetryBackoff({ retry_on: ['timeout'] }), /connect-timeout/, 'lists the names');
  assert.throws(() => new RetryBackoff([]), /table/);
});

test('accepts values at the limits', () => {
  for (const config of [
    { attempts: 1 },
    { attempts: 10 },
    { base_delay_ms: 0, max_delay_ms: 0 },
    { base_delay_ms: 250 },
    { max_delay_ms: 60000 },
    { retry_on: [100, 599] },
    { same_endpoint: true },
  ]) {
    assert.doesNotThrow(() => new RetryBackoff(config), JSON.stringify(config));
  }
});

test('by default retries connect failures, resets and 5xx', () => {
  new TestHost();
  const policy = new RetryBackoff({});
  for (const kind of ['connect-refused', 'connect-timeout', 'reset', 500, 503, 599]) {
    assert.ok(retried(policy.onFailure(failure(kind, 0))), `${kind}`);
  }
  for (const kind of ['response-timeout', 404, 429, 499, 302]) {
    assert.deepEqual(policy.onFailure(failure(kind, 0)), Decision.giveUp(), `${kind}`);
  }
  // A gRPC status is not an HTTP status: `5xx` does not match it.
  assert.deepEqual(policy.onFailure(failure('grpc-status', 0, { grpcStatus: 14 })), Decision.giveUp());
});

test('retries only what retry_on lists', () => {
  new TestHost();
  const policy = new RetryBackoff({ retry_on: [429, 'response-timeout'] });
  assert.ok(retried(policy.onFailure(failure(429, 0))));
  assert.ok(retried(policy.onFailure(failure('response-timeout', 0))));
  for (const kind of [428, 430, 503, 'connect-refused', 'connect-timeout', 'reset']) {
    assert.deepEqual(policy.onFailure(failure(kind, 0)), Decision.giveUp(), `${kind}`);
  }
  const clientErrors = new RetryBackoff({ retry_on: ['4xx'] });
  for (const [status, retry] of [[399, false], [400, true], [451, true], [499, true], [500, false]]) {
    assert.equal(retried(clientErrors.onFailure(failure(status, 0))), retry, `${status}`);
  }
});

test('attempts count the first try', () => {
  new TestHost();
  const policy = new RetryBackoff({});
  const refused = (attempt) => failure('connect-refused', attempt);
  // Three attempts: the first try (0) and two retries (1, 2).
  assert.ok(retried(policy.onFailure(refused(0))));
  assert.ok(retried(policy.onFailure(refused(1))));
  assert.deepEqual(policy.onFailure(refused(2)), Decision.giveUp());
  assert.deepEqual(policy.onFailure(refused(7)), Decision.giveUp());
  assert.deepEqual(policy.onFailure(refused(2 ** 32 - 1)), Decision.giveUp());
  assert.deepEqual(new RetryBackoff({ attempts: 1 }).onFailure(refused(0)), Decision.giveUp());
  const ten = new RetryBackoff({ attempts: 10 });
  assert.ok(retried(ten.onFailure(refused(8))));
  assert.deepEqual(ten.onFailure(refused(9)), Decision.giveUp());
});

test('never retries what cannot be replayed', () => {
  new TestHost();
  const policy = new RetryBackoff({ attempts: 10, retry_on: ['connect-refused', '5xx'] });
  for (const kind of ['connect-refused', 503]) {
    const decision = policy.onFailure(failure(kind, 0, { replayable: false, method: 'POST' }));
    assert.deepEqual(decision, Decision.giveUp());
  }
});

test('same_endpoint is passed on', () => {
  new TestHost();
  const reset = failure('reset', 0);
  const elsewhere = new RetryBackoff({}).onFailure(reset);
  assert.equal(elsewhere.action === 'retry' && elsewhere.sameEndpoint, false);
  const same = new RetryBackoff({ same_endpoint: true }).onFailure(reset);
  assert.equal(same.action === 'retry' && same.sameEndpoint, true);
});

test('the ceiling doubles per attempt up to the cap', () => {
  const policy = new RetryBackoff({ base_delay_ms: 5, max_delay_ms: 250 });
  assert.deepEqual(
    Array.from({ length: 9 }, (_, attempt) => policy.backoffCeilingMs(attempt)),
    [5, 10, 20, 40, 80, 160, 250, 250, 250],
  );
  // No overflow however far the attempts go.
  const big = new RetryBackoff({ base_delay_ms: 60000, max_delay_ms: 60000 });
  for (const attempt of [0, 1, 31, 32, 33, 63, 64, 1024, 2 ** 32 - 1]) {
    assert.equal(big.backoffCeilingMs(attempt), 60_000, `${attempt}`);
  }
  const zero = new RetryBackoff({ base_delay_ms: 0 });
  for (const attempt of [0, 5, 40, 2 ** 32 - 1]) {
    assert.equal(zero.backoffCeilingMs(attempt), 0, `${attempt}`);
  }
});

test('the delay is random below the ceiling plus one', () => {
  // Exactly `host.randomBelow(ceiling + 1)`: replaying the generator from
  // the same seed gives the same delays.
  const testHost = new TestHost();
  const policy = new RetryBackoff({ attempts: 10, base_delay_ms: 7, max_delay_ms: 100 });
  testHost.seed(42);
  const delays = Array.from({ length: 9 }, (_, attempt) => delay(policy.onFailure(failure('reset', attempt))));
  testHost.seed(42);
  const expected = [7, 14, 28, 56, 100, 100, 100, 100, 100].map((ceiling) => host.randomBelow(ceiling + 1));
  assert.deepEqual(delays, expected);
});

test('full jitter spreads delays over the whole window', () => {
  new TestHost();
  const policy = new RetryBackoff({ attempts: 10, base_delay_ms: 20, max_delay_ms: 150 });
  for (const [attempt, ceiling] of [[0, 20], [1, 40], [2, 80], [3, 150], [8, 150]]) {
    const draws = 20_000;
    const counts = new Array(ceiling + 1).fill(0);
    for (let i = 0; i < draws; i++) {
      const ms = delay(policy.onFailure(failure(502, attempt)));
      assert.ok(ms <= ceiling, `attempt ${attempt}: ${ms} > ${ceiling}`);
      counts[ms] += 1;
    }
    // Every value from 0 to the ceiling comes up, about equally often.
    const expected = Math.floor(draws / counts.length);
    counts.forEach((count, value) => {
      assert.ok(
        Math.abs(count - expected) <= expected / 2,
        `attempt ${attempt}: ${value} ms drawn ${count} times, expected about ${expected}`,
      );
    });
    const mean = counts.reduce((sum, count, value) => sum + value * count, 0) / draws;
    const half = ceiling / 2;
    assert.ok(Math.abs(mean - half) < half * 0.05 + 0.5, `attempt ${attempt}: mean ${mean}`);
  }
});

test('a zero base retries at once', () => {
  new TestHost();
  const policy = new RetryBackoff({ base_delay_ms: 0, attempts: 5 });
  for (let attempt = 0; attempt < 4; attempt++) {
    for (let i = 0; i < 100; i++) {
      assert.deepEqual(policy.onFailure(failure('connect-timeout', attempt)), Decision.retry());
    }
  }
});
