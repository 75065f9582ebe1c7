import assert from 'node:assert/strict';
import { test } from 'node:test';

import { Decision } from '@switchyard/sdk';
import { failure as baseFailure } from '@switchyard/sdk/testing';

import RetryElsewhere from '../src/plugin.js';

function failure(method, replayable, attempt) {
  return baseFailure({
    kind: 'status',
    status: 503,
    request: { priority: 'p2', attempt, hash: undefined },
    method,
    replayable,
    elapsedMs: 2,
  });
}

const ELSEWHERE = Decision.retry({ delayMs: 0, sameEndpoint: false });

test('an idempotent request is retried once elsewhere', () => {
  const policy = new RetryElsewhere({});
  assert.deepEqual(policy.onFailure(failure('GET', true, 0)), ELSEWHERE);
  assert.deepEqual(policy.onFailure(failure('GET', true, 1)), Decision.giveUp());
});

test('a request that cannot be replayed is not retried', () => {
  const policy = new RetryElsewhere({});
  assert.deepEqual(policy.onFailure(failure('POST', false, 0)), Decision.giveUp());
});

test('retries is the number of retries', () => {
  const policy = new RetryElsewhere({ retries: 3 });
  assert.deepEqual(policy.onFailure(failure('GET', true, 2)), ELSEWHERE);
  assert.deepEqual(policy.onFailure(failure('GET', true, 3)), Decision.giveUp());
  const never = new RetryElsewhere({ retries: 0 });
  assert.deepEqual(never.onFailure(failure('GET', true, 0)), Decision.giveUp());
});

test('bad config is refused with its key', () => {
  assert.throws(() => new RetryElsewhere({ retries: 9 }), /`retries`/);
});
