// What the host offers every plugin: log, clock, randomness, live load and
// the current request's headers. Declarations and examples: host.d.ts.

import { backend, next32 } from './runtime.js';

export const LOG_LEVELS = Object.freeze(['trace', 'debug', 'info', 'warn', 'error']);

export function log(level, message) {
  if (!LOG_LEVELS.includes(level)) {
    throw new TypeError(`unknown log level \`${level}\`, expected one of ${LOG_LEVELS.join(', ')}`);
  }
  backend.log(level, String(message));
}

export const trace = (message) => log('trace', message);
export const debug = (message) => log('debug', message);
export const info = (message) => log('info', message);
export const warn = (message) => log('warn', message);
export const error = (message) => log('error', message);

export function nowNs() {
  return backend.nowNs();
}

export function randomU64() {
  const high = BigInt(next32());
  return (high << 32n) | BigInt(next32());
}

export function randomBelow(bound) {
  const r = next32();
  // floor(r * bound / 2^32) exactly (Lemire's multiply-shift), in halves
  // so that no product passes 2^53.
  const high = (r >>> 16) * bound;
  const low = (r & 0xffff) * bound;
  return Math.floor((high + Math.floor(low / 65536)) / 65536);
}

export function endpointLoad(id) {
  return backend.endpointLoad(id);
}

export function endpointLoadPair(first, second) {
  return backend.endpointLoadPair(first, second);
}

export function requestHeader(name) {
  return backend.requestHeader(name);
}
