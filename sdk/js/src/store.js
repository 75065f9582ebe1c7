// The store the host keeps for a pool: numbers shared by every instance of
// the plugin that serves the pool, kept across versions of the plugin.
// Declarations and examples: store.d.ts.

import { backend } from './runtime.js';

export const STORE_ERRORS = Object.freeze(['full', 'bad-name', 'no-pool']);

/** Why the store refused an operation: `code` is one of STORE_ERRORS. */
export class StoreError extends Error {
  constructor(code) {
    if (!STORE_ERRORS.includes(code)) {
      throw new TypeError(`unknown store error \`${code}\`, expected one of ${STORE_ERRORS.join(', ')}`);
    }
    super(`the store refused: ${code}`);
    this.name = 'StoreError';
    this.code = code;
  }
}

const I64_MIN = -(2n ** 63n);
const I64_MAX = 2n ** 63n - 1n;

function checkEndpoint(endpoint) {
  if (endpoint !== undefined && endpoint !== null && !(Number.isInteger(endpoint) && endpoint >= 0 && endpoint <= 0xffffffff)) {
    throw new TypeError(`endpoint must be an endpoint id or undefined, got ${String(endpoint)}`);
  }
  return endpoint ?? undefined;
}

function toI64(value, what) {
  let big;
  try {
    big = BigInt(value);
  } catch {
    throw new TypeError(`${what} must be a whole number, got ${String(value)}`);
  }
  if (big < I64_MIN || big > I64_MAX) {
    throw new TypeError(`${what} must fit in 64 signed bits, got ${big}`);
  }
  return big;
}

export function get(endpoint, name) {
  return backend.storeGet(checkEndpoint(endpoint), String(name));
}

export function add(endpoint, name, delta) {
  return backend.storeAdd(checkEndpoint(endpoint), String(name), toI64(delta, 'delta'));
}

export function compareAndSwap(endpoint, name, expected, value) {
  return backend.storeCompareAndSwap(
    checkEndpoint(endpoint),
    String(name),
    toI64(expected, 'expected'),
    toI64(value, 'value'),
  );
}

export function update(endpoint, name, change) {
  let current = get(endpoint, name);
  for (;;) {
    const next = toI64(change(current), 'the new value');
    if (next === current) {
      return [current, next];
    }
    const held = compareAndSwap(endpoint, name, current, next);
    if (held === current) {
      return [current, next];
    }
    current = held;
  }
}
