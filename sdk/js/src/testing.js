// A stand-in for the host, so a plugin's logic is unit-tested with
// `node --test` and no wasm. Declarations and examples: testing.d.ts.

import { bindBackend, resetRandom } from './runtime.js';
import { HttpResponse, ProbeError } from './probe.js';
import { StoreError } from './store.js';
import { endpoint } from './types.js';

const START_NS = 1_000_000_000n;
const DEFAULT_SEED = 0x9e3779b97f4a7c15n;
// The host's defaults: `plugins.store_entries` and `plugins.store_name_bytes`.
const STORE_ENTRIES = 4096;
const STORE_NAME_BYTES = 64;
const utf8 = new TextEncoder();

export class TestHost {
  constructor() {
    this.loads = new Map();
    this.headers = new Map();
    this.now = START_NS;
    this.lines = [];
    this.httpHandler = undefined;
    this.tcpHandler = undefined;
    this.entries = new Map();
    this.storeEntries = STORE_ENTRIES;
    const host = this;
    const key = (endpoint, name) => `${endpoint ?? ''}/${name}`;
    const entry = (endpoint, name) => {
      if (name.length === 0 || utf8.encode(name).length > STORE_NAME_BYTES) {
        throw new StoreError('bad-name');
      }
      const at = key(endpoint, name);
      if (!host.entries.has(at) && host.entries.size >= host.storeEntries) {
        throw new StoreError('full');
      }
      return at;
    };
    bindBackend({
      log: (level, message) => host.lines.push([level, message]),
      nowNs: () => host.now,
      randomU64: () => DEFAULT_SEED,
      endpointLoad: (id) => host.loads.get(id),
      endpointLoadPair: (first, second) => [host.loads.get(first), host.loads.get(second)],
      requestHeader: (name) => host.headers.get(name.toLowerCase()),
      http: (request) => {
        if (host.httpHandler === undefined) {
          throw new ProbeError('refused');
        }
        const answer = host.httpHandler(request);
        return answer instanceof HttpResponse ? answer : new HttpResponse(answer);
      },
      tcpConnect: (timeoutMs) => {
        if (host.tcpHandler === undefined) {
          throw new ProbeError('refused');
        }
        return host.tcpHandler(timeoutMs);
      },
      storeGet: (endpoint, name) => host.entries.get(key(endpoint, name)) ?? 0n,
      storeAdd: (endpoint, name, delta) => {
        const at = entry(endpoint, name);
        const value = BigInt.asIntN(64, (host.entries.get(at) ?? 0n) + delta);
        host.entries.set(at, value);
        return value;
      },
      storeCompareAndSwap: (endpoint, name, expected, value) => {
        const held = host.entries.get(key(endpoint, name)) ?? 0n;
        if (expected !== 0n && !host.entries.has(key(endpoint, name))) {
          return held;
        }
        const at = entry(endpoint, name);
        if (held === expected) {
          host.entries.set(at, value);
        }
        return held;
      },
    });
    resetRandom(DEFAULT_SEED);
  }

  setLoad(id, load) {
    this.loads.set(id, {
      inFlight: 0,
      capacity: 0,
      ewmaLatencyUs: 0,
      successPermille: 1000,
      health: 'unknown',
      ...load,
    });
  }

  clearLoad(id) {
    this.loads.delete(id);
  }

  setHeader(name, value) {
    this.headers.set(name.toLowerCase(), value);
  }

  clearHeaders() {
    this.headers.clear();
  }

  advanceMs(ms) {
    this.now += BigInt(Math.round(ms * 1e6));
  }

  advanceNs(ns) {
    this.now += BigInt(ns);
  }

  seed(seed) {
    resetRandom(seed);
  }

  onHttp(handler) {
    this.httpHandler = handler;
  }

  onTcpConnect(handler) {
    this.tcpHandler = handler;
  }

  logs() {
    return this.lines.map(([level, message]) => [level, message]);
  }

  setStoreEntries(entries) {
    this.storeEntries = entries;
  }

  storeSize() {
    return this.entries.size;
  }
}

export function endpoints(count) {
  return Array.from({ length: count }, (_, id) => endpoint(id, `10.0.0.${id}:80`));
}

export function pickCounts(balancer, times, request = { priority: 'p2', attempt: 0, hash: undefined }) {
  const counts = [];
  for (let i = 0; i < times; i++) {
    const id = balancer.pick(request);
    if (id !== undefined) {
      while (counts.length <= id) {
        counts.push(0);
      }
      counts[id] += 1;
    }
  }
  return counts;
}

export function failure(fields = {}) {
  return {
    endpoint: 0,
    kind: 'connect-refused',
    request: { priority: 'p2', attempt: 0, hash: undefined },
    method: 'GET',
    replayable: true,
    elapsedMs: 1,
    ...fields,
  };
}
