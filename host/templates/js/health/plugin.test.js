import assert from 'node:assert/strict';
import { test } from 'node:test';

import { Verdict, probe } from '@switchyard/sdk';
import { TestHost, endpoints } from '@switchyard/sdk/testing';

import HttpGet from '../src/plugin.js';

const answer = (status) => ({ status, latencyUs: 1500 });
const target = () => endpoints(1)[0];

test('a 2xx answer is healthy and the configured path is asked', () => {
  const host = new TestHost();
  host.onHttp((request) => {
    assert.equal(request.method, 'GET');
    assert.equal(request.path, '/ready');
    assert.equal(request.timeoutMs, 250);
    return answer(200);
  });
  const check = new HttpGet({ path: '/ready', timeout_ms: 250 });
  assert.deepEqual(check.check(target()), Verdict.healthy('200 in 2 ms'));
});

test('a 5xx answer is unhealthy', () => {
  const host = new TestHost();
  host.onHttp(() => answer(503));
  assert.deepEqual(new HttpGet({}).check(target()), Verdict.unhealthy('status 503, expected 200-399'));
});

test('no answer is unhealthy with the probe error', () => {
  const host = new TestHost();
  host.onHttp(() => {
    throw new probe.ProbeError('refused');
  });
  assert.deepEqual(new HttpGet({}).check(target()), Verdict.unhealthy('connection refused'));
});

test('a refused probe is unknown', () => {
  const host = new TestHost();
  host.onHttp(() => {
    throw new probe.ProbeError('not-allowed', 'path');
  });
  assert.equal(new HttpGet({}).check(target()).health, 'unknown');
});

test('bad config is refused with its key', () => {
  assert.throws(() => new HttpGet({ path: 'healthz' }), /`path`/);
  assert.throws(() => new HttpGet({ timeout_ms: 0 }), /`timeout_ms`/);
});
