// The backend the `host`, `store` and `probe` functions call: the host's imports
// inside a built component (bound by `guest.js`), a `TestHost` in tests
// (bound by `testing.js`). Internal: plugin authors never import it.

function unbound() {
  throw new Error(
    'switchyard host functions run only inside a built plugin, from its constructor ' +
      'and methods (not at the top level of a module), or in tests after ' +
      '`new TestHost()` from @switchyard/sdk/testing',
  );
}

/** What answers before anything is bound: every call says why it cannot. */
const UNBOUND = {
  log: unbound,
  nowNs: unbound,
  randomU64: unbound,
  endpointLoad: unbound,
  endpointLoadPair: unbound,
  requestHeader: unbound,
  http: unbound,
  tcpConnect: unbound,
  storeGet: unbound,
  storeAdd: unbound,
  storeCompareAndSwap: unbound,
};

/**
 * The bound backend; a live binding, so the host functions call it with no
 * lookup in between (each call costs on the hot path of a built plugin).
 * @type {Backend}
 */
export let backend = UNBOUND;

/**
 * @typedef {object} Backend
 * @property {(level: string, message: string) => void} log
 * @property {() => bigint} nowNs
 * @property {() => bigint} randomU64
 * @property {(id: number) => object | undefined} endpointLoad
 * @property {(first: number, second: number) => [object | undefined, object | undefined]} endpointLoadPair
 * @property {(name: string) => string | undefined} requestHeader
 * @property {(request: object) => object} http
 * @property {(timeoutMs: number) => number} tcpConnect
 * @property {(endpoint: number | undefined, name: string) => bigint} storeGet
 * @property {(endpoint: number | undefined, name: string, delta: bigint) => bigint} storeAdd
 * @property {(endpoint: number | undefined, name: string, expected: bigint, value: bigint) => bigint} storeCompareAndSwap
 */

/** Makes `next` the backend every host and probe function calls. */
export function bindBackend(next) {
  backend = next;
  resetRandom(undefined);
}


// The plugin's random numbers: sfc32 (Chris Doty-Humphrey's Small Fast
// Counting generator, from PractRand), seeded once from the host's
// generator. A call into the host costs about as much as a whole pick, and
// 32-bit arithmetic stays off BigInt on the hot path.
const state = new Uint32Array(4);
let seeded = false;

/** Seeds the generator from `seed`, or from the host at its next use. */
export function resetRandom(seed) {
  seeded = false;
  if (seed !== undefined) {
    seedFrom(BigInt.asUintN(64, BigInt(seed)));
  }
}

function seedFrom(seed) {
  state[0] = Number(seed & 0xffffffffn);
  state[1] = Number(seed >> 32n);
  state[2] = 0x9e3779b9;
  state[3] = 1;
  seeded = true;
  for (let i = 0; i < 12; i++) {
    next32();
  }
}

/** The next 32 random bits, as a number in `0..2^32`. */
export function next32() {
  if (!seeded) {
    seedFrom(backend.randomU64());
  }
  const a = state[0];
  const b = state[1];
  const c = state[2];
  const d = state[3];
  const t = (((a + b) | 0) + d) | 0;
  state[3] = d + 1;
  state[0] = b ^ (b >>> 9);
  state[1] = c + (c << 3);
  state[2] = ((c << 21) | (c >>> 11)) + t;
  return t >>> 0;
}
